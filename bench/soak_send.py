"""Signed webhooks for the soak, POSTed to the real receiver the way VideoSDK would send them.

A 503 (ledger or broker down) or a refused connection is retried after min(Retry-After, 2) s, up to
RETRIES times: VideoSDK's own retry policy is not documented, so this is a compressed guess, and a
webhook that is never accepted counts its files as lost. Duplicates come in three kinds:
  dup_same          the same raw body and signature again
  dup_reserialised  the same JSON re-serialised (key order, whitespace, escaping) and signed again
  dup_overlap       a different body (fileDetails reversed, one extra field) naming the same files
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from archiver.intake.signature import sign_body
from bench.soak_cdn import SoakCdn
from bench.soak_plan import PlannedEvent

PATH = "/webhooks/videosdk"
RETRIES = 30


@dataclass
class Delivery:
    """What happened to one planned webhook (the original, not its duplicates)."""

    event: PlannedEvent
    status: int | None = None  # last answer; None if it was never sent
    answer: dict[str, Any] = field(default_factory=dict)
    sent_at: float = 0.0


def body_of(event: PlannedEvent, cdn: SoakCdn) -> dict[str, Any]:
    data: dict[str, Any] = {"meetingId": event.meeting_id, "sessionId": event.session_id}
    if event.webhook_type == "recording-stopped":
        rec = event.files[0]
        data.update(filePath="/" + rec.path, fileUrl=cdn.url(rec))
    else:
        data["participantId"] = event.participant_id
        if event.kind:
            data["kind"] = event.kind
        data["fileDetails"] = [{"filePath": "/" + r.path, "fileUrl": cdn.url(r)} for r in event.files]
    return {"webhookType": event.webhook_type, "data": data}


def reserialised(body: dict[str, Any]) -> bytes:
    """The same JSON value written differently: keys sorted backwards, indented, non-ASCII escaped."""
    def turn(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: turn(value[k]) for k in sorted(value, reverse=True)}
        return [turn(v) for v in value] if isinstance(value, list) else value
    return json.dumps(turn(body), indent=2, ensure_ascii=True).replace("/", "\\/").encode()


def overlapping(body: dict[str, Any]) -> bytes:
    data = dict(body["data"], fileDetails=list(reversed(body["data"]["fileDetails"])), soakResend=True)
    return json.dumps({**body, "data": data}).encode()


class Sender:
    def __init__(self, base_url: str, key: RSAPrivateKey, cdn: SoakCdn, counts: Counter[str],
                 lock: threading.Lock) -> None:
        self.url = base_url + PATH
        self.key, self.cdn = key, cdn
        self.counts, self.lock = counts, lock
        self.client = httpx.Client(timeout=30)
        self.deliveries: list[Delivery] = []
        self.mismatches: list[dict[str, Any]] = []  # duplicates whose answer named other jobs
        self._later: list[tuple[float, str, PlannedEvent, bytes]] = []  # (due, kind, event, original raw)

    def close(self) -> None:
        self.client.close()

    def _count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def post(self, raw: bytes) -> tuple[int | None, dict[str, Any]]:
        headers = {"content-type": "application/json", "videosdk-signature": sign_body(raw, self.key)}
        for _ in range(RETRIES):
            self._count("webhook_posts")
            try:
                response = self.client.post(self.url, content=raw, headers=headers)
            except httpx.TransportError:
                self._count("webhook_connection_errors")
                time.sleep(1.0)
                continue
            if response.status_code != 503:
                try:
                    return response.status_code, response.json()
                except ValueError:
                    return response.status_code, {}
            self._count("webhook_503_retried")
            time.sleep(min(float(response.headers.get("retry-after", 1) or 1), 2.0))
        return None, {}

    def send(self, event: PlannedEvent) -> Delivery:
        """The event's webhook (after a state event, sometimes), its immediate duplicates, and its
        later duplicates queued for `due()`."""
        if event.state_event:
            starting = {"webhookType": "recording-started" if event.webhook_type == "recording-stopped" else
                        event.webhook_type.replace("-stopped", "-started"),
                        "data": {k: v for k, v in body_of(event, self.cdn)["data"].items()
                                 if k in ("meetingId", "sessionId", "participantId", "kind")}}
            status, _ = self.post(json.dumps(starting).encode())
            self._count(f"state_webhook_{status}")
        body = body_of(event, self.cdn)
        raw = json.dumps(body).encode()
        now = time.monotonic()
        for rec in event.files:
            rec.announced_at = now
        delivery = Delivery(event, sent_at=now)
        delivery.status, delivery.answer = self.post(raw)
        self._count("webhooks_sent")
        self._count(f"webhook_answer_{delivery.status}")
        self.deliveries.append(delivery)
        for kind, delay in event.duplicates:
            self._later.append((now + delay, kind, event, raw))
        self.due()
        return delivery

    def due(self, everything: bool = False) -> None:
        """Send the duplicates whose time has come (all of them with `everything`)."""
        now = time.monotonic()
        ready = [d for d in self._later if everything or d[0] <= now]
        self._later = [d for d in self._later if d not in ready]
        for _, kind, event, raw in sorted(ready, key=lambda d: d[0]):
            body = json.loads(raw)
            dup = raw if kind == "dup_same" else reserialised(body) if kind == "dup_reserialised" else \
                overlapping(body)
            status, answer = self.post(dup)
            self._count(kind)
            original = next(d for d in self.deliveries if d.event is event)
            if status == 202 and original.status != 202:  # the original never got through; this one did
                original.status, original.answer = status, answer
            elif status == 202 and sorted(answer.get("jobs", [])) != sorted(original.answer.get("jobs", [])):
                # a duplicate must name the original's jobs and create none
                self.mismatches.append({"meeting": event.meeting_id, "kind": kind, "original": original.answer,
                                        "duplicate": answer})
