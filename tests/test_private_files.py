"""The ledger, the embedded broker and their folder are private to their owner: they hold webhook
bodies with signed source URLs. Checked with the usual umask 022, under which SQLite alone makes 0644."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from archiver.settings.config import Settings


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_ledger_and_its_journal_files_are_owner_only(tmp_path: Path) -> None:
    from archiver.ledger.database import create_ledger_engine, upgrade

    engine = create_ledger_engine(f"sqlite:///{tmp_path}/state/.archiver/ledger.db")
    upgrade(engine)
    with engine.connect() as conn:  # WAL mode: -wal and -shm exist while a connection is open
        conn.execute(text("SELECT count(*) FROM events"))
        files = sorted((tmp_path / "state" / ".archiver").iterdir())
        assert [f.name for f in files] == ["ledger.db", "ledger.db-shm", "ledger.db-wal"]
        assert {f.name: mode(f) for f in files} == dict.fromkeys((f.name for f in files), 0o600)
    assert mode(tmp_path / "state" / ".archiver") == 0o700
    assert mode(tmp_path / "state") == 0o700  # every folder it had to create


def test_an_existing_ledger_made_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    from archiver.ledger.database import create_ledger_engine, upgrade

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    old = shared / "ledger.db"
    old.touch(mode=0o644)
    (shared / "ledger.db-wal").touch(mode=0o644)
    upgrade(create_ledger_engine(f"sqlite:///{old}"))
    assert mode(old) == 0o600 and mode(shared / "ledger.db-wal") == 0o600
    assert mode(shared) == 0o755  # an existing folder is left as it is (it may be shared on purpose)


def test_the_embedded_broker_file_is_owner_only(tmp_path: Path) -> None:
    from archiver.worker.app import Publisher, create_app

    broker = tmp_path / ".archiver" / "broker.db"
    app = create_app(Settings(broker_url=f"sqla+sqlite:///{broker}"))
    Publisher(app).event('{"webhookType": "session-started", "data": {}}')  # kombu creates its tables
    assert mode(broker) == 0o600 and mode(broker.parent) == 0o700
    assert broker.stat().st_size > 0
