"""A worker's verbs on one job (claim, renew, record the commit intent, finish), as few and as cheap
statements as the guarantees allow.

Every copy runs these, so their fixed cost is paid per recording: with small recordings it was most
of the ledger's share of a worker's CPU. The statements are built once, at import, with bound
parameters (building and cache-keying a statement cost more than running it on SQLite), and run as
Core statements on the transaction's connection (an ORM-enabled UPDATE also evaluates its criteria
against the session). Each verb is still one transaction whose conditional UPDATE decides it, exactly
as before: two workers can never both own a job, and a worker that lost its lease changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from archiver.domain.states import AttemptOutcome, JobState
from archiver.ledger.models import CopyJob, FileRow, JobAttempt
from archiver.ledger.outbox import Outbox
from archiver.ledger.records import JobRecord, job_record, utcnow

JOBS = cast(Table, CopyJob.__table__)
ATTEMPTS = cast(Table, JobAttempt.__table__)

# Bound parameter names carry a "p_" prefix: a column's own name is reserved for SET in an UPDATE.
_TAKE = (update(JOBS)
         .where(JOBS.c.id == bindparam("p_job"), or_(
             JOBS.c.state == JobState.PENDING,
             and_(JOBS.c.state == JobState.RUNNING, JOBS.c.lease_expires_at < bindparam("p_now"))))
         .values(state=JobState.RUNNING, lease_owner=bindparam("p_worker"), lease_expires_at=bindparam("p_until"),
                 attempts=JOBS.c.attempts + 1, started_at=bindparam("p_now"), updated_at=bindparam("p_now")))
# The job as claimed, with whether any attempt of it ever started before this one (read before ours is added).
_TAKEN = (select(CopyJob, FileRow, exists().where(JobAttempt.job_id == CopyJob.id).label("tried"))
          .join(FileRow, CopyJob.file_id == FileRow.id).where(CopyJob.id == bindparam("p_job")))
_CLOSE_OPEN = (update(ATTEMPTS).where(ATTEMPTS.c.job_id == bindparam("p_job"), ATTEMPTS.c.finished_at.is_(None))
               .values(finished_at=bindparam("p_now"), outcome=AttemptOutcome.LOST, error_code="lease_expired",
                       error_message="the worker stopped before finishing (lease expired)"))
_OPEN = insert(ATTEMPTS).values(job_id=bindparam("p_job"), number=bindparam("p_number"),
                                worker=bindparam("p_worker"), started_at=bindparam("p_now"))
_OWNED = and_(JOBS.c.id == bindparam("p_job"), JOBS.c.lease_owner == bindparam("p_worker"),
              JOBS.c.state == JobState.RUNNING)
_OWN_ATTEMPT = and_(ATTEMPTS.c.job_id == bindparam("p_job"), ATTEMPTS.c.worker == bindparam("p_worker"),
                    ATTEMPTS.c.finished_at.is_(None))
_RENEW = update(JOBS).where(_OWNED).values(lease_expires_at=bindparam("p_until"))
_PROGRESS = update(ATTEMPTS).where(_OWN_ATTEMPT).values(bytes=bindparam("p_done"))
_INTENT = update(JOBS).where(_OWNED).values(bytes=bindparam("p_size"), sha256=bindparam("p_sha256"),
                                            updated_at=bindparam("p_now"))
_SUCCEED = update(JOBS).where(_OWNED).values(
    state=JobState.SUCCEEDED, lease_owner=None, lease_expires_at=None, updated_at=bindparam("p_now"),
    finished_at=bindparam("p_now"), bytes=bindparam("p_size"), sha256=bindparam("p_sha256"),
    etag=bindparam("p_etag"), error_code=bindparam("p_code"), error_message=bindparam("p_message"))
_CLOSE_OWN = update(ATTEMPTS).where(_OWN_ATTEMPT).values(
    finished_at=bindparam("p_now"), outcome=bindparam("p_outcome"), bytes=bindparam("p_size"),
    error_code=bindparam("p_code"), error_message=bindparam("p_message"))


@dataclass(frozen=True)
class Claim:
    """A job this worker now holds. ``first``: no attempt of it ever started before this one, so
    nothing of it can be at its destination yet (no object, no unfinished upload): the copy may skip
    looking for a dead attempt's leftovers. Operator retries and redeliveries are never ``first``."""

    job: JobRecord
    first: bool


def take(sessions: sessionmaker[Session], job_id: int, worker: str, lease: timedelta) -> Claim | None:
    """Take the job if it is pending or its owner's lease ran out; count the attempt, close a dead
    owner's attempt as lost, open ours, and read the job back, all in one transaction."""
    now = utcnow()
    with sessions.begin() as db:
        conn = db.connection()
        if not conn.execute(_TAKE, {"p_job": job_id, "p_now": now, "p_worker": worker, "p_until": now + lease}
                            ).rowcount:
            return None
        job, file, tried = db.execute(_TAKEN, {"p_job": job_id}).one()
        if tried:  # an attempt still open belonged to a worker that died: close it as lost
            conn.execute(_CLOSE_OPEN, {"p_job": job_id, "p_now": now})
        conn.execute(_OPEN, {"p_job": job_id, "p_number": job.attempts, "p_worker": worker, "p_now": now})
        return Claim(job_record(job, file), first=not tried)


def renew(sessions: sessionmaker[Session], job_id: int, worker: str, lease: timedelta, done: int | None) -> bool:
    with sessions.begin() as db:
        conn = db.connection()
        renewed = bool(conn.execute(_RENEW, {"p_job": job_id, "p_worker": worker,
                                             "p_until": utcnow() + lease}).rowcount)
        if renewed and done is not None:
            conn.execute(_PROGRESS, {"p_job": job_id, "p_worker": worker, "p_done": done})
        return renewed


def record_intent(sessions: sessionmaker[Session], job_id: int, worker: str, size: int, sha256: str) -> bool:
    with sessions.begin() as db:
        return bool(db.connection().execute(_INTENT, {"p_job": job_id, "p_worker": worker, "p_size": size,
                                                      "p_sha256": sha256, "p_now": utcnow()}).rowcount)


def succeed(sessions: sessionmaker[Session], outbox: Outbox, job_id: int, worker: str, *, size: int, sha256: str,
            etag: str | None, flag: tuple[str, str] | None) -> bool:
    code, message = flag or (None, None)
    params = {"p_job": job_id, "p_worker": worker, "p_now": utcnow(), "p_size": size, "p_sha256": sha256,
              "p_etag": etag, "p_code": code, "p_message": message, "p_outcome": JobState.SUCCEEDED}
    with sessions.begin() as db:
        conn = db.connection()
        if not conn.execute(_SUCCEED, params).rowcount:
            return False
        conn.execute(_CLOSE_OWN, params)
        outbox.after_copy(db, job_id)
        return True


def finish(sessions: sessionmaker[Session], outbox: Outbox, job_id: int, worker: str, state: str,
           values: dict[str, Any], outcome: str) -> bool:
    """End the attempt otherwise (a failure: pending again, or failed for good): the job to ``state`` with
    ``values`` (columns of copy_jobs), its open attempt closed with ``outcome``; the outbox rows in the
    same transaction."""
    now = utcnow()
    with sessions.begin() as db:
        conn = db.connection()
        done = conn.execute(update(JOBS).where(_OWNED).values(
            state=state, lease_owner=None, lease_expires_at=None, updated_at=now,
            finished_at=now if state != JobState.PENDING else None, **values),
            {"p_job": job_id, "p_worker": worker}).rowcount
        if done:
            conn.execute(_CLOSE_OWN, {"p_job": job_id, "p_worker": worker, "p_now": now, "p_outcome": outcome,
                                      "p_size": None, "p_code": values.get("error_code"),
                                      "p_message": values.get("error_message")})
            if state != JobState.PENDING:
                outbox.after_copy(db, job_id)
        return bool(done)
