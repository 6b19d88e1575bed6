"""Ledger operations. Every state change is one conditional UPDATE, so two workers can never both own
a job, and a duplicate event can never create a second job (unique constraints + insert-or-get)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .database import session_factory
from .models import NONE, CopyJob, Event, JobAttempt, RecordingFile


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class NewFile:
    meeting_id: str
    session_id: str
    participant_id: str | None
    kind: str | None
    file_path: str
    source_url: str
    webhook_type: str
    recording_id: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class NewJob:
    """A job to create for a file: its destination and rendered key, or why the key could not be made."""

    destination: str
    object_key: str | None
    error: str | None = None  # a template render error fails the job at once, visibly


@dataclass(frozen=True)
class Accepted:
    event_id: int
    duplicate: bool
    file_ids: tuple[int, ...]
    job_ids: tuple[int, ...]  # every job of the event's files, new or not
    created: tuple[int, ...]  # the pending jobs this call created (what was published)


@dataclass(frozen=True)
class JobRecord:
    job_id: int
    destination: str
    state: str
    attempts: int
    object_key: str | None
    bytes: int | None
    sha256: str | None
    etag: str | None
    error_code: str | None
    error_message: str | None
    meeting_id: str
    session_id: str
    participant_id: str | None
    kind: str | None
    file_path: str
    source_url: str
    webhook_type: str
    recording_id: str | None
    size: int | None
    received_at: datetime
    updated_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        data = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}
        data["error"] = f"{self.error_code}: {self.error_message}" if self.error_code else None
        return data


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)

    # ---- intake ---------------------------------------------------------------------------------
    def accept(self, *, body: str, dedupe_key: str, webhook_type: str, meeting_id: str | None,
               session_id: str | None, received_at: datetime, verified: bool, source: str,
               files: Sequence[tuple[NewFile, Sequence[NewJob]]],
               publish: Callable[[Sequence[int]], None] | None = None,
               on_new_event: Callable[[int], None] | None = None) -> Accepted:
        """Record an event with its files and jobs in one transaction; a duplicate adds nothing.

        `publish` receives the ids of jobs this call created and runs before the commit: if it
        raises (broker down), nothing is recorded, so no row ever claims an acceptance that the
        broker never saw. A worker that sees a job id before the commit is visible retries briefly.
        """
        with self.sessions.begin() as db:
            event = Event(dedupe_key=dedupe_key, webhook_type=webhook_type, meeting_id=meeting_id,
                          session_id=session_id, received_at=received_at, signature_verified=verified,
                          source=source, body=body)
            event_id, fresh = _insert_or_get(db, event, select(Event.id).where(Event.dedupe_key == dedupe_key))
            file_ids: list[int] = []
            job_ids: list[int] = []
            created: list[int] = []
            for new_file, jobs in files:
                file_id = self._file(db, new_file, event_id, received_at)
                file_ids.append(file_id)
                for job in jobs:
                    job_id, new = self._job(db, file_id, job)
                    job_ids.append(job_id)
                    if new and job.error is None:
                        created.append(job_id)
            if publish is not None and created:
                publish(created)
            if on_new_event is not None and fresh:
                on_new_event(event_id)  # e.g. the merge lookup, published inside the same transaction
            return Accepted(event_id, not fresh, tuple(file_ids), tuple(job_ids), tuple(created))

    def _file(self, db: Session, f: NewFile, event_id: int, received_at: datetime) -> int:
        participant, kind = f.participant_id or NONE, f.kind or NONE
        row = RecordingFile(meeting_id=f.meeting_id, session_id=f.session_id, participant_id=participant,
                            kind=kind, file_path=f.file_path, source_url=f.source_url, webhook_type=f.webhook_type,
                            size=f.size, recording_id=f.recording_id, event_id=event_id, received_at=received_at)
        query = select(RecordingFile.id).where(
            RecordingFile.meeting_id == f.meeting_id, RecordingFile.session_id == f.session_id,
            RecordingFile.participant_id == participant, RecordingFile.kind == kind,
            RecordingFile.file_path == f.file_path)
        file_id, fresh = _insert_or_get(db, row, query)
        if not fresh and (f.size is not None or f.recording_id is not None):
            # Reconcile learns size and recording id that webhooks never carry.
            values = {k: v for k, v in (("size", f.size), ("recording_id", f.recording_id)) if v is not None}
            db.execute(update(RecordingFile).where(RecordingFile.id == file_id).values(**values))
        return file_id

    def _job(self, db: Session, file_id: int, job: NewJob) -> tuple[int, bool]:
        now = utcnow()
        failed = job.error is not None
        row = CopyJob(file_id=file_id, destination=job.destination, object_key=job.object_key,
                      state="failed" if failed else "pending", attempts=0, created_at=now, updated_at=now,
                      error_code="template" if failed else None, error_message=job.error,
                      finished_at=now if failed else None)
        query = select(CopyJob.id).where(CopyJob.file_id == file_id, CopyJob.destination == job.destination)
        return _insert_or_get(db, row, query)

    # ---- a worker's view of one job -------------------------------------------------------------
    def claim(self, job_id: int, worker: str, lease: timedelta) -> JobRecord | None:
        """Take the job if it is pending or its owner's lease ran out; count the attempt."""
        now = utcnow()
        with self.sessions.begin() as db:
            taken = db.execute(
                update(CopyJob)
                .where(CopyJob.id == job_id, or_(
                    CopyJob.state == "pending",
                    and_(CopyJob.state == "running", CopyJob.lease_expires_at < now)))
                .values(state="running", lease_owner=worker, lease_expires_at=now + lease,
                        attempts=CopyJob.attempts + 1, started_at=now, updated_at=now)
            ).rowcount
            if not taken:
                return None
            # An attempt still open belonged to a worker that died: close it as lost.
            db.execute(update(JobAttempt).where(JobAttempt.job_id == job_id, JobAttempt.finished_at.is_(None))
                       .values(finished_at=now, outcome="lost", error_code="lease_expired",
                               error_message="the worker stopped before finishing (lease expired)"))
            attempts = db.scalar(select(CopyJob.attempts).where(CopyJob.id == job_id))
            db.add(JobAttempt(job_id=job_id, number=attempts, worker=worker, started_at=now))
        return self.job(job_id)

    def renew(self, job_id: int, worker: str, lease: timedelta) -> bool:
        now = utcnow()
        with self.sessions.begin() as db:
            return bool(db.execute(update(CopyJob).where(CopyJob.id == job_id, CopyJob.lease_owner == worker,
                                                         CopyJob.state == "running")
                                   .values(lease_expires_at=now + lease)).rowcount)

    def record_intent(self, job_id: int, worker: str, size: int, sha256: str) -> bool:
        """Before committing an object, remember what it will hold: a re-run after a crash in the
        window between commit and `succeed` can then recognise the object as its own."""
        with self.sessions.begin() as db:
            return bool(db.execute(update(CopyJob).where(CopyJob.id == job_id, CopyJob.lease_owner == worker,
                                                         CopyJob.state == "running")
                                   .values(bytes=size, sha256=sha256, updated_at=utcnow())).rowcount)

    def succeed(self, job_id: int, worker: str, *, size: int, sha256: str, etag: str | None) -> bool:
        return self._finish(job_id, worker, "succeeded", dict(bytes=size, sha256=sha256, etag=etag,
                                                              error_code=None, error_message=None), size)

    def fail(self, job_id: int, worker: str, *, code: str, message: str, retrying: bool) -> bool:
        state, outcome = ("pending", "retrying") if retrying else ("failed", "failed")
        return self._finish(job_id, worker, state, dict(error_code=code, error_message=message[:4000]),
                            None, outcome)

    def _finish(self, job_id: int, worker: str, state: str, values: dict[str, Any], size: int | None,
                outcome: str | None = None) -> bool:
        now = utcnow()
        with self.sessions.begin() as db:
            done = db.execute(
                update(CopyJob).where(CopyJob.id == job_id, CopyJob.lease_owner == worker,
                                      CopyJob.state == "running")
                .values(state=state, lease_owner=None, lease_expires_at=None, updated_at=now,
                        finished_at=now if state != "pending" else None, **values)).rowcount
            if done:
                db.execute(update(JobAttempt).where(JobAttempt.job_id == job_id, JobAttempt.worker == worker,
                                                    JobAttempt.finished_at.is_(None))
                           .values(finished_at=now, outcome=outcome or state, bytes=size,
                                   error_code=values.get("error_code"), error_message=values.get("error_message")))
            return bool(done)

    def requeue(self, job_ids: Iterable[int] | None = None, *, failed: bool = False) -> list[int]:
        """Operator retry: failed jobs (or the given ones, unless succeeded or running) back to pending."""
        with self.sessions.begin() as db:
            query = select(CopyJob.id).where(CopyJob.state.in_(("failed",) if failed else ("failed", "pending")))
            if job_ids is not None:
                query = query.where(CopyJob.id.in_(list(job_ids)))
            ids = list(db.scalars(query))
            if ids:
                # A fresh attempt budget; every earlier attempt stays in job_attempts.
                db.execute(update(CopyJob).where(CopyJob.id.in_(ids))
                           .values(state="pending", attempts=0, updated_at=utcnow(), finished_at=None))
            return ids

    def stale_jobs(self, pending_for: timedelta) -> list[int]:
        """Jobs nobody is working on although they should be: running under an expired lease, or
        pending for longer than any scheduled retry could take (its message was lost)."""
        now = utcnow()
        with self.sessions() as db:
            return list(db.scalars(select(CopyJob.id).where(or_(
                and_(CopyJob.state == "running", CopyJob.lease_expires_at < now),
                and_(CopyJob.state == "pending", CopyJob.updated_at < now - pending_for)))))

    # ---- reading --------------------------------------------------------------------------------
    def event_body(self, event_id: int) -> str | None:
        with self.sessions() as db:
            return db.scalar(select(Event.body).where(Event.id == event_id))

    def job(self, job_id: int) -> JobRecord | None:
        rows = self.jobs(job_ids=[job_id])
        return rows[0] if rows else None

    def jobs(self, *, job_ids: Sequence[int] | None = None, state: str | None = None,
             meeting_id: str | None = None, since: datetime | None = None) -> list[JobRecord]:
        query = select(CopyJob, RecordingFile).join(RecordingFile, CopyJob.file_id == RecordingFile.id)
        if job_ids is not None:
            query = query.where(CopyJob.id.in_(list(job_ids)))
        if state is not None:
            query = query.where(CopyJob.state == state)
        if meeting_id is not None:
            query = query.where(RecordingFile.meeting_id == meeting_id)
        if since is not None:
            query = query.where(CopyJob.updated_at >= since)
        with self.sessions() as db:
            return [_record(job, f) for job, f in db.execute(query.order_by(CopyJob.id))]


def _record(job: CopyJob, f: RecordingFile) -> JobRecord:
    return JobRecord(
        job_id=job.id, destination=job.destination, state=job.state, attempts=job.attempts,
        object_key=job.object_key, bytes=job.bytes, sha256=job.sha256, etag=job.etag,
        error_code=job.error_code, error_message=job.error_message, meeting_id=f.meeting_id,
        session_id=f.session_id, participant_id=f.participant_id or None, kind=f.kind or None,
        file_path=f.file_path, source_url=f.source_url, webhook_type=f.webhook_type,
        recording_id=f.recording_id, size=f.size, received_at=_aware(f.received_at),  # type: ignore[arg-type]
        updated_at=_aware(job.updated_at), lease_owner=job.lease_owner,  # type: ignore[arg-type]
        lease_expires_at=_aware(job.lease_expires_at))


def _insert_or_get(db: Session, row: Any, existing: Any) -> tuple[int, bool]:
    """Insert `row`, or return the id of the row a unique constraint says already exists."""
    try:
        with db.begin_nested():
            db.add(row)
            db.flush()
        return int(row.id), True
    except IntegrityError:
        found = db.scalar(existing)
        if found is None:
            raise
        return int(found), False
