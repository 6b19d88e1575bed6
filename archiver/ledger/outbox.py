"""The notification outbox: what happened to a recording, written in the transaction that decided it.

A copy that succeeds or fails for good, and a reconcile that records a file no webhook announced,
call ``Outbox.after_copy`` / ``Outbox.after_discovery`` with their own session: the outbox rows
(one per configured endpoint that wants the event) commit with the outcome or not at all, so an
outcome is never lost and never told twice. Each row is keyed by a ``webhook_id`` derived from
(endpoint, event type, subject): the same outcome written again adds nothing, and every retry
sends the same id (Standard Webhooks' idempotency key). A failure here is logged and swallowed
inside a SAVEPOINT: telling the customer must never fail the copy it is about.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.ledger.files import insert_or_get
from archiver.ledger.models import CopyJob, FileRow, JobAttempt, OutboxMessage
from archiver.ledger.records import _aware, utcnow

log = logging.getLogger("archiver.notifications")

ARCHIVED, FAILED, DISCOVERED = "recording.archived", "copy.failed", "recording.discovered"
# (destination name, object key) -> where the copy is, as shown to the customer (no secrets)
Locate = Callable[[str, str | None], str | None]


def webhook_id(endpoint: str, event_type: str, subject: str) -> str:
    """Stable across retries and re-runs: "msg_" + 32 hex digits of (endpoint, type, subject)."""
    return "msg_" + hashlib.sha256(f"{endpoint}\n{event_type}\n{subject}".encode()).hexdigest()[:32]


class Outbox:
    """Which endpoints want which events (``routes``: endpoint name -> event types), and how a
    destination's copy is named in a payload (``locate``). An empty outbox writes nothing."""

    def __init__(self, routes: Mapping[str, frozenset[str]] | None = None, locate: Locate | None = None) -> None:
        self.routes = dict(routes or {})
        self.locate = locate or (lambda _dest, key: key)

    def wanted(self, event_type: str) -> list[str]:
        return [name for name, events in self.routes.items() if event_type in events]

    # ---- hooks called inside the ledger's own transactions ---------------------------------------
    def after_copy(self, db: Session, job_id: int) -> None:
        """A job just finished or its verdict changed: a copy failed for good, or the file's last
        destination now holds a verified copy (succeeded, no flag: error_code is empty)."""
        if self.routes:
            self._guarded(db, lambda: self._after_copy(db, job_id))

    def after_discovery(self, db: Session, file_ids: Sequence[int], event_id: int) -> None:
        """Reconcile recorded ``file_ids`` under ``event_id``: those created by it no webhook announced."""
        if self.routes and self.wanted(DISCOVERED):
            self._guarded(db, lambda: self._after_discovery(db, file_ids, event_id))

    def _guarded(self, db: Session, write: Callable[[], None]) -> None:
        try:
            with db.begin_nested():
                write()
        except Exception:  # a notification must never fail the outcome it describes
            log.exception("could not record a notification; the outcome itself is recorded")

    def _after_copy(self, db: Session, job_id: int) -> None:
        job = db.get(CopyJob, job_id)
        if job is None:
            return
        attempt = db.scalar(select(func.max(JobAttempt.id)).where(JobAttempt.job_id == job_id))
        if job.state == "failed" and self.wanted(FAILED):
            # every failure for good is its own outcome (a retried job can fail again later)
            subject = f"job:{job_id}:attempt:{attempt or 'intake'}"
            self._write(db, FAILED, subject, lambda: self._payload(db, job.file_id, FAILED, failed=job))
        if job.state == "succeeded" and job.error_code is None and self.wanted(ARCHIVED):
            jobs = list(db.scalars(select(CopyJob).where(CopyJob.file_id == job.file_id)))
            if all(j.state == "succeeded" and j.error_code is None for j in jobs):
                last = db.scalar(select(func.max(JobAttempt.id)).where(JobAttempt.job_id.in_([j.id for j in jobs])))
                subject = f"file:{job.file_id}:attempt:{last or 0}"
                self._write(db, ARCHIVED, subject, lambda: self._payload(db, job.file_id, ARCHIVED))

    def _after_discovery(self, db: Session, file_ids: Sequence[int], event_id: int) -> None:
        for file_id in file_ids:
            if db.scalar(select(FileRow.event_id).where(FileRow.id == file_id)) == event_id:
                payload = functools.partial(self._payload, db, file_id, DISCOVERED)
                self._write(db, DISCOVERED, f"file:{file_id}", payload)

    def _write(self, db: Session, event_type: str, subject: str, payload: Callable[[], dict[str, Any]]) -> None:
        now = utcnow()
        body = json.dumps(payload(), separators=(",", ":"), sort_keys=True)
        for endpoint in self.wanted(event_type):
            insert_or_get(db, OutboxMessage, dict(
                webhook_id=webhook_id(endpoint, event_type, subject), endpoint=endpoint, event_type=event_type,
                subject=subject, payload=body, state="pending", attempts=0, next_attempt_at=now,
                created_at=now, updated_at=now), ("webhook_id",))

    def _payload(self, db: Session, file_id: int, event_type: str, failed: CopyJob | None = None) -> dict[str, Any]:
        """The body: Standard Webhooks' {type, timestamp, data}; data names the recording and every
        destination's copy (where, size, sha256, state)."""
        f = db.get(FileRow, file_id)
        assert f is not None
        jobs = db.scalars(select(CopyJob).where(CopyJob.file_id == file_id).order_by(CopyJob.id))
        data: dict[str, Any] = {
            "recording": {"meetingId": f.meeting_id, "sessionId": f.session_id or None,
                          "recordingId": f.recording_id, "participantId": f.participant_id or None,
                          "kind": f.recording_kind, "trackKind": f.kind or None,
                          "file": {"path": f.file_path, "name": f.file_name, "size": f.size,
                                   "videosdkFileId": f.videosdk_file_id}},
            "destinations": [{"name": j.destination, "key": j.object_key, "url": self.locate(j.destination,
                                                                                              j.object_key),
                              "state": j.state, "size": j.bytes, "sha256": j.sha256,
                              "verified": j.state == "succeeded" and j.error_code is None} for j in jobs],
        }
        if failed is not None:
            data["error"] = {"destination": failed.destination, "code": failed.error_code,
                             "message": failed.error_message, "attempts": failed.attempts}
        return {"type": event_type, "timestamp": _iso(utcnow()), "data": data}


def _iso(moment: datetime) -> str:
    return (_aware(moment) or moment).isoformat().replace("+00:00", "Z")
