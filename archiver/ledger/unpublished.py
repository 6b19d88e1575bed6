"""Work that may never have reached the broker: copy jobs and lookups still pending that no worker
ever started (a job's started_at is set by its first claim and never cleared; a lookup's attempts
count its starts), for a receiver process to put on the broker when it starts
(archiver.intake.relay). A receiver that died held such ids in memory only; without this, the lease
sweeper finds them only after [retry] requeue_after_seconds.

No column says "published": a pending, never-started job may also have its message waiting on the
broker. Sending it again is harmless: a worker claims a job only while it is pending (claims.take)
and starts a lookup only while it is pending (Lookups.start), so the second message is skipped. A job
or lookup that was started once and waits for a retry is left out: its retry message has a
countdown, which a message sent now would cut short (a job's attempts may be back to 0 then: a
refunded attempt).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.domain.states import JobState, LookupState
from archiver.ledger.models import CopyJob, Lookup


def never_started(reads: sessionmaker[Session], *, since: datetime, before: datetime,
                  limit: int) -> tuple[list[int], list[int]]:
    """(copy job ids, lookup ids): pending, never started, last changed at or after `since` and created
    before `before`; at most `limit` of each, oldest first. Found through the (state, updated_at)
    indexes, so the rows read are the pending ones of the window. Raises SQLAlchemy's errors."""
    with reads() as db:
        jobs = db.scalars(select(CopyJob.id).where(
            CopyJob.state == JobState.PENDING, CopyJob.updated_at >= since, CopyJob.started_at.is_(None),
            CopyJob.created_at < before).order_by(CopyJob.updated_at, CopyJob.id).limit(limit))
        lookups = db.scalars(select(Lookup.id).where(
            Lookup.state == LookupState.PENDING, Lookup.updated_at >= since, Lookup.attempts == 0,
            Lookup.created_at < before).order_by(Lookup.updated_at, Lookup.id).limit(limit))
        return list(jobs), list(lookups)
