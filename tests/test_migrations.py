"""The ledger's migrations on SQLite and PostgreSQL: each upgrades existing rows, downgrades cleanly,
and the newest schema is exactly what the models declare."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from archiver.ledger.database import _alembic_config, create_ledger_engine, head_revision
from archiver.ledger.models import Base
from archiver.ledger.store import Ledger

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def test_every_migration_upgrades_downgrades_and_matches_the_models(database_url: str) -> None:
    engine = create_ledger_engine(database_url)
    config = _alembic_config(engine)
    command.downgrade(config, "0001")
    assert "deletions" not in inspect(engine).get_table_names()
    assert "notification_outbox" not in inspect(engine).get_table_names()
    assert "deleted_from_videosdk_at" not in columns(engine, "recording_files")
    command.upgrade(config, "head")
    assert "notification_outbox" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision() == "0005"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []  # autogenerate: no diff
    engine.dispose()


def _insert(engine: Engine, webhook_type: str, body: dict | str, files: list[tuple[str, str, str, str | None]]) -> None:
    with engine.begin() as conn:
        event_id = conn.execute(text(
            "INSERT INTO events (dedupe_key, webhook_type, meeting_id, session_id, received_at, signature_verified, "
            "source, body) VALUES (:k, :t, 'room', 's1', :now, true, 'webhook', :body) RETURNING id"),
            {"k": f"k-{webhook_type}-{len(files)}-{id(body)}", "t": webhook_type, "now": NOW,
             "body": body if isinstance(body, str) else json.dumps(body)}).scalar()
        for participant, kind, path, recording_id in files:
            conn.execute(text(
                "INSERT INTO recording_files (meeting_id, session_id, participant_id, kind, file_path, source_url, "
                "webhook_type, recording_id, event_id, received_at) VALUES ('room', 's1', :p, :k, :path, "
                ":url, :t, :r, :e, :now)"),
                {"p": participant, "k": kind, "path": path, "url": f"https://cdn.videosdk.live/{path}",
                 "t": webhook_type, "r": recording_id, "e": event_id, "now": NOW})


def test_0003_names_existing_files_by_kind_and_makes_every_merge_lookup_durable(database_url: str) -> None:
    engine = create_ledger_engine(database_url)
    config = _alembic_config(engine)
    command.downgrade(config, "0002")
    _insert(engine, "recording-stopped", {}, [("", "", "encoded/videos/r1.mp4", None)])
    _insert(engine, "participant-recording-stopped", {}, [("p1", "", "encoded/videos/p1.webm", None)])
    _insert(engine, "participant-track-recording-stopped", {}, [("p1", "audio", "encoded/audios/t1.webm", None)])
    # one merge whose lookup ran (its file is recorded), one whose lookup message was lost
    _insert(engine, "merge-recording-completed", {"webhookType": "merge-recording-completed",
                                                  "data": {"id": "merge-done", "meetingId": "room", "sessionId": "s1"}},
            [])
    _insert(engine, "merge-recording-completed", {"mergeId": "merge-done", "files": []},
            [("", "merged", "merged/m1.mp3", "merge-done")])
    _insert(engine, "merge-recording-completed", {"webhookType": "merge-recording-completed",
                                                  "data": {"id": "merge-lost", "meetingId": "room", "sessionId": "s1"}},
            [])
    command.upgrade(config, "head")
    ledger = Ledger(engine)
    kinds = {f.file_name: f.recording_kind for f in ledger.files(meeting_id="room")}
    assert kinds == {"r1.mp4": "room", "p1.webm": "participant", "t1.webm": "track", "m1.mp3": "merge"}
    assert {(lk.resource_id, lk.state) for lk in ledger.lookups.list()} == {("merge-done", "done"),
                                                                            ("merge-lost", "pending")}
    command.downgrade(config, "0002")
    assert "lookups" not in inspect(engine).get_table_names() and "file_name" not in columns(engine, "recording_files")
    command.upgrade(config, "head")
    engine.dispose()


CHECK_AT_START = """
import sys
from archiver.cli import main  # a normal start: every verb registered
from archiver.ledger.database import SchemaBehind, create_ledger_engine, require_current_schema

for url in sys.argv[1:]:
    try:
        require_current_schema(create_ledger_engine(url))
        print("current")
    except SchemaBehind as exc:
        print(str(exc).split(" ", 4)[4])  # after "the ledger at URL"
print("alembic imported" if "alembic" in sys.modules else "alembic not imported")
"""


def test_the_schema_check_at_start_names_an_older_a_newer_or_no_revision_without_alembic(
        database_url: str, tmp_path) -> None:
    # A process start checks the schema without importing Alembic (its import costs ~0.1 s of CPU per
    # process): the revision is read with plain SQL, the head from the migration files.
    import subprocess
    import sys

    from tests.emulators import ROOT

    engine = create_ledger_engine(database_url)
    command.downgrade(_alembic_config(engine), "0004")
    older = database_url
    newer = f"sqlite:///{tmp_path}/newer.db"
    newer_engine = create_ledger_engine(newer)
    command.upgrade(_alembic_config(newer_engine), "head")
    with newer_engine.begin() as conn:  # as a newer archiver would have left it
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    current = f"sqlite:///{tmp_path}/current.db"
    command.upgrade(_alembic_config(create_ledger_engine(current)), "head")
    empty = f"sqlite:///{tmp_path}/empty.db"
    out = subprocess.run([sys.executable, "-c", CHECK_AT_START, older, newer, current, empty], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert out == ["is at revision 0004; this version needs 0005: run `archiver db upgrade`",
                   "is at revision 0099; this version needs 0005: run `archiver db upgrade`",
                   "current",
                   "is empty; this version needs 0005: run `archiver db upgrade`",
                   "alembic not imported"]
    command.upgrade(_alembic_config(engine), "head")
    engine.dispose()
