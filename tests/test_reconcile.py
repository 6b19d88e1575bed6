"""`archiver reconcile` against the VideoSDK stand-in: pagination, files no webhook announced, files a
webhook did announce (with "/" in front of their path), rooms from every source, failing listings, odd
items, bad credentials, size mismatches, the table, metrics, the Celery task and its beat entry. Jobs
are published to a real Redis. Every kind end to end with copies: test_reconcile_kinds."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archiver.cli import main
from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine
from archiver.ledger.models import CopyJob, Event, FileRow
from archiver.ledger.store import Ledger
from archiver.settings.config import load_settings
from tests.videosdk_stand_in import VideoSDKStandIn

API_KEY, SECRET = "rec-api-key", "rec-secret-0123456789abcdef0123456789"
SESSION = "61d6e834e1326304a9e73d00"


def write_config(tmp_path: Path, database_url: str, api_base: str, *, broker_url: str | None = None,
                 extra: str = "") -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(f"""
database_url = "{database_url}"
broker_url = "{broker_url or f'sqla+sqlite:///{tmp_path}/broker.db'}"
{extra}
[videosdk]
api_base = "{api_base}"
api_key = "{API_KEY}"

[[destinations]]
name = "a"
url = "file://{tmp_path}/a/{{meetingId}}/{{sessionId}}/"

[[destinations]]
name = "b"
url = "file://{tmp_path}/b/{{yyyy}}/{{MM}}/{{filename}}"
events = ["recording-stopped"]  # reconciled room recordings count as what this webhook would announce
""")
    return path


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=API_KEY, secret=SECRET) as stand_in:
        yield stand_in


@pytest.fixture
def broker(redis_url: str) -> str:
    """A Redis database of its own, emptied, so the copies published here can be read back."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    return url


def published(broker_url: str) -> list[int]:
    """Job ids of the archiver.copy_file messages waiting on the archive queue."""
    import redis

    ids = []
    for raw in redis.Redis.from_url(broker_url).lrange("archive", 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "archiver.copy_file"
        ids.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return sorted(ids)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except ValueError:
        return code, out, err


def announce(config: Path, room: str, file_path: str) -> None:
    """What the receiver does with a recording-stopped webhook."""
    settings = load_settings(config, environ={})
    body = json.dumps({"webhookType": "recording-stopped", "data": {
        "meetingId": room, "sessionId": SESSION, "filePath": file_path,
        "fileUrl": f"https://cdn.videosdk.live/{file_path.lstrip('/')}"}})
    accept_event(Ledger(create_ledger_engine(settings.database_url)), settings, body, verified=True)


def snapshot(ledger: Ledger) -> list[tuple[Any, ...]]:
    """Every file row, column by column: equal before and after a run that should write nothing."""
    with ledger.sessions() as db:
        return [tuple(getattr(f, c.name) for c in FileRow.__table__.columns)
                for f in db.scalars(select(FileRow).order_by(FileRow.id))]


def count(ledger: Ledger, table: type) -> int:
    with ledger.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, sdk: VideoSDKStandIn,
        broker: str) -> dict[str, Any]:
    config = write_config(tmp_path, database_url, sdk.api_base, broker_url=broker)
    monkeypatch.setenv("ARCHIVER_CONFIG", str(config))
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", SECRET)
    return {"config": config, "ledger": Ledger(create_ledger_engine(database_url)), "sdk": sdk, "broker": broker}


def test_unannounced_recordings_get_jobs_and_announced_ones_are_only_enriched(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    sdk, ledger, room = env["sdk"], env["ledger"], f"room-{secrets.token_hex(3)}"
    ids = [sdk.add_recording(room, session_id=SESSION, created_at="2025-03-04T10:00:00.000Z", size=1000 + i)
           for i in range(44)]
    announced_id = sdk.add_recording(room, session_id=SESSION, file_path="encoded/videos/announced.mp4",
                                     size=777, created_at="2025-03-04T10:00:00.000Z")
    announce(env["config"], room, "/encoded/videos/announced.mp4")  # the webhook's form of the same path
    assert count(ledger, CopyJob) == 2
    sdk.add_room(room)  # our account's room list names it (a room only a webhook named is not asked about)

    code, report, _ = run(capsys, "reconcile", "--json")
    assert code == 1
    assert {k: report[k] for k in ("rooms_scanned", "recordings_seen", "files_new", "jobs_created", "mismatches",
                                   "rooms_failed", "failed")} == {
        "rooms_scanned": 1, "recordings_seen": 45, "files_new": 44, "jobs_created": 88, "mismatches": 0,
        "rooms_failed": 0, "failed": 0}
    room_counts = report["kinds"]["room"]
    assert (room_counts["listed"], room_counts["already_archived"], room_counts["newly_queued"]) == (45, 1, 44)
    assert {kind for kind, c in report["kinds"].items() if c["listed"]} == {"room"}  # every kind was listed
    assert sorted(report["rooms"][0]["new"]) == sorted(f"room:{i}" for i in ids)
    pages = [r.query["page"] for r in sdk.requests("/recordings")]
    assert pages == ["1", "2", "3"]

    files = {f.recording_id: f for f in ledger.files(meeting_id=room)}
    assert len(files) == 45
    announced = files[announced_id]
    assert (announced.file_path, announced.size, announced.webhook_type) == (
        "encoded/videos/announced.mp4", 777, "recording-stopped")  # same row (stored without "/"), enriched
    assert len(announced.copies) == 2
    first = files[ids[0]]
    assert (first.webhook_type, first.size, first.participant_id, first.kind) == ("recording-stopped", 1000, None, None)
    jobs = {j.destination: j for j in ledger.jobs(meeting_id=room) if j.recording_id == ids[0]}
    name = first.file_path.rsplit("/", 1)[1]
    # keys rendered from the templates like a webhook's, dated by the recording's createdAt
    assert jobs["a"].object_key == f"{room}/{SESSION}/{name}"
    assert jobs["b"].object_key == f"2025/03/{name}"
    created = sorted(j.job_id for j in ledger.jobs(meeting_id=room) if j.recording_id != announced_id)
    assert published(env["broker"]) == created

    events, rows = count(ledger, Event), snapshot(ledger)
    code, report, _ = run(capsys, "reconcile", "--json")
    assert code == 0 and (report["files_new"], report["jobs_created"], report["recordings_seen"]) == (0, 0, 45)
    assert report["kinds"]["room"]["already_archived"] == 45
    assert count(ledger, Event) == events and snapshot(ledger) == rows  # nothing rewritten
    assert published(env["broker"]) == created


def test_rooms_come_from_config_option_and_the_room_list_and_a_rate_limit_is_waited_out(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sdk = env["sdk"]
    sdk.add_recording("configured-room", session_id=SESSION)
    sdk.add_recording("cli-room", session_id=SESSION)
    sdk.add_recording("unnamed-room", session_id=SESSION)  # no webhook, no configuration: only /v2/rooms knows it
    monkeypatch.setenv("ARCHIVER_VIDEOSDK_ROOMS", "configured-room")
    sdk.fail_next(429, count=2, retry_after=0, path="/recordings")
    code, report, _ = run(capsys, "reconcile", "--room", "cli-room", "--no-room-list", "--kind", "room", "--json")
    assert code == 1 and report["discovery"] is None and list(report["kinds"]) == ["room"]
    assert [(r["room"], r["found_by"], r["recordings"], r["new_files"], r["error"]) for r in report["rooms"]] == [
        ("cli-room", ["option"], 1, 1, None), ("configured-room", ["config"], 1, 1, None)]
    assert len(sdk.requests("/recordings")) == 4  # two 429s, then one page per room
    assert sdk.requests("/rooms") == [] and sdk.requests("/recordings/participant") == []
    assert len(published(env["broker"])) == 4

    code, report, _ = run(capsys, "reconcile", "--room", "cli-room", "--json")
    assert code == 1 and report["rooms_discovered"] == 3
    assert [(r["room"], r["found_by"], r["new_files"]) for r in report["rooms"]] == [
        ("cli-room", ["ledger", "option", "rooms-api"], 0), ("configured-room", ["ledger", "config", "rooms-api"], 0),
        ("unnamed-room", ["rooms-api"], 1)]
    assert len(published(env["broker"])) == 6


def test_a_failing_listing_does_not_stop_the_others(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    sdk = env["sdk"]
    sdk.add_recording("room-b", session_id=SESSION)
    sdk.fail_next(404, path="/recordings")  # not retryable: room-a's room recordings (sorted first) fail at once
    sdk.fail_next(500, count=5, path="/ai/v1/post-transcriptions")  # retried, then given up: room-a's transcripts
    code, report, _ = run(capsys, "reconcile", "--room", "room-a", "--json")
    assert code == 1 and report["rooms_failed"] == 1 and report["failed"] == 2 and report["error"] is None
    room_a, room_b = report["rooms"]
    assert set(room_a["errors"]) == {"room", "transcript"}
    assert room_a["errors"]["room"].startswith("not_found: GET /v2/recordings: HTTP 404")
    assert "GET /ai/v1/post-transcriptions: HTTP 500 (gave up after 5 attempts)" in room_a["errors"]["transcript"]
    assert (room_b["room"], room_b["new_files"], room_b["errors"]) == ("room-b", 1, {})
    assert report["kinds"]["room"]["failed"] == 1 and report["kinds"]["transcript"]["failed"] == 1
    assert len(sdk.requests("/recordings/participant/track")) == 2  # room-a's other kinds went on


@pytest.mark.parametrize("secret", ["wrong-secret-9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c", None])
def test_bad_credentials_stop_the_run_with_one_error_and_without_the_secret(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        secret: str | None) -> None:
    if secret is None:
        monkeypatch.delenv("VIDEOSDK_SECRET_KEY")
    else:
        monkeypatch.setenv("VIDEOSDK_SECRET_KEY", secret)
    env["sdk"].add_recording("room-a", session_id=SESSION)
    code = main(["reconcile", "--room", "room-a", "--room", "room-b"])
    out, err = capsys.readouterr()
    code_name = "unauthorized" if secret else "missing_credentials"
    # Missing credentials are a configuration error: one line, exit 2, before any call (issue 13 item 7).
    assert code == (1 if secret else 2)
    assert err.count(code_name) == 1 and "api_key" in err and "VIDEOSDK_SECRET_KEY" in err
    if secret:
        assert f"stopped: {code_name}" in out
    else:
        assert out == "" and len(err.strip().splitlines()) == 1
    assert len(env["sdk"].requests()) == (1 if secret else 0)  # the room list's first page, then nothing
    for text in (out, err):
        assert (secret or SECRET) not in text and "eyJ" not in text  # neither the secret nor a token


def test_credentials_refused_in_the_middle_stop_the_run_at_once(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    sdk = env["sdk"]
    for room in ("room-a", "room-b", "room-c"):
        sdk.add_recording(room, session_id=SESSION)
    sdk.fail_next(403, path="/recordings/participant")  # room-a's second kind: e.g. the key was revoked
    code, report, err = run(capsys, "reconcile", "--json")
    assert code == 1 and report["error"].startswith("forbidden: GET /v2/recordings/participant: HTTP 403")
    assert err.count("forbidden") == 1
    assert [r.path for r in sdk.requests()][-2:] == ["/v2/recordings", "/v2/recordings/participant"]
    assert len(sdk.requests()) == 3  # the room list, room-a's rooms, room-a's participants: nothing more


def test_a_copy_whose_size_differs_from_videosdk_is_flagged(
        env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    sdk, ledger = env["sdk"], env["ledger"]
    sdk.add_recording("room-m", session_id=SESSION, file_path="encoded/videos/m.mp4", size=5000)
    announce(env["config"], "room-m", "/encoded/videos/m.mp4")
    from datetime import timedelta

    job_a, job_b = [j.job_id for j in ledger.jobs(meeting_id="room-m")]
    for job_id, size in ((job_a, 4096), (job_b, 5000)):
        assert ledger.claim(job_id, "test-worker", timedelta(seconds=30)) is not None
        assert ledger.succeed(job_id, "test-worker", size=size, sha256="0" * 64, etag=None)
    # b's source never proved its length (as the copy job flags it): VideoSDK's size now proves it
    ledger.flag_copy(job_b, "size_unproven", "5000 bytes copied, but the source's length was not proven")
    code, report, _ = run(capsys, "reconcile", "--room", "room-m", "--json")
    assert code == 1 and (report["mismatches"], report["files_new"], report["jobs_created"]) == (1, 0, 0)
    a, b = ledger.job(job_a), ledger.job(job_b)
    assert a is not None and b is not None
    assert (a.state, a.error_code) == ("succeeded", "size_mismatch")
    assert "4096" in (a.error_message or "") and "5000" in (a.error_message or "")
    assert (b.state, b.error_code) == ("succeeded", None)
    code, status, _ = run(capsys, "status", "--meeting", "room-m", "--json")
    assert [r["error"] for r in status if r["error"]] == [f"size_mismatch: {a.error_message}"]
    rows = snapshot(ledger)
    code, report, _ = run(capsys, "reconcile", "--room", "room-m", "--json")  # still reported, not rewritten
    assert code == 1 and report["mismatches"] == 1 and report["kinds"]["room"]["new_mismatches"] == 0
    assert snapshot(ledger) == rows and ledger.job(job_a) == a


def test_the_celery_task_uses_the_configured_window(
        env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import archiver.runtime
    import archiver.worker.tasks
    from archiver.worker.app import Publisher, create_app

    settings = load_settings(env["config"])
    monkeypatch.setattr(archiver.runtime, "_RUNTIME", None)  # built from this test's ARCHIVER_CONFIG
    monkeypatch.setattr(archiver.worker.tasks, "publisher", Publisher(create_app(settings)))
    env["sdk"].add_recording("room-t", session_id=SESSION)
    monkeypatch.setenv("ARCHIVER_VIDEOSDK_ROOMS", "room-t")
    summary = archiver.worker.tasks.reconcile_task.apply().get()
    assert (summary["rooms_scanned"], summary["files_new"], summary["jobs_created"]) == (1, 1, 2)
    assert len(published(env["broker"])) == 2


def test_beat_runs_reconcile_every_interval_on_the_maintenance_queue(tmp_path: Path) -> None:
    import celeryconfig

    default = celeryconfig.build(load_settings(environ={}))
    assert default["beat_schedule"]["reconcile-videosdk"] == {"task": "archiver.reconcile", "schedule": 900.0}
    assert default["task_routes"]["archiver.reconcile"]["queue"] == "maintenance"
    settings = load_settings(environ={"ARCHIVER_RECONCILE_INTERVAL_MINUTES": "5",
                                      "ARCHIVER_RECONCILE_WINDOW_HOURS": "6"})
    assert celeryconfig.build(settings)["beat_schedule"]["reconcile-videosdk"]["schedule"] == 300.0
    assert settings.reconcile.window_hours == 6
    off = load_settings(environ={"ARCHIVER_RECONCILE_INTERVAL_MINUTES": "0"})
    assert "reconcile-videosdk" not in celeryconfig.build(off)["beat_schedule"]
    (tmp_path / "bad.toml").write_text("[reconcile]\ninterval_minutes = -1\nwindow_hours = 0\nevery = 3\n")
    with pytest.raises(ValueError) as problem:
        load_settings(tmp_path / "bad.toml", environ={})
    assert {p.split(":")[0] for p in problem.value.problems} == {  # type: ignore[attr-defined]
        "reconcile.interval_minutes", "reconcile.window_hours", "reconcile.every"}
