"""What the receiver does with one POSTed body, free of any web framework:
content type -> signature -> schema -> one ledger transaction -> an HTTP answer; the new work goes
to the broker after the commit, through the relay (archiver.intake.relay).

Every 2xx means the event, its files and its jobs are committed in the ledger (a pending job is
enqueued by the relay, or by the sweeper if the relay could not); anything that could not be made
durable answers 503 so VideoSDK retries, and nothing is half-accepted. A broker outage refuses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archiver.intake.events import EventValidationError, WebhookEvent, parse_event
from archiver.intake.record import accept_event
from archiver.intake.relay import Relay
from archiver.intake.signature import KeyCache, SignatureError
from archiver.ledger.fresh import FreshEvents
from archiver.ledger.store import Ledger
from archiver.settings.config import Settings

log = logging.getLogger("archiver.receiver")
SIGNATURE_HEADER = "videosdk-signature"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    webhook_type: str = "-"
    headers: dict[str, str] = field(default_factory=dict)


class WebhookIntake:
    def __init__(self, settings: Settings, ledger: Ledger, *, publish_copies: Callable[[Sequence[int]], None],
                 publish_lookups: Callable[[Sequence[int]], None], keys: KeyCache | None,
                 relay: Relay | None = None) -> None:
        """``relay``: how new work reaches the broker after the commit; by default a Relay that calls
        ``publish_copies`` and ``publish_lookups`` with each batch."""
        self.settings = settings
        self.ledger = ledger
        self.relay = relay or Relay(lambda copies, lookups: _publish_each(publish_copies, publish_lookups,
                                                                          copies, lookups))
        self.keys = keys
        self.fresh = FreshEvents(ledger.engine)  # the common case in three statements (archiver.ledger.fresh)
        self.verify = settings.videosdk.verify_signatures
        if not self.verify:
            log.warning("webhook signatures are NOT verified (videosdk.verify_signatures = false): anyone who "
                        "can reach the receiver can make it archive URLs; every event is recorded as unverified")
        elif settings.videosdk.api_key is None and not settings.receiver.allow_rooms:
            # VideoSDK's signing key is one public key for every account: a valid signature says
            # VideoSDK sent the webhook, not that the recording is ours.
            log.warning("any VideoSDK account can point a recording's webhookUrl at this receiver and have it "
                        "archived: set [videosdk] api_key (each file is then confirmed in our account before it "
                        "is copied), or narrow [receiver] allow_rooms, and use an unguessable [receiver] path")

    def handle(self, raw: bytes, headers: Mapping[str, str]) -> Answer:
        # Whatever the Content-Type says: VideoSDK's own SDK reads the raw body of any content type
        # (reference section 1). The signature decides whether it is trusted; a body that is not JSON
        # is refused with 400 by the parser below.
        if self.verify:
            refused = self._check_signature(raw, headers.get(SIGNATURE_HEADER))
            if refused is not None:
                return refused
        try:
            event = parse_event(raw)
        except EventValidationError as exc:
            return Answer(400, {"error": "invalid webhook", "fields": exc.fields})
        if not self.settings.receiver.room_allowed(event.meeting_id):
            # Not one of our rooms ([receiver] allow_rooms): nothing is recorded or downloaded for it.
            return Answer(403, {"error": "room not allowed by [receiver] allow_rooms"}, event.webhook_type)
        return self._accept(raw, event)

    def _check_signature(self, raw: bytes, signature: str | None) -> Answer | None:
        assert self.keys is not None
        try:
            self.keys.verify(raw, signature)
        except SignatureError as exc:
            if exc.reason == "no_key":
                log.error("cannot verify webhooks: the VideoSDK public key is unavailable")
                return Answer(503, {"error": "signature key unavailable; retry later"}, headers={"Retry-After": "30"})
            return Answer(401, {"error": f"signature {exc.reason}"})
        return None

    def _accept(self, raw: bytes, event: WebhookEvent) -> Answer:
        try:
            # Nothing is published inside the transaction: the committed pending jobs are the outbox.
            _, accepted = accept_event(self.ledger, self.settings, raw, verified=self.verify, source="webhook",
                                       event=event, fresh=self.fresh)
        except Exception as exc:  # the ledger could not take it: nothing was committed
            log.error("event %s not accepted: %s: %s", event.webhook_type, type(exc).__name__, exc)
            return Answer(503, {"error": "the event could not be recorded; retry later"}, event.webhook_type,
                          {"Retry-After": "10"})
        self.relay.add(accepted.created, accepted.lookups)
        outcome = "duplicate" if accepted.duplicate else "accepted"
        base = {"event_id": accepted.event_id, **({"duplicate": True} if accepted.duplicate else {})}
        if event.archivable:
            log.info("event %s %s: %s, %d files, %d jobs", accepted.event_id, event.webhook_type, outcome,
                     len(accepted.file_ids), len(accepted.job_ids),
                     extra={"event_id": accepted.event_id, "webhook_type": event.webhook_type, "status": 202})
            files = [{"file_id": fid, "file_path": f.file_path,
                      **({"storage": "customer"} if f.storage == "customer" else {})}
                     for fid, f in zip(accepted.file_ids, event.files, strict=True)]
            lookup = {"lookup": str(event.lookup.kind)} if event.lookup is not None else {}
            return Answer(202, {**base, "files": files, "jobs": list(accepted.job_ids), **lookup}, event.webhook_type)
        log.info("event %s %s: recorded, nothing to archive%s", accepted.event_id, event.webhook_type,
                 " (recording failure)" if event.failure else "",
                 extra={"event_id": accepted.event_id, "webhook_type": event.webhook_type, "status": 200})
        return Answer(200, {**base, "ignored": event.webhook_type, **({"failure": True} if event.failure else {})},
                      event.webhook_type)


def _publish_each(publish_copies: Callable[[Sequence[int]], None], publish_lookups: Callable[[Sequence[int]], None],
                  copies: Sequence[int], lookups: Sequence[int]) -> None:
    if copies:
        publish_copies(copies)
    if lookups:
        publish_lookups(lookups)
