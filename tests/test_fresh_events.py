"""The receiver's three-statement path (archiver.ledger.fresh) writes exactly the rows Ledger.accept writes,
and leaves every case it does not cover (duplicates, files recorded before, key collisions, held or
failed jobs, lookups) to Ledger.accept: the same webhooks, in order, through both, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.fresh import FreshEvents
from archiver.ledger.models import CopyJob, Event, FileRow
from archiver.ledger.records import Accepted
from archiver.ledger.store import Ledger
from archiver.settings.config import load_settings
from tests import emulators

SAMPLES = Path(__file__).resolve().parent / "samples" / "webhooks"
RECEIVED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class CountingFresh(FreshEvents):
    """FreshEvents that remembers which calls it recorded and which it left to Ledger.accept."""

    outcomes: list[bool]

    def record(self, **kwargs: Any) -> Accepted | None:
        recorded = super().record(**kwargs)
        self.outcomes.append(recorded is not None)
        return recorded


def stopped(meeting: str, session: str = "s1", name: str = "x.mp4", **extra: object) -> str:
    return json.dumps({"webhookType": "recording-stopped", **extra,
                       "data": {"meetingId": meeting, "sessionId": session, "filePath": f"/encoded/videos/{name}",
                                "fileUrl": f"https://cdn.videosdk.live/encoded/videos/{name}"}})


def webhooks() -> list[tuple[str, bool]]:
    """(body, whether the fresh path records it), in the order they arrive."""
    participant = json.loads((SAMPLES / "participant-recording-stopped.json").read_text())
    first = participant["data"]["fileDetails"][0]
    second = {**first, "filePath": first["filePath"].replace(".", "-2.", 1),
              "fileUrl": first["fileUrl"].replace(".", "-2.", 1)}
    participant["data"]["fileDetails"].append(second)
    return [
        (stopped("m1"), True),
        (json.dumps(participant), True),  # several files, one event
        ((SAMPLES / "participant-track-recording-stopped.json").read_text(), True),
        (stopped("m1"), False),  # a duplicate delivery
        (stopped("m1", extra="redelivered"), False),  # another event naming a file recorded before
        (stopped("m1", session="s2"), False),  # a new file whose key ({meetingId}/name) another job holds
        (stopped("m2", name="rec.mp4.json"), True),
        (stopped("m2", name="rec.mp4"), False),  # its manifest key rec.mp4.json is that file's key
        (stopped("m3", name="held.mp4").replace('"https://cdn.videosdk.live/encoded/videos/held.mp4"', "null"),
         False),  # in the customer's storage: held
        ((SAMPLES / "merge-recording-completed.json").read_text(), False),  # a lookup
    ]


def rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """What a user sees of the ledger: every column but ids and the times a row was written."""
    skip = {"id", "event_id", "file_id", "created_at", "updated_at", "finished_at", "received_at"}
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in (Event.__table__, FileRow.__table__, CopyJob.__table__):
            columns = [c for c in table.c if c.name not in skip]
            found[table.name] = [tuple(r) for r in conn.execute(select(*columns).order_by(table.c.id))]
    return found


def ledger_at(url: str) -> Ledger:
    engine = create_ledger_engine(url)
    upgrade(engine)
    return Ledger(engine)


@pytest.mark.parametrize("destinations", [1, 2])  # PostgreSQL: one job per file is one statement (CTEs)
def test_the_fresh_path_writes_what_the_general_path_writes(tmp_path: Path, database_url: str,
                                                            postgres_server_url: str | None, destinations: int) -> None:
    second = f"""
[[destinations]]
name = "second"
url = "file://{tmp_path}/second/{{meetingId}}/{{sessionId}}/"
"""
    (tmp_path / "archiver.toml").write_text(f"""
database_url = "{database_url}"
[[destinations]]
name = "local"
url = "file://{tmp_path}/archive/{{meetingId}}/"
manifest = true
{second if destinations == 2 else ""}""")
    settings = load_settings(tmp_path / "archiver.toml", environ={})
    if database_url.startswith("sqlite"):
        other_url = f"sqlite:///{tmp_path}/general.db"
        general = ledger_at(other_url)
        _compare(settings, Ledger(create_ledger_engine(database_url)), general)
    else:
        with emulators.postgres_database(postgres_server_url) as other_url:  # type: ignore[arg-type]
            general = ledger_at(other_url)
            try:
                _compare(settings, Ledger(create_ledger_engine(database_url)), general)
            finally:
                general.engine.dispose()


def _compare(settings: Any, fast: Ledger, general: Ledger) -> None:
    fresh = CountingFresh(fast.engine)
    fresh.outcomes = []
    for body, recorded_fresh in webhooks():
        before = len(fresh.outcomes)
        _, one = accept_event(fast, settings, body, verified=True, received_at=RECEIVED, fresh=fresh)
        _, two = accept_event(general, settings, body, verified=True, received_at=RECEIVED)
        assert (fresh.outcomes[before:] == [True]) is recorded_fresh, body
        assert (one.duplicate, len(one.file_ids), len(one.job_ids), len(one.created), len(one.lookups)) == \
            (two.duplicate, len(two.file_ids), len(two.job_ids), len(two.created), len(two.lookups)), body
    assert rows(fast.engine) == rows(general.engine)
    codes = {(j.state, j.error_code) for j in fast.jobs()}
    assert {("pending", None), ("failed", "key_collision"), ("held", "customer_storage")} <= codes
    fresh.close()
    fast.engine.dispose()


def test_a_held_postgresql_connection_the_server_dropped_costs_no_webhook(tmp_path: Path) -> None:
    """The fresh path keeps its connections (no pool pre-ping per webhook): one the server closed
    (a restart, an idle timeout) is replaced on the spot instead of answering that webhook 503."""
    from sqlalchemy import create_engine, make_url, text

    postgres_server_url = emulators.POSTGRES_SERVER

    with emulators.postgres_database(postgres_server_url) as url:
        (tmp_path / "archiver.toml").write_text(f'database_url = "{url}"\n[[destinations]]\nname = "local"\n'
                                                f'url = "file://{tmp_path}/archive/{{meetingId}}/"\n')
        settings = load_settings(tmp_path / "archiver.toml", environ={})
        ledger = ledger_at(url)
        fresh = FreshEvents(ledger.engine)
        _, first = accept_event(ledger, settings, stopped("held-1"), verified=True, fresh=fresh)
        admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # every session of the test database: the held one among them
            dropped = conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                                   {"db": make_url(url).database}).all()
        admin.dispose()
        assert len(dropped) >= 1
        _, second = accept_event(ledger, settings, stopped("held-2"), verified=True, fresh=fresh)
        assert not second.duplicate and len(second.created) == 1 and second.event_id == first.event_id + 1
        fresh.close()
        ledger.engine.dispose()
