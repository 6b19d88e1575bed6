"""The delivery loop: claim due outbox messages, POST each, record the answer, back off on failure.

Plain function, called by the `archiver.deliver_notifications` task (archiver.worker.tasks) and by
tests. Delivery is at least once and idempotent by webhook-id: a sender that dies after the endpoint
took the message but before recording it leaves the message leased; when the lease ends it is sent
again with the same webhook-id, which the receiver uses to drop the repeat. Nothing here touches a
copy job: a slow or failing endpoint delays only its own messages.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from archiver.copy.source.ssrf import Resolver, system_resolver
from archiver.ledger.deliveries import Message
from archiver.ledger.store import Ledger
from archiver.notifications.sending import SendError, send
from archiver.observability.metrics import observe_notification
from archiver.retry import Backoff
from archiver.settings.config import Settings
from archiver.settings.notifications import Notification

log = logging.getLogger("archiver.notifications")

LEASE_MARGIN = 10.0  # seconds beyond the slowest endpoint's timeout before a sender is taken for dead


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)  # webhook ids
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # given up for good
    next_due: datetime | None = None  # when the next message may be sent (for a follow-up run)


def lease_for(settings: Settings) -> timedelta:
    return timedelta(seconds=max((n.timeout for n in settings.notifications), default=10.0) + LEASE_MARGIN)


def deliver_due(ledger: Ledger, settings: Settings, worker: str, *, client: httpx.Client | None = None,
                resolver: Resolver = system_resolver, budget_seconds: float = 60.0) -> DeliveryReport:
    """Send every message due now (for at most ``budget_seconds``, then the rest waits for the next run)."""
    report = DeliveryReport()
    endpoints = {n.name: n for n in settings.notifications}
    started = time.monotonic()
    own = client is None
    client = client or httpx.Client(trust_env=False)  # no proxy from the environment: the guard checked the address
    try:
        while time.monotonic() - started < budget_seconds:
            # One at a time: a message claimed in a batch would sit leased behind slow endpoints and could
            # be taken over (and sent twice) before its turn came.
            batch = ledger.deliveries.claim_due(worker, lease_for(settings), limit=1)
            if not batch:
                break
            for message in batch:
                _deliver_one(ledger, endpoints.get(message.endpoint), message, worker, client, resolver, report)
    finally:
        if own:
            client.close()
    report.next_due = ledger.deliveries.next_due()
    return report


def _deliver_one(ledger: Ledger, endpoint: Notification | None, message: Message, worker: str,
                 client: httpx.Client, resolver: Resolver, report: DeliveryReport) -> None:
    if endpoint is None:
        ledger.deliveries.retry(message.message_id, worker, status=None, delay=None,
                                error=f"endpoint {message.endpoint!r} is no longer configured in [[notifications]]")
        report.failed.append(message.webhook_id)
        observe_notification(message.endpoint, "failed")
        return
    try:
        sent = send(client, endpoint, message.webhook_id, message.payload, resolver=resolver)
    except SendError as exc:
        final = message.attempts >= endpoint.max_attempts
        delay = None if final else Backoff(endpoint.retry_base_seconds, endpoint.retry_max_seconds).seconds(
            message.attempts)
        error = f"{exc.code}: {exc}" + (f" (gave up after {message.attempts} attempts)" if final else "")
        ledger.deliveries.retry(message.message_id, worker, status=exc.status, error=error, delay=delay)
        (report.failed if final else report.retrying).append(message.webhook_id)
        observe_notification(endpoint.name, "failed" if final else "retrying")
        (log.error if final else log.warning)("notification %s %s to %s: %s", message.event_type,
                                               message.webhook_id, endpoint.name, error)
        return
    if ledger.deliveries.delivered(message.message_id, worker, sent.status):
        report.delivered.append(message.webhook_id)
        observe_notification(endpoint.name, "delivered")
        log.info("notification %s %s delivered to %s (%s)", message.event_type, message.webhook_id,
                 endpoint.name, sent.status)
