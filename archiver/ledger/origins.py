"""Which event first recorded a job's file: its body says what the file is to its recording (an
encrypted recording's key or meta file is named only there)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.ledger.models import CopyJob, Event, FileRow


def first_event_body(reads: sessionmaker[Session], job_id: int) -> str | None:
    """The body of the event that recorded the file of ``job_id`` (None for an unknown job)."""
    query = (select(Event.body).join(FileRow, FileRow.event_id == Event.id)
             .join(CopyJob, CopyJob.file_id == FileRow.id).where(CopyJob.id == job_id))
    with reads() as db:
        return db.scalar(query)
