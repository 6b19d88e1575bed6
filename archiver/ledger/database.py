"""Opening the ledger database and keeping its schema in step with the code (Alembic).

Alembic (and Mako, Pygments under it) is imported only to migrate: the schema check every process
makes at start reads the ledger's `alembic_version` row with plain SQL and takes the head revision
from the migration files' `revision`/`down_revision` lines, which saves about 0.1 s of CPU per start.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Engine, Executable, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from archiver.observability.redaction import mask_url
from archiver.private_files import private_sqlite_file

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_DATABASE_URL = "sqlite:///./.archiver/ledger.db"
MIGRATIONS = str(Path(__file__).resolve().parent.parent / "migrations")
VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps


class LedgerError(RuntimeError):
    pass


# The database driver failed under a statement (the ledger went away mid-verb): by the ledger's name, so
# that callers outside archiver.ledger need not import SQLAlchemy.
LedgerDriverError = DBAPIError


class SchemaBehind(LedgerError):
    pass


def create_ledger_engine(url: str = DEFAULT_DATABASE_URL, *, pooled: bool = True) -> Engine:
    """pooled=False: every connection is closed after use (NullPool), for a process that forks
    children later and must not hand them an open connection (the worker's metrics server)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerError("database_url is not a database URL (e.g. sqlite:///path.db, "
                          "postgresql+psycopg://user@host/db)") from None
    # hide_parameters: error text would otherwise carry bound values (signed source URLs, bodies).
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "future": True, "hide_parameters": True}
    if not pooled:
        kwargs["poolclass"] = NullPool
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            private_sqlite_file(parsed.database)  # 0600, and so its -wal/-shm: it holds webhook bodies
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front: two transactions that read then write would
    # otherwise deadlock on the lock upgrade, which busy_timeout cannot resolve. Read-only work
    # (status, readyz, a worker looking a job up) takes no write lock and never waits behind one.
    read_only = conn.get_execution_options().get("archiver_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def read_only(engine: Engine) -> Engine:
    """The same engine (and pool), marked so SQLite transactions begin without the write lock."""
    return engine.execution_options(archiver_read_only=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and rollback (SQLAlchemy's documented
    # workaround): take it over and emit BEGIN ourselves in _sqlite_begin.
    dbapi_connection.isolation_level = None
    # WAL lets the receiver read while a worker writes; busy_timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["engine"] = engine
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision in migrations/versions: the one no other revision names as its down_revision.
    Read from the files' top-level assignments (what Alembic reads too), without importing Alembic."""
    revisions: dict[str, str | None] = {}
    for path in sorted(Path(MIGRATIONS, "versions").glob("*.py")):
        values: dict[str, Any] = {}
        target: ast.expr
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                values[target.id] = ast.literal_eval(value)
        if isinstance(values.get("revision"), str):
            down = values.get("down_revision")
            if down is not None and not isinstance(down, str):  # a merge point (a tuple): Alembic knows
                return _alembic_head()
            revisions[values["revision"]] = down
    heads = set(revisions) - {down for down in revisions.values() if down}
    if len(heads) != 1:
        return _alembic_head()  # several heads or none: Alembic's own error says what is wrong
    return heads.pop()


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(MIGRATIONS).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The ledger's revision (its alembic_version row), None for a ledger never migrated. Read without
    the write lock. Several rows (branches Alembic would refuse to name one of) come back comma-joined,
    which matches no head."""
    with read_only(engine).connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = sorted(str(r) for r in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    return ",".join(rows) or None


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    command.upgrade(_alembic_config(engine), "head")
    return before, head_revision()


def require_current_schema(engine: Engine) -> None:
    """Refuse to run against a schema that is behind the code, saying what to run."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = mask_url(engine.url.render_as_string(hide_password=False))
        state = "is empty" if current is None else f"is at revision {current}"
        raise SchemaBehind(f"the ledger at {where} {state}; this version needs {head}: run `archiver db upgrade`")


def dml(db: Session, statement: Executable) -> CursorResult[Any]:
    """db.execute(statement) for an UPDATE, INSERT or DELETE, whose `rowcount` callers read: the
    Session returns a CursorResult for these at runtime, but SQLAlchemy 2.1 types it as Result."""
    return cast("CursorResult[Any]", db.execute(statement))
