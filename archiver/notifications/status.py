"""The notification backlog as `archiver status` shows it: one line, plus the latest failures."""

from __future__ import annotations

from archiver.ledger.deliveries import Backlog
from archiver.ledger.store import Ledger


def notification_backlog(ledger: Ledger) -> Backlog:
    return ledger.deliveries.backlog()


def describe_backlog(backlog: Backlog) -> list[str]:
    """Lines for a terminal; empty when nothing was ever queued. Errors name no secret (see sending)."""
    if not (backlog.pending or backlog.failed or backlog.delivered):
        return []
    age = f", oldest {_age(backlog.oldest_pending_seconds)} old" if backlog.oldest_pending_seconds is not None else ""
    lines = [f"notifications: {backlog.pending} pending{age}, {backlog.failed} failed, "
             f"{backlog.delivered} delivered"]
    lines += [f"  {endpoint} {webhook_id}: {error}" for endpoint, webhook_id, error in backlog.last_errors]
    return lines


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
