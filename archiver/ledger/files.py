"""Recording files and their copy jobs inside one ledger transaction: one row per file, whatever origin
or path form names it, and one job per file x destination."""

from __future__ import annotations

import functools
import posixpath
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from archiver.domain.recordings import RecordingFile
from archiver.domain.states import Flag, JobState
from archiver.ledger.models import NONE, CopyJob, FileRow
from archiver.ledger.records import NewJob, utcnow

FILE_KEY = ("meeting_id", "session_id", "participant_id", "kind", "file_name")


def record_file(db: Session, f: RecordingFile, event_id: int, received_at: datetime, *, confirmed: bool = False) -> int:
    """The row of this file: found by VideoSDK's file id or by name (webhooks and the REST API name one
    file with different path prefixes, reference section 2), else inserted. What this origin knows and
    the row lacks (size, ids, times: REST answers carry them, webhooks do not) is filled in.

    ``confirmed``: the origin is VideoSDK's REST API asked with our credentials (a lookup, reconcile), so
    the file is ours: the row is marked confirmed and takes the API's URL, which then is what the worker
    downloads. An unconfirmed origin (a webhook: anyone with a VideoSDK account can point one at us)
    never replaces a URL, only fills in a missing one."""
    now = utcnow()
    row = new_file_row(f, event_id, received_at, confirmed_at=now if confirmed else None)
    file_id = _same_file(db, f, row["participant_id"], row["kind"], row["file_name"])
    if file_id is None:
        file_id, fresh = insert_or_get(db, FileRow, row, FILE_KEY)
        if fresh:
            return file_id
    learned: dict[str, Any] = {k: v for k, v in (("size", f.size), ("recording_id", f.recording_id),
                                                 ("videosdk_file_id", f.file_id), ("recorded_at", f.recorded_at))
                               if v is not None}
    if confirmed:
        learned["confirmed_at"] = now
        if f.file_url is not None:
            learned["source_url"] = f.file_url
    if learned:
        db.execute(update(FileRow).where(FileRow.id == file_id).values(**learned))
    if f.file_url is not None and not confirmed:  # a URL where the first origin had none (customer storage)
        db.execute(update(FileRow).where(FileRow.id == file_id, FileRow.source_url.is_(None))
                   .values(source_url=f.file_url))
    return file_id


def new_file_row(f: RecordingFile, event_id: int | None, received_at: datetime, *,
                 confirmed_at: datetime | None = None) -> dict[str, Any]:
    """The recording_files row a file gets when it is first recorded (column name -> value)."""
    return dict(meeting_id=f.meeting_id, session_id=f.session_id, participant_id=f.participant_id or NONE,
                kind=f.kind or NONE, file_path=f.file_path.lstrip("/"),
                file_name=posixpath.basename(f.file_path.rstrip("/")) or f.filename, videosdk_file_id=f.file_id,
                recording_kind=str(f.recording_kind), storage=str(f.storage), source_url=f.file_url,
                webhook_type=f.webhook_type, size=f.size, recording_id=f.recording_id, recorded_at=f.recorded_at,
                event_id=event_id, received_at=received_at, confirmed_at=confirmed_at)


def taken_keys(key: str, manifest: bool) -> list[str]:
    """The keys a job's objects take: its key, and with a manifest its KEY.json (and, for a key ending
    .json, the key without it, whose manifest would be this key)."""
    keys = [key]
    if manifest:
        keys.append(f"{key}.json")
        if key.endswith(".json"):
            keys.append(key[: -len(".json")])
    return keys


def _same_file(db: Session, f: RecordingFile, participant: str, kind: str, name: str) -> int | None:
    stem = name.rsplit(".", 1)[0]
    same = [FileRow.file_name == name, FileRow.videosdk_file_id == stem]
    if f.file_id:
        same += [FileRow.videosdk_file_id == f.file_id, FileRow.file_name.startswith(f.file_id + ".", autoescape=True)]
    query = select(FileRow.id).where(
        FileRow.meeting_id == f.meeting_id, FileRow.participant_id == participant, FileRow.kind == kind,
        # a lookup or listing that did not say which session matches any; an unknown one stored earlier too
        or_(FileRow.session_id == f.session_id, FileRow.session_id == NONE) if f.session_id else true(),
        or_(*same)).order_by(FileRow.id).limit(1)
    return db.scalar(query)


def record_job(db: Session, file_id: int, job: NewJob) -> tuple[int, bool, bool]:
    """(job id, whether this call created it, whether it is to be published: pending)."""
    now = utcnow()
    state = JobState.FAILED if job.error is not None else JobState.HELD if job.held is not None else JobState.PENDING
    code = "template" if job.error is not None else Flag.CUSTOMER_STORAGE if job.held is not None else None
    row = dict(file_id=file_id, destination=job.destination, object_key=job.object_key, state=state, attempts=0,
               created_at=now, updated_at=now, error_code=code, error_message=job.error or job.held,
               finished_at=now if state == JobState.FAILED else None)
    job_id, new = insert_or_get(db, CopyJob, row, ("file_id", "destination"))
    if new and job.object_key is not None and (other := key_taken(db, job_id, job.destination, job.object_key,
                                                                    job.manifest)) is not None:
        db.execute(update(CopyJob).where(CopyJob.id == job_id).values(
            state=JobState.FAILED, error_code="key_collision", finished_at=now, error_message=collision_message(
                job.destination, job.object_key, other)))
        return job_id, True, False
    return job_id, new, new and state == JobState.PENDING


def key_taken(db: Session, job_id: int, destination: str, key: str, manifest: bool) -> tuple[int, str] | None:
    """Another job of the destination whose object (or, with manifests, whose KEY.json) is at ``key`` or
    at this job's KEY.json: (its id, its key). Two files must never be written to one key: the second
    would be refused as a conflict at best, and a manifest must never land on a recording."""
    found = db.execute(select(CopyJob.id, CopyJob.object_key).where(
        CopyJob.destination == destination, CopyJob.object_key.in_(taken_keys(key, manifest)), CopyJob.id != job_id)
        .order_by(CopyJob.id).limit(1)).first()
    return (int(found[0]), str(found[1])) if found is not None else None


def collision_message(destination: str, key: str, other: tuple[int, str]) -> str:
    return (f"{destination}: this file's key {key!r} collides with job {other[0]}'s {other[1]!r} (as the object or "
            "its manifest KEY.json): two files would share one key; nothing was written. Make the key template "
            "tell them apart (e.g. add {sessionId}, {participantId|room} or {kind|all}), then `archiver retry "
            "JOB_ID` renders it again")


def insert_or_get(db: Session, model: Any, values: dict[str, Any], unique: tuple[str, ...]) -> tuple[int, bool]:
    """Insert a row, or return the id of the row its unique key says already exists.

    One INSERT ... ON CONFLICT (unique) DO NOTHING RETURNING id (SQLite >= 3.35, PostgreSQL), and a
    SELECT (built only then) for a duplicate: no ORM unit of work and no SAVEPOINT/RELEASE pair per
    row. The INSERT is built once per table and dialect; the row travels as parameters."""
    new_id = db.execute(_upsert(db.get_bind().dialect.name, model, unique), values).scalar()
    if new_id is not None:
        return int(new_id), True
    table = model.__table__
    found = db.scalar(select(table.c.id).where(*(table.c[k] == values[k] for k in unique)))
    if found is None:
        raise RuntimeError(f"{model.__tablename__}: a row conflicts on {unique} but none was found")
    return int(found), False


@functools.cache
def _upsert(dialect: str, model: Any, unique: tuple[str, ...]) -> Any:
    table, elements = model.__table__, list(unique)
    if dialect == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing(index_elements=elements).returning(table.c.id)
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=elements).returning(table.c.id)
    raise KeyError(dialect)
