"""Copying a whole ledger from one database to another (`archiver db copy`): SQLite -> PostgreSQL.

The documented way to move a deployment off its embedded SQLite ledger: stop the receiver, workers
and beat, copy, point `database_url` at the new database, start again. Every table the code declares
is copied in foreign-key order with its primary keys kept (jobs, events and copies keep their ids, so
log lines and `archiver status` output from before the move still name the right rows), then
PostgreSQL's id sequences are moved past the copied ids and every table's row count is compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

from sqlalchemy import Connection, DateTime, Engine, Integer, Table, func, select, text

from archiver.ledger.database import LedgerError, create_ledger_engine, require_current_schema, upgrade
from archiver.ledger.models import Base
from archiver.observability.redaction import mask_url

BATCH_ROWS = 1000


class TargetNotEmpty(LedgerError):
    pass


@dataclass(frozen=True)
class TableCopied:
    table: str
    rows: int


def copy_ledger(source_url: str, target_url: str, *,
                progress: Callable[[TableCopied], None] | None = None) -> list[TableCopied]:
    """Copy every row of the ledger at `source_url` into the (empty) ledger at `target_url`.

    The target's schema is created or upgraded first. Returns one TableCopied per table, in the
    order copied. Raises SchemaBehind when the source is not at this version's schema (run
    `archiver db upgrade` on it first), TargetNotEmpty when the target already holds rows (a copy
    never merges two ledgers), LedgerError when the row counts differ afterwards.
    """
    source, target = create_ledger_engine(source_url), create_ledger_engine(target_url)
    try:
        require_current_schema(source)
        upgrade(target)
        _require_empty(target)
        copied = []
        # One transaction on the target: a copy that fails half-way leaves it empty, so it can be retried.
        with source.connect() as read, target.begin() as write:
            for table in Base.metadata.sorted_tables:
                copied.append(_copy_table(read, write, table))
                if progress:
                    progress(copied[-1])
        _advance_sequences(target)
        _compare_counts(source, target)
        return copied
    finally:
        source.dispose()
        target.dispose()


def _where(engine: Engine) -> str:
    return mask_url(engine.url.render_as_string(hide_password=False))


def _require_empty(target: Engine) -> None:
    with target.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                raise TargetNotEmpty(f"the ledger at {_where(target)} already holds rows in {table.name!r}; "
                                     "copy into a new, empty database (a copy never merges two ledgers)")


def _copy_table(read: Connection, write: Connection, table: Table) -> TableCopied:
    rows = 0
    result = read.execution_options(stream_results=True).execute(
        select(table).order_by(*table.primary_key.columns))
    # SQLite hands back the ledger's UTC times without their zone; PostgreSQL would read a naive time
    # in its session's time zone, shifting every timestamp on a server not set to UTC.
    zoned = [c.name for c in table.columns if isinstance(c.type, DateTime) and c.type.timezone]
    for batch in result.mappings().partitions(BATCH_ROWS):
        values = [dict(row) for row in batch]
        for row in values:
            for name in zoned:
                if row[name] is not None and row[name].tzinfo is None:
                    row[name] = row[name].replace(tzinfo=UTC)
        write.execute(table.insert(), values)
        rows += len(batch)
    return TableCopied(table.name, rows)


def _advance_sequences(target: Engine) -> None:
    # Rows were inserted with their ids, so PostgreSQL's SERIAL sequences never moved: the next
    # insert would collide with id 1. SQLite takes max(rowid)+1 by itself.
    if target.dialect.name != "postgresql":
        return
    with target.begin() as conn:
        for table in Base.metadata.sorted_tables:
            for column in table.primary_key.columns:
                if not isinstance(column.type, Integer) or not column.autoincrement:
                    continue
                sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                        {"t": table.name, "c": column.name}).scalar()
                if sequence:
                    highest = f"COALESCE((SELECT max({column.name}) FROM {table.name}), 0)"
                    conn.execute(text(f"SELECT setval(:s, {highest} + 1, false)"), {"s": sequence})


def _compare_counts(source: Engine, target: Engine) -> None:
    with source.connect() as a, target.connect() as b:
        for table in Base.metadata.sorted_tables:
            left = a.execute(select(func.count()).select_from(table)).scalar_one()
            right = b.execute(select(func.count()).select_from(table)).scalar_one()
            if left != right:
                raise LedgerError(f"{table.name}: {left} rows at {_where(source)} but {right} at "
                                  f"{_where(target)} after the copy; the target is incomplete, drop it and copy again")
