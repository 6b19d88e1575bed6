"""Moving a SQLite ledger to PostgreSQL (`archiver db copy`): every row, ids kept, new rows after it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from archiver.ledger.database import SchemaBehind, create_ledger_engine, upgrade
from archiver.ledger.models import CopyJob, Event, FileRow, JobAttempt
from archiver.ledger.store import Ledger
from archiver.ledger.transfer import TargetNotEmpty, copy_ledger
from tests import emulators
from tests.test_ledger import accept

POSTGRES = emulators.POSTGRES_SERVER


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with emulators.postgres_database(POSTGRES) as url:
        yield url


@pytest.fixture
def sqlite_ledger(tmp_path) -> tuple[str, Ledger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = create_ledger_engine(url)
    upgrade(engine)
    ledger = Ledger(engine)
    first = accept(ledger, "k1").created[0]
    ledger.claim(first, "w1", timedelta(seconds=30))
    ledger.succeed(first, "w1", size=5, sha256="0" * 64, etag="e")
    accept(ledger, "k2", destinations=("c",))
    return url, ledger


def rows(ledger: Ledger, model: type) -> list[tuple]:
    """Every row; times as UTC instants (SQLite returns them without their zone)."""
    def instant(value: object) -> object:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value
    with ledger.sessions() as db:
        table = model.__table__
        return [tuple(instant(v) for v in r) for r in db.execute(select(*table.columns).order_by(*table.primary_key))]


def test_every_row_moves_with_its_id_and_new_rows_follow(sqlite_ledger, postgres_url: str) -> None:
    url, old = sqlite_ledger
    copied = copy_ledger(url, postgres_url)
    assert {c.table: c.rows for c in copied}["copy_jobs"] == 3
    new = Ledger(create_ledger_engine(postgres_url))
    for model in (Event, FileRow, CopyJob, JobAttempt):
        assert rows(new, model) == rows(old, model), model.__tablename__
    # The sequences moved past the copied ids: the next event gets new ids instead of colliding.
    created = accept(new, "k3", destinations=("d",)).created
    assert created and created[0] > max(r[0] for r in rows(old, CopyJob))


def test_a_target_that_holds_rows_is_refused_and_left_alone(sqlite_ledger, postgres_url: str) -> None:
    url, _ = sqlite_ledger
    copy_ledger(url, postgres_url)
    with pytest.raises(TargetNotEmpty, match=r"already holds rows in 'events'.*new, empty database"):
        copy_ledger(url, postgres_url)
    with Ledger(create_ledger_engine(postgres_url)).sessions() as db:
        assert db.scalar(select(func.count()).select_from(Event)) == 2


def test_a_source_behind_this_version_is_refused_with_the_fix(tmp_path, postgres_url: str) -> None:
    empty = f"sqlite:///{tmp_path / 'old.db'}"
    with pytest.raises(SchemaBehind, match="archiver db upgrade"):
        copy_ledger(empty, postgres_url)


def test_the_cli_copies_the_configured_ledger_and_refuses_a_second_time(sqlite_ledger, postgres_url: str,
                                                                        tmp_path) -> None:
    import subprocess
    import sys

    url, _ = sqlite_ledger
    config = tmp_path / "archiver.toml"
    config.write_text(f'database_url = "{url}"\n')
    archiver = [sys.executable, "-m", "archiver.cli", "--config", str(config), "db", "copy", "--to", postgres_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    first = subprocess.run(archiver, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    assert "copy_jobs: 3 rows" in first.stdout and "now set database_url (ARCHIVER_DATABASE_URL)" in first.stdout
    second = subprocess.run(archiver, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 2
    assert "already holds rows" in second.stderr and len(second.stderr.strip().splitlines()) == 1
