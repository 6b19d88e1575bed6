"""The receiver's common case in three statements: a webhook never seen, naming files never seen, each
getting pending jobs whose keys no other job of its destination holds.

`FreshEvents.record` writes the event, its files and their jobs in one transaction of SQLAlchemy Core
statements built once (no ORM unit of work, no query built per call): an INSERT of the event ... ON
CONFLICT DO NOTHING RETURNING id, then per file an INSERT ... SELECT ... WHERE NOT EXISTS (a row for
the same file, as archiver.ledger.files._same_file finds it) and per job one guarded the same way
against a key another job of the destination holds (files.key_taken). On PostgreSQL an event with one
file and one job (most webhooks, one destination) is those three as CTEs of one statement. Any of them finding something
(a duplicate delivery, a file a lookup or reconcile recorded first, a key collision) rolls the whole
transaction back and answers None: Ledger.accept then decides, as it always did. So the rows written
here are exactly those Ledger.accept writes for such an event; tests/test_fresh_events.py compares.

It keeps its own few connections (one per intake thread at most) instead of a pool checkout per
webhook, which costs the engine's pre-ping round trip each time; a connection that failed is dropped.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, exists, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from archiver.domain.recordings import RecordingFile
from archiver.domain.states import JobState
from archiver.ledger.files import new_file_row, taken_keys
from archiver.ledger.models import NONE, CopyJob, Event, FileRow
from archiver.ledger.records import Accepted, NewJob, utcnow

FILE_COLUMNS = ("meeting_id", "session_id", "participant_id", "kind", "file_path", "file_name", "recording_kind",
                "storage", "source_url", "webhook_type", "size", "recording_id", "recorded_at", "event_id",
                "received_at")
JOB_COLUMNS = ("file_id", "destination", "object_key", "state", "attempts", "created_at", "updated_at")
KEYS = 3  # a job's key, and with a manifest its KEY.json and (for a key ending .json) the key without it
MAX_IDLE = 8  # connections kept between webhooks


class NotFresh(Exception):
    """Something this event names is in the ledger already: the general path decides."""


def job_keys(job: NewJob) -> list[str]:
    """The keys a job takes (files.taken_keys), padded to KEYS for the statement's fixed parameters."""
    assert job.object_key is not None
    return (taken_keys(job.object_key, job.manifest) * KEYS)[:KEYS]


def eligible(source_confirmed: bool, files: Sequence[tuple[RecordingFile, Sequence[NewJob]]]) -> bool:
    """Whether the event is one this path can record: files from a webhook (not confirmed by the API),
    each with a session and no VideoSDK file id, every job pending with a key, no two keys alike."""
    if source_confirmed or not files:
        return False
    taken: set[tuple[str, str]] = set()
    for f, jobs in files:
        if not f.session_id or f.file_id or not jobs:
            return False
        for job in jobs:
            if job.error is not None or job.held is not None or job.object_key is None:
                return False
            mine = {(job.destination, k) for k in job_keys(job)}
            if mine & taken:  # two files of one event at one key: the general path fails the second
                return False
            taken |= mine
    return True


class FreshEvents:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def record(self, *, body: str, dedupe_key: str, webhook_type: str, meeting_id: str | None,
               session_id: str | None, received_at: datetime, verified: bool, source: str,
               files: Sequence[tuple[RecordingFile, Sequence[NewJob]]]) -> Accepted | None:
        """The event recorded (every job new and pending: all to publish), or None when it is not fresh
        (nothing written). Raises what the database raises (nothing written then either)."""
        event = dict(dedupe_key=dedupe_key, webhook_type=webhook_type, meeting_id=meeting_id, session_id=session_id,
                     received_at=received_at, signature_verified=verified, source=source, body=body)
        for held in (True, False):
            conn = self._take() if held else self.engine.connect()  # a new one is pinged by the pool
            try:
                with conn.begin():
                    if conn.dialect.name == "postgresql" and len(files) == 1 and len(files[0][1]) == 1:
                        event_id, file_ids, job_ids = _in_one_statement(conn, event, files[0][0], files[0][1][0])
                    else:
                        event_id, file_ids, job_ids = _statement_each(conn, event, files)
            except NotFresh:
                self._give_back(conn)
                return None
            except DBAPIError as exc:
                conn.invalidate()  # whatever state it is in, it is not reused
                conn.close()
                # A held connection the server dropped (restart, idle timeout): once more on a new one, as
                # the pool's pre-ping would have done at checkout. (Had the lost commit gone through, the
                # second try finds the event: Ledger.accept answers it as a duplicate; the sweeper
                # enqueues its jobs.)
                if not (held and exc.connection_invalidated):
                    raise
                continue
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            self._give_back(conn)
            return Accepted(event_id, False, tuple(file_ids), tuple(job_ids), tuple(job_ids))
        raise AssertionError("unreachable: the second try returns or raises")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.engine.connect()

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()


def _statement_each(conn: Connection, event: dict[str, Any],
                    files: Sequence[tuple[RecordingFile, Sequence[NewJob]]]) -> tuple[int, list[int], list[int]]:
    """The event, then each file, then each of its jobs: one INSERT each. Raises NotFresh."""
    insert_event, insert_file, insert_job = _statements(conn.dialect.name)
    event_id = conn.execute(insert_event, event).scalar()
    if event_id is None:
        raise NotFresh
    file_ids, job_ids = [], []
    for f, jobs in files:
        file_id = conn.execute(insert_file, _file_row(f, event_id, event["received_at"])).scalar()
        if file_id is None:
            raise NotFresh
        file_ids.append(file_id)
        for job in jobs:
            job_id = conn.execute(insert_job, dict(file_id=file_id, **_job_row(job))).scalar()
            if job_id is None:
                raise NotFresh
            job_ids.append(job_id)
    return int(event_id), file_ids, job_ids


def _in_one_statement(conn: Connection, event: dict[str, Any], f: RecordingFile,
                      job: NewJob) -> tuple[int, list[int], list[int]]:
    """PostgreSQL, one file and one job: the three INSERTs as data-modifying CTEs of one statement, one
    round trip. Each inserts only if the one before did. Raises NotFresh."""
    params = {**{f"e_{k}": v for k, v in event.items()},
              **{f"f_{k}": v for k, v in _file_row(f, None, event["received_at"]).items() if k != "event_id"},
              **{f"j_{k}": v for k, v in _job_row(job).items()}}
    event_id, file_id, job_id = conn.execute(_one_statement(), params).one()
    if event_id is None or file_id is None or job_id is None:
        raise NotFresh
    return int(event_id), [file_id], [job_id]


def _file_row(f: RecordingFile, event_id: int | None, received_at: datetime) -> dict[str, Any]:
    """The row Ledger.accept would insert (files.new_file_row; no VideoSDK file id nor confirmation on
    this path, see `eligible`), plus the name's stem that the same-file guard compares."""
    row = {k: v for k, v in new_file_row(f, event_id, received_at).items() if k in FILE_COLUMNS}
    return {**row, "stem": row["file_name"].rsplit(".", 1)[0]}


def _job_row(job: NewJob) -> dict[str, Any]:
    now = utcnow()
    return dict(destination=job.destination, object_key=job.object_key, state=JobState.PENDING, attempts=0,
                created_at=now, updated_at=now, **{f"k{i}": k for i, k in enumerate(job_keys(job))})


def _binds(table: Any, columns: Sequence[str], prefix: str) -> list[Any]:
    return [bindparam(prefix + c, type_=table.c[c].type) for c in columns]


def _new_file(prefix: str) -> Any:
    """No row of recording_files is this file (as files._same_file finds one)."""
    files: Any = FileRow.__table__
    return ~exists().where(
        files.c.meeting_id == bindparam(f"{prefix}meeting_id"),
        files.c.participant_id == bindparam(f"{prefix}participant_id"), files.c.kind == bindparam(f"{prefix}kind"),
        or_(files.c.session_id == bindparam(f"{prefix}session_id"), files.c.session_id == NONE),
        or_(files.c.file_name == bindparam(f"{prefix}file_name"),
            files.c.videosdk_file_id == bindparam(f"{prefix}stem")))


def _free_key(prefix: str) -> Any:
    """No job of the destination holds any of the keys (files.key_taken)."""
    jobs: Any = CopyJob.__table__
    return ~exists().where(and_(jobs.c.destination == bindparam(f"{prefix}destination"),
                                jobs.c.object_key.in_([bindparam(f"{prefix}k{i}") for i in range(KEYS)])))


FILE_KEY = ["meeting_id", "session_id", "participant_id", "kind", "file_name"]


@functools.cache
def _statements(dialect: str) -> tuple[Any, Any, Any]:
    """(event, file, job) INSERTs for `dialect`, built once: the rows travel as parameters."""
    insert: Any = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}[dialect]
    events: Any = Event.__table__
    files: Any = FileRow.__table__
    jobs: Any = CopyJob.__table__
    event = insert(events).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(events.c.id)
    file = (insert(files).from_select(FILE_COLUMNS, select(*_binds(files, FILE_COLUMNS, "")).where(_new_file("")))
            .on_conflict_do_nothing(index_elements=FILE_KEY).returning(files.c.id))
    job = (insert(jobs).from_select(JOB_COLUMNS, select(*_binds(jobs, JOB_COLUMNS, "")).where(_free_key("")))
           .on_conflict_do_nothing(index_elements=["file_id", "destination"]).returning(jobs.c.id))
    return event, file, job


@functools.cache
def _one_statement() -> Any:
    """PostgreSQL: WITH e AS (INSERT event), f AS (INSERT file SELECT ... FROM e WHERE new), j AS (INSERT
    job SELECT ... FROM f WHERE key free) SELECT the three ids (NULL where nothing was inserted)."""
    events: Any = Event.__table__
    files: Any = FileRow.__table__
    jobs: Any = CopyJob.__table__
    event_columns = ("dedupe_key", "webhook_type", "meeting_id", "session_id", "received_at", "signature_verified",
                     "source", "body")
    e = (postgresql_insert(events).values({c: bindparam(f"e_{c}", type_=events.c[c].type) for c in event_columns})
         .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(events.c.id).cte("e"))
    file_columns = [c for c in FILE_COLUMNS if c != "event_id"]
    f = (postgresql_insert(files).from_select(
        [*file_columns, "event_id"], select(*_binds(files, file_columns, "f_"), e.c.id).where(_new_file("f_")))
        .on_conflict_do_nothing(index_elements=FILE_KEY).returning(files.c.id).cte("f"))
    job_columns = [c for c in JOB_COLUMNS if c != "file_id"]
    j = (postgresql_insert(jobs).from_select(
        [*job_columns, "file_id"], select(*_binds(jobs, job_columns, "j_"), f.c.id).where(_free_key("j_")))
        .on_conflict_do_nothing(index_elements=["file_id", "destination"]).returning(jobs.c.id).cte("j"))
    return select(select(e.c.id).scalar_subquery(), select(f.c.id).scalar_subquery(),
                  select(j.c.id).scalar_subquery())
