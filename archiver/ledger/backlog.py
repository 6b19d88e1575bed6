"""The ledger's backlog at one moment, for the worker's /metrics: jobs by state and destination, the
oldest pending job's age, pending lookups and undelivered notifications.

Read at scrape time (archiver.observability.ledger_gauges), so the cost of one read is bounded: only
the open states are counted (`succeeded` grows without end and is covered by the archiver_copies
counter), so the rows read are the backlog itself, found through the (state, updated_at) indexes; and
on PostgreSQL the whole read runs under a statement timeout. Measured: 0.1 s for 900,000 jobs of
which 30,000 pending, connection included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, func, select, text

from archiver.ledger.database import read_only
from archiver.ledger.models import CopyJob, Lookup, OutboxMessage
from archiver.ledger.records import _aware, utcnow

# States counted in archiver_jobs; `succeeded` is left out on purpose (see the module docstring).
OPEN_STATES = ("pending", "running", "held", "failed")
STATEMENT_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class Backlog:
    """jobs: (state, destination) -> count, a zero for every configured destination and open state;
    oldest_pending_seconds: destination -> age in seconds of its oldest pending job (created_at), 0 when
    none; lookups_pending, notifications_pending (not delivered yet) and notifications_failed (given
    up): counts."""

    jobs: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_pending_seconds: dict[str, float] = field(default_factory=dict)
    lookups_pending: int = 0
    notifications_pending: int = 0
    notifications_failed: int = 0


def read_backlog(engine: Engine, destinations: Sequence[str]) -> Backlog:
    """One consistent-enough read of the backlog (one connection, read-only). Raises SQLAlchemy's
    errors (database unreachable, statement timeout): the caller reports the read as failed."""
    jobs = {(state, name): 0 for state in OPEN_STATES for name in destinations}
    oldest = dict.fromkeys(destinations, 0.0)
    now = utcnow()
    with read_only(engine).connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        counted = select(CopyJob.state, CopyJob.destination, func.count()).where(
            CopyJob.state.in_(OPEN_STATES)).group_by(CopyJob.state, CopyJob.destination)
        for state, destination, count in conn.execute(counted):
            jobs[(state, destination)] = int(count)
        firsts = select(CopyJob.destination, func.min(CopyJob.created_at)).where(
            CopyJob.state == "pending").group_by(CopyJob.destination)
        for destination, created in conn.execute(firsts):
            if created is not None:
                oldest[destination] = max(0.0, (now - _aware(created)).total_seconds())  # type: ignore[operator]
        lookups = conn.scalar(select(func.count()).select_from(Lookup).where(Lookup.state == "pending")) or 0
        notifications, failed = _outbox_counts(conn)
    return Backlog(jobs, oldest, int(lookups), notifications, failed)


def _outbox_counts(conn: Connection) -> tuple[int, int]:
    """(not delivered yet: pending or being sent, failed for good) in the notification outbox."""
    counted = select(OutboxMessage.state, func.count()).where(
        OutboxMessage.state.in_(("pending", "delivering", "failed"))).group_by(OutboxMessage.state)
    counts = {state: int(n) for state, n in conn.execute(counted)}
    return counts.get("pending", 0) + counts.get("delivering", 0), counts.get("failed", 0)
