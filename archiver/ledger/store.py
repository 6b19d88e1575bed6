"""Ledger operations. Every state change is one conditional UPDATE, so two workers can never both own
a job, and a duplicate event can never create a second job (unique constraints + insert-or-get)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, or_, select, text, update

from archiver.domain.recordings import RecordingFile
from archiver.domain.states import CLEARED_BY_VERIFY, AttemptOutcome, Flag, JobState, RunResult
from archiver.ledger import claims
from archiver.ledger import lookups as lookups_module
from archiver.ledger import pieces as pieces_module
from archiver.ledger.claims import Claim
from archiver.ledger.database import dml, read_only, session_factory
from archiver.ledger.deliveries import Deliveries
from archiver.ledger.files import collision_message, insert_or_get, key_taken, record_file, record_job
from archiver.ledger.models import CopyJob, Deletion, Event, FileRow
from archiver.ledger.outbox import Outbox
from archiver.ledger.records import (
    Accepted,
    CopyState,
    FileRecord,
    JobRecord,
    LookupRecord,
    NewJob,
    _aware,
    file_record,
    job_record,
    utcnow,
)

# Origins whose files come from VideoSDK's REST API asked with our credentials: they are ours.
API_ORIGINS = frozenset({"lookup", "reconcile", "merge-lookup"})

# The record types are re-exported: callers import everything ledger-shaped from here.
__all__ = ["Accepted", "Claim", "CopyState", "FileRecord", "JobRecord", "Ledger", "LookupRecord", "NewJob",
           "utcnow"]


class Ledger:
    def __init__(self, engine: Engine, outbox: Outbox | None = None) -> None:
        self.engine = engine
        # Outcomes the customer's applications want to hear about, written with the outcome itself.
        self.outbox = outbox or Outbox()
        self.sessions = session_factory(engine)
        self.reads = session_factory(read_only(engine))  # no write lock on SQLite
        self.lookups = lookups_module.Lookups(self.sessions, self.reads)
        self.pieces = pieces_module.Pieces(self.sessions, self.reads)  # an HLS copy's committed pieces
        self.deliveries = Deliveries(self.sessions, self.reads)  # the outbox's sending side

    # ---- intake ---------------------------------------------------------------------------------
    def accept(self, *, body: str, dedupe_key: str, webhook_type: str, meeting_id: str | None,
               session_id: str | None, received_at: datetime, verified: bool, source: str,
               files: Sequence[tuple[RecordingFile, Sequence[NewJob]]],
               lookups: Sequence[tuple[str, str]] = (),
               publish: Callable[[Sequence[int]], None] | None = None,
               publish_lookups: Callable[[Sequence[int]], None] | None = None) -> Accepted:
        """Record an event with its files, jobs and lookups ((recording kind, resource id) of a recording
        to fetch through the REST API) in one transaction; a duplicate adds nothing.

        `publish` receives the ids of jobs this call created, `publish_lookups` those of lookups it
        created; both run before the commit: if one raises (broker down), nothing is recorded, so no
        row ever claims an acceptance that the broker never saw. A worker that sees an id before the
        commit is visible retries briefly.
        """
        with self.sessions.begin() as db:
            event = dict(dedupe_key=dedupe_key, webhook_type=webhook_type, meeting_id=meeting_id,
                         session_id=session_id, received_at=received_at, signature_verified=verified,
                         source=source, body=body)
            event_id, fresh = insert_or_get(db, Event, event, ("dedupe_key",))
            file_ids: list[int] = []
            job_ids: list[int] = []
            created: list[int] = []
            for new_file, jobs in files:
                file_id = record_file(db, new_file, event_id, received_at, confirmed=source in API_ORIGINS)
                file_ids.append(file_id)
                for job in jobs:
                    job_id, new, publish_it = record_job(db, file_id, job)
                    job_ids.append(job_id)
                    if publish_it:
                        created.append(job_id)
                    elif new:  # failed at once (its key cannot be made): a copy failed for good
                        self.outbox.after_copy(db, job_id)
            if source == "reconcile":
                self.outbox.after_discovery(db, file_ids, event_id)
            new_lookups = []
            for kind, resource in lookups:
                lookup_id, new = lookups_module.add(db, event_id, kind, resource)
                if new:
                    new_lookups.append(lookup_id)
            if publish is not None and created:
                publish(created)
            if publish_lookups is not None and new_lookups:
                publish_lookups(new_lookups)
            return Accepted(event_id, not fresh, tuple(file_ids), tuple(job_ids), tuple(created),
                            tuple(new_lookups))

    # ---- a worker's view of one job -------------------------------------------------------------
    def claim(self, job_id: int, worker: str, lease: timedelta) -> JobRecord | None:
        """Take the job if it is pending or its owner's lease ran out; count the attempt."""
        claimed = self.take(job_id, worker, lease)
        return claimed.job if claimed is not None else None

    def take(self, job_id: int, worker: str, lease: timedelta) -> Claim | None:
        """``claim``, and whether this is the job's first attempt ever (see ``Claim``)."""
        return claims.take(self.sessions, job_id, worker, lease)

    def renew(self, job_id: int, worker: str, lease: timedelta, *, done: int | None = None) -> bool:
        """Extend the lease; `done` (bytes copied so far) goes on the open attempt, so `archiver status`
        shows how far a running copy is (as of the last renewal)."""
        return claims.renew(self.sessions, job_id, worker, lease, done)

    def set_key(self, job_id: int, worker: str, key: str, *, manifest: bool = False) -> str | None:
        """Record the key a job rendered at claim time (it had none: its template failed at intake).
        Returns None when recorded, "lost" when the lease is gone, or why the key collides with another
        job's (nothing recorded)."""
        with self.sessions.begin() as db:
            destination = db.scalar(select(CopyJob.destination).where(CopyJob.id == job_id))
            if destination is not None and (other := key_taken(db, job_id, destination, key, manifest)) is not None:
                return collision_message(destination, key, other)
            done = dml(db, update(CopyJob).where(CopyJob.id == job_id, CopyJob.lease_owner == worker,
                                                    CopyJob.state == JobState.RUNNING, CopyJob.object_key.is_(None))
                              .values(object_key=key, updated_at=utcnow())).rowcount
            return None if done else RunResult.LOST

    def record_intent(self, job_id: int, worker: str, size: int, sha256: str) -> bool:
        """Before committing an object, remember what it will hold: a re-run after a crash in the
        window between commit and `succeed` can then recognise the object as its own."""
        return claims.record_intent(self.sessions, job_id, worker, size, sha256)

    def succeed(self, job_id: int, worker: str, *, size: int, sha256: str, etag: str | None,
                flag: tuple[str, str] | None = None) -> bool:
        """``flag``: (code, message) of a copy that is in place but not verified (see flag_copy), set in
        the same transaction, so nothing ever sees it succeeded and unflagged for a moment."""
        return claims.succeed(self.sessions, self.outbox, job_id, worker, size=size, sha256=sha256, etag=etag,
                              flag=flag)

    def fail(self, job_id: int, worker: str, *, code: str, message: str, retrying: bool,
             refund: bool = False) -> bool:
        """``refund``: the attempt does not count against the budget (waiting for a file that reaches the
        CDN late, a worker that was stopped): a later transient fault still gets every retry."""
        state, outcome = ((JobState.PENDING, AttemptOutcome.RETRYING) if retrying
                          else (JobState.FAILED, AttemptOutcome.FAILED))
        values: dict[str, Any] = dict(error_code=code, error_message=message[:4000])
        if refund:
            values["attempts"] = CopyJob.attempts - 1
        return claims.finish(self.sessions, self.outbox, job_id, worker, state, values, outcome)

    def requeue(self, job_ids: Iterable[int] | None = None, *, failed: bool = False,
                held: bool = False, dry_run: bool = False) -> list[int]:
        """Operator retry: failed jobs (`failed`), held ones (`held`: waiting for the customer's storage
        as a source) or the given ones back to pending. Succeeded copies are never re-run, except one
        that `verify` found missing from its destination (deleted behind our back). `dry_run`: return
        the ids that would be requeued and change nothing."""
        retryable = or_(CopyJob.state == JobState.FAILED, and_(CopyJob.state == JobState.SUCCEEDED,
                                                         CopyJob.error_code == Flag.VERIFY_MISSING))
        if held:
            retryable = CopyJob.state == JobState.HELD
        elif not failed:
            retryable = or_(retryable, CopyJob.state.in_((JobState.PENDING, JobState.HELD)))
        with self.sessions.begin() as db:
            query = select(CopyJob.id).where(retryable)
            if job_ids is not None:
                query = query.where(CopyJob.id.in_(list(job_ids)))
            ids = list(db.scalars(query))
            if ids and not dry_run:
                # A fresh attempt budget; every earlier attempt (and its error) stays in job_attempts. The
                # job's own error is cleared: it belonged to the attempt that failed, not to this one.
                # The commit intent (bytes, sha256) is cleared: it described an object no longer there.
                db.execute(update(CopyJob).where(CopyJob.id.in_(ids), CopyJob.state != "succeeded")
                           .values(error_code=None, error_message=None))
                db.execute(update(CopyJob).where(CopyJob.id.in_(ids))
                           .values(state=JobState.PENDING, attempts=0, updated_at=utcnow(), finished_at=None,
                                   verified_at=None))
                db.execute(update(CopyJob).where(CopyJob.id.in_(ids), CopyJob.error_code.in_(
                    (Flag.VERIFY_MISSING, Flag.CUSTOMER_STORAGE))).values(bytes=None, sha256=None, etag=None,
                                                                     error_code=None, error_message=None))
            return ids

    def stale_jobs(self, pending_for: timedelta) -> list[int]:
        """Jobs nobody is working on although they should be: running under an expired lease, or
        pending for longer than any scheduled retry could take (its message was lost)."""
        now = utcnow()
        with self.reads() as db:
            return list(db.scalars(select(CopyJob.id).where(or_(
                and_(CopyJob.state == JobState.RUNNING, CopyJob.lease_expires_at < now),
                and_(CopyJob.state == JobState.PENDING, CopyJob.updated_at < now - pending_for)))))

    # ---- reading --------------------------------------------------------------------------------
    def ping(self) -> None:
        """One trivial read (readiness probes): raises what the database raises when it cannot answer."""
        with self.reads() as db:
            db.execute(text("SELECT 1"))

    def event_body(self, event_id: int) -> str | None:
        with self.reads() as db:
            return db.scalar(select(Event.body).where(Event.id == event_id))

    def job(self, job_id: int) -> JobRecord | None:
        rows = self.jobs(job_ids=[job_id])
        return rows[0] if rows else None

    def jobs(self, *, job_ids: Sequence[int] | None = None, state: str | None = None,
             meeting_id: str | None = None, since: datetime | None = None) -> list[JobRecord]:
        query = select(CopyJob, FileRow).join(FileRow, CopyJob.file_id == FileRow.id)
        if job_ids is not None:
            query = query.where(CopyJob.id.in_(list(job_ids)))
        if state is not None:
            query = query.where(CopyJob.state == state)
        if meeting_id is not None:
            query = query.where(FileRow.meeting_id == meeting_id)
        if since is not None:
            query = query.where(CopyJob.updated_at >= since)
        with self.reads() as db:
            return [job_record(job, f) for job, f in db.execute(query.order_by(CopyJob.id))]

    # ---- reconcile, verify, retention -----------------------------------------------------------
    def meetings_since(self, since: datetime) -> list[str]:
        """Rooms of our account named since `since`: by a file VideoSDK's API confirmed, or by an event
        from the API. A room only a webhook named may be someone else's (any VideoSDK account can point
        a webhook at us): reconcile must not ask the API about it with our token."""
        with self.reads() as db:
            events = select(Event.meeting_id).where(Event.received_at >= since, Event.meeting_id.is_not(None),
                                                    Event.source.in_(API_ORIGINS))
            files = select(FileRow.meeting_id).where(FileRow.received_at >= since,
                                                           FileRow.confirmed_at.is_not(None))
            return sorted({m for m in db.scalars(events.union(files)) if m})

    def confirm_file(self, job_id: int, *, size: int | None, recording_id: str | None, videosdk_file_id: str | None,
                     source_url: str | None) -> None:
        """VideoSDK's API, asked with our credentials, lists this job's file: mark it ours and take what the
        API says about it (its size proves the download's length; its URL is what is downloaded)."""
        with self.sessions.begin() as db:
            file_id = db.scalar(select(CopyJob.file_id).where(CopyJob.id == job_id))
            values: dict[str, Any] = {k: v for k, v in (("size", size), ("recording_id", recording_id),
                                                         ("videosdk_file_id", videosdk_file_id),
                                                         ("source_url", source_url)) if v is not None}
            db.execute(update(FileRow).where(FileRow.id == file_id)
                       .values(confirmed_at=utcnow(), **values))

    def files(self, *, meeting_id: str | None = None, awaiting_deletion: bool = False) -> list[FileRecord]:
        """Recording files with their copies; `awaiting_deletion`: those with a recording id that
        retention has not yet deleted from VideoSDK."""
        query = select(FileRow)
        if meeting_id is not None:
            query = query.where(FileRow.meeting_id == meeting_id)
        if awaiting_deletion:
            query = query.where(FileRow.recording_id.is_not(None),
                                FileRow.deleted_from_videosdk_at.is_(None))
        with self.reads() as db:
            rows = list(db.scalars(query.order_by(FileRow.id)))
            copies: dict[int, list[CopyState]] = {}
            if rows:
                jobs = select(CopyJob).where(CopyJob.file_id.in_([f.id for f in rows])).order_by(CopyJob.id)
                for j in db.scalars(jobs):
                    copies.setdefault(j.file_id, []).append(CopyState(j.id, j.destination, j.state, j.bytes,
                                                                      j.error_code, _aware(j.verified_at)))
        return [file_record(f, tuple(copies.get(f.id, ()))) for f in rows]

    def mark_verified(self, job_id: int) -> bool:
        """The copy matched: set verified_at and clear an error an earlier verify set (only those:
        a size_mismatch from reconcile is about the source, which this check did not look at)."""
        with self.sessions.begin() as db:
            db.execute(update(CopyJob).where(CopyJob.id == job_id, CopyJob.error_code.in_(CLEARED_BY_VERIFY))
                       .values(error_code=None, error_message=None))
            done = bool(dml(db, update(CopyJob).where(CopyJob.id == job_id, CopyJob.state == JobState.SUCCEEDED)
                                   .values(verified_at=utcnow())).rowcount)
            if done:
                self.outbox.after_copy(db, job_id)  # its flag cleared: the recording may be archived now
            return done

    def flag_copy(self, job_id: int, code: str, message: str) -> bool:
        """A succeeded copy turned out wrong: unverify it and show why. The state stays succeeded
        (see archiver.copy.verification); updated_at stays too, so `--since` windows are not reset."""
        with self.sessions.begin() as db:
            return bool(dml(db, update(CopyJob).where(CopyJob.id == job_id, CopyJob.state == JobState.SUCCEEDED)
                                   .values(verified_at=None, error_code=code, error_message=message[:4000]))
                        .rowcount)

    def clear_flag(self, job_id: int, code: str) -> bool:
        with self.sessions.begin() as db:
            done = bool(dml(db, update(CopyJob).where(CopyJob.id == job_id, CopyJob.error_code == code)
                                   .values(error_code=None, error_message=None)).rowcount)
            if done:
                self.outbox.after_copy(db, job_id)
            return done

    def record_deletion(self, file_id: int, recording_id: str, outcome: str, detail: str | None = None) -> None:
        """outcome: deleted | already_gone (both final: the file is not considered again) | failed."""
        now = utcnow()
        with self.sessions.begin() as db:
            db.add(Deletion(file_id=file_id, recording_id=recording_id, attempted_at=now, outcome=outcome,
                            detail=detail[:4000] if detail else None))
            if outcome in ("deleted", "already_gone"):
                db.execute(update(FileRow).where(FileRow.id == file_id)
                           .values(deleted_from_videosdk_at=now))
