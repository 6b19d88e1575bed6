"""Read-only aggregate views of the copy jobs, counted in the database (`archiver status --summary`).

Every function takes the ledger and returns plain data; nothing is written. Times are aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from archiver.domain.states import VERIFY_CODES
from archiver.ledger.models import CopyJob, FileRow, JobAttempt
from archiver.ledger.records import _aware, utcnow
from archiver.ledger.store import Ledger


@dataclass(frozen=True)
class Summary:
    """counts: {destination: {state: n}}; flagged: {destination: n} (succeeded copies verify found wrong);
    failures: {error_code: n} over failed jobs; oldest_pending: the pending job waiting longest (job_id,
    destination, meeting_id, age_seconds) or None; running: one dict per running job (job_id,
    destination, meeting_id, file_path, attempts, size in bytes or None, done: bytes copied as of the
    worker's last lease renewal or None, age_seconds, lease_owner)."""

    counts: dict[str, dict[str, int]]
    flagged: dict[str, int]
    failures: dict[str, int]
    oldest_pending: dict[str, Any] | None
    running: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "flagged": self.flagged, "failures": self.failures,
                "oldest_pending": self.oldest_pending, "running": self.running}


def _age(moment: datetime | None, now: datetime) -> float | None:
    moment = _aware(moment)
    return None if moment is None else round((now - moment).total_seconds(), 1)


def summarize(ledger: Ledger) -> Summary:
    now = utcnow()
    with ledger.reads() as db:
        counts: dict[str, dict[str, int]] = {}
        for destination, state, n in db.execute(select(CopyJob.destination, CopyJob.state, func.count())
                                                .group_by(CopyJob.destination, CopyJob.state)):
            counts.setdefault(destination, {})[state] = n
        flagged = dict(db.execute(select(CopyJob.destination, func.count())  # type: ignore[arg-type]
                                  .where(CopyJob.state == "succeeded", CopyJob.error_code.in_(VERIFY_CODES))
                                  .group_by(CopyJob.destination)).all())
        failures = dict(db.execute(select(func.coalesce(CopyJob.error_code, "unknown"), func.count())  # type: ignore[arg-type]
                                   .where(CopyJob.state == "failed").group_by(CopyJob.error_code)).all())
        pending = db.execute(select(CopyJob.id, CopyJob.destination, FileRow.meeting_id, CopyJob.created_at)
                             .join(FileRow, CopyJob.file_id == FileRow.id)
                             .where(CopyJob.state == "pending").order_by(CopyJob.created_at, CopyJob.id)
                             .limit(1)).first()
        rows = list(db.execute(select(CopyJob, FileRow).join(FileRow, CopyJob.file_id == FileRow.id)
                               .where(CopyJob.state == "running").order_by(CopyJob.id)))
    done = progress(ledger, [j.id for j, _ in rows])
    running = [{"job_id": j.id, "destination": j.destination, "meeting_id": f.meeting_id, "file_path": f.file_path,
                "attempts": j.attempts, "size": f.size, "done": done.get(j.id),
                "age_seconds": _age(j.started_at or j.updated_at, now), "lease_owner": j.lease_owner}
               for j, f in rows]
    oldest = None if pending is None else {"job_id": pending[0], "destination": pending[1],
                                           "meeting_id": pending[2], "age_seconds": _age(pending[3], now)}
    return Summary(counts, flagged, failures, oldest, running)


def flagged_job_ids(ledger: Ledger, *, meeting_id: str | None = None, since: datetime | None = None) -> list[int]:
    """Succeeded copies `verify` flagged (missing from the destination, or different): failed in effect."""
    query = (select(CopyJob.id).join(FileRow, CopyJob.file_id == FileRow.id)
             .where(CopyJob.state == "succeeded", CopyJob.error_code.in_(VERIFY_CODES)))
    if meeting_id is not None:
        query = query.where(FileRow.meeting_id == meeting_id)
    if since is not None:
        query = query.where(CopyJob.updated_at >= since)
    with ledger.reads() as db:
        return list(db.scalars(query))


def started_at(ledger: Ledger, job_ids: list[int]) -> dict[int, datetime | None]:
    """When each running job's current attempt started (claim time)."""
    if not job_ids:
        return {}
    with ledger.reads() as db:
        return {i: _aware(s) for i, s in db.execute(select(CopyJob.id, CopyJob.started_at)
                                                    .where(CopyJob.id.in_(job_ids)))}


def progress(ledger: Ledger, job_ids: list[int]) -> dict[int, int]:
    """Bytes each running job's open attempt had copied at its worker's last lease renewal (absent: none
    reported yet)."""
    if not job_ids:
        return {}
    with ledger.reads() as db:
        return {i: b or 0 for i, b in db.execute(select(JobAttempt.job_id, JobAttempt.bytes)
                                            .where(JobAttempt.job_id.in_(job_ids), JobAttempt.finished_at.is_(None),
                                                   JobAttempt.bytes.is_not(None)))}
