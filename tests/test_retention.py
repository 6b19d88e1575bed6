"""`archiver prune`: recordings leave VideoSDK only after every copy verified; migration 0002."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archiver.cli import main
from archiver.copy.job import run_copy_job
from archiver.domain.recordings import RecordingKind
from archiver.ledger.models import Deletion
from archiver.maintenance.reconcile import reconcile
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from archiver.videosdk.api import VideoSDKClient
from tests.http_source import HttpSource
from tests.videosdk_stand_in import VideoSDKStandIn

API_KEY, SECRET = "ret-api-key", "ret-secret-0123456789abcdef0123456789"
SIZE = 200_000
DESTINATIONS = {"a": 'url = "file://{root}/a/{{meetingId}}/"', "b": 'url = "file://{root}/b/{{meetingId}}/"'}


pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[VideoSDKStandIn]:
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", SECRET)
    with VideoSDKStandIn(api_key=API_KEY, secret=SECRET) as stand_in:
        yield stand_in


def configure(tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, monkeypatch: pytest.MonkeyPatch, *,
              destinations: tuple[str, ...] = ("a", "b"), retention: str | None = "after-verified") -> Path:
    tables = "\n".join(f'[[destinations]]\nname = "{n}"\n{DESTINATIONS[n].format(root=tmp_path)}\n'
                       for n in destinations)
    config = tmp_path / "archiver.toml"
    config.write_text(f"""
database_url = "{database_url}"
broker_url = "sqla+sqlite:///{tmp_path}/broker.db"
{f'[retention]{chr(10)}delete_from_videosdk = "{retention}"' if retention else ""}

[videosdk]
api_base = "{sdk.api_base}"
api_key = "{API_KEY}"

[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
not_found_grace_minutes = 0

{tables}
""")
    monkeypatch.setenv("ARCHIVER_CONFIG", str(config))
    return config


def sync(config: Path, sdk: VideoSDKStandIn, room: str) -> Runtime:
    """Reconcile the room (no broker: the created jobs are just collected) and return a runtime."""
    runtime = Runtime.create(load_settings(config))
    with VideoSDKClient(sdk.api_base, api_key=API_KEY, secret=SECRET) as client:
        reconcile(runtime.ledger, runtime.settings, client, [].extend, since=datetime.now(UTC), rooms=[room])
    return runtime


def copy(runtime: Runtime, room: str, *recording_ids: str) -> None:
    for job in runtime.ledger.jobs(meeting_id=room):
        if job.recording_id in recording_ids:
            run_copy_job(runtime, job.job_id)


def prune(capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, dict[str, dict[str, Any]]]:
    capsys.readouterr()
    code = main(["prune", "--json", "--yes", *options])  # --yes: no terminal to confirm on
    return code, {d["recording_id"]: d for d in json.loads(capsys.readouterr().out)}


def deletions(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.ledger.sessions() as db:
        return [(d.recording_id, d.outcome) for d in db.scalars(select(Deletion).order_by(Deletion.id))]


def test_only_recordings_whose_every_copy_verified_are_deleted(
        tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, source: HttpSource,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = configure(tmp_path, database_url, sdk, monkeypatch)
    room = f"room-{secrets.token_hex(3)}"

    def add(name: str, *, size: int = SIZE, **faults: object) -> str:
        url = source.file_url(f"{room}-{name}.mp4", size=SIZE, **faults)
        return sdk.add_recording(room, session_id="s1", file_url=url, size=size)

    good, gone, pending, unverified, tampered = (add(n) for n in ("good", "gone", "pending", "unverified",
                                                                   "tampered"))
    failed = add("failed", status=404)  # the CDN has lost it: both copies fail
    # VideoSDK says one byte more than the CDN serves: the copy job refuses the download
    # (source_length_mismatch, retried) instead of archiving a length VideoSDK disagrees with
    sized, sized_unflagged = add("sized", size=SIZE + 1), add("sized-unflagged", size=SIZE + 1)
    runtime = sync(config, sdk, room)
    copy(runtime, room, good, gone, failed, tampered, sized)
    sync(config, sdk, room)
    copy(runtime, room, sized_unflagged)
    tampered_b = next(j.object_key for j in runtime.ledger.jobs(meeting_id=room)
                      if j.recording_id == tampered and j.destination == "b")
    (tmp_path / "b" / str(tampered_b)).write_bytes(b"not the recording")
    capsys.readouterr()
    assert main(["verify"]) == 1  # the tampered copy
    copy(runtime, room, unverified)  # succeeded after the verify ran

    code, plan = prune(capsys, "--dry-run")
    assert code == 0
    assert {rid for rid, d in plan.items() if d["action"] == "delete"} == {good, gone}
    reasons = {rid: d["reason"] for rid, d in plan.items() if d["action"] == "keep"}
    assert reasons[failed].endswith("copy failed")
    assert reasons[pending].endswith("copy pending")
    assert "not verified" in reasons[unverified]
    assert reasons[tampered] == "b: copy flagged verify_mismatch"
    assert reasons[sized] == reasons[sized_unflagged] == "a: copy pending"
    assert {j.error_code for j in runtime.ledger.jobs(meeting_id=room)
            if j.recording_id in (sized, sized_unflagged)} == {"source_length_mismatch"}
    assert len(sdk.recording_ids(room)) == 8 and deletions(runtime) == []  # a dry run deletes nothing
    assert not [r for r in sdk.requests() if r.method == "DELETE"]

    with VideoSDKClient(sdk.api_base, api_key=API_KEY, secret=SECRET) as client:
        client.delete_item(RecordingKind.ROOM, gone)  # someone deleted it in VideoSDK's dashboard meanwhile
    code, done = prune(capsys)
    assert code == 0
    assert (done[good]["action"], done[gone]["action"]) == ("deleted", "already_gone")
    assert {d["action"] for rid, d in done.items() if rid not in (good, gone)} == {"keep"}
    assert set(sdk.recording_ids(room)) == {failed, pending, unverified, tampered, sized, sized_unflagged}
    assert sorted(deletions(runtime)) == sorted([(good, "deleted"), (gone, "already_gone")])
    marked = {f.recording_id for f in runtime.ledger.files(meeting_id=room) if f.deleted_from_videosdk_at}
    assert marked == {good, gone}

    deletes = len([r for r in sdk.requests() if r.method == "DELETE"])
    code, again = prune(capsys)
    assert code == 0 and good not in again and gone not in again  # never considered again
    assert len([r for r in sdk.requests() if r.method == "DELETE"]) == deletes


def test_every_configured_destination_needs_a_copy_and_failures_are_recorded(
        tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, source: HttpSource,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = configure(tmp_path, database_url, sdk, monkeypatch, destinations=("a",))
    rid = sdk.add_recording("room-x", session_id="s1", file_url=source.file_url("room-x.mp4", size=SIZE), size=SIZE)
    runtime = sync(config, sdk, "room-x")
    copy(runtime, "room-x", rid)
    assert main(["verify"]) == 0
    configure(tmp_path, database_url, sdk, monkeypatch, destinations=("a", "b"))
    code, plan = prune(capsys, "--dry-run")
    assert (code, plan[rid]["action"], plan[rid]["reason"]) == (0, "keep", "b: no copy")

    configure(tmp_path, database_url, sdk, monkeypatch, destinations=("a",))
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", "not-the-secret-0123456789abcdef0123456789")
    code, done = prune(capsys)
    assert code == 1 and done[rid]["action"] == "failed" and "unauthorized" in done[rid]["reason"]
    assert deletions(runtime) == [(rid, "failed")] and sdk.recording_ids() == [rid]
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", SECRET)
    code, done = prune(capsys)
    assert (code, done[rid]["action"], sdk.recording_ids()) == (0, "deleted", [])
    assert deletions(runtime) == [(rid, "failed"), (rid, "deleted")]


def test_retention_is_off_unless_enabled(tmp_path: Path, database_url: str, sdk: VideoSDKStandIn,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import celeryconfig

    configure(tmp_path, database_url, sdk, monkeypatch, retention=None)
    assert main(["prune", "--yes"]) == 2
    assert 'delete_from_videosdk = "after-verified"' in capsys.readouterr().err
    assert main(["prune", "--dry-run"]) == 0  # a preview works while retention is off (issue 13 item 14)
    assert "retention is off" in capsys.readouterr().out
    assert "prune-videosdk" not in celeryconfig.build(load_settings())["beat_schedule"]
    import archiver.worker.tasks

    monkeypatch.setattr("archiver.runtime._RUNTIME", None)
    assert archiver.worker.tasks.prune_task.apply().get() == {}

    configure(tmp_path, database_url, sdk, monkeypatch, retention="always")
    assert main(["config", "validate"]) == 2
    assert "retention.delete_from_videosdk: must be one of 'off', 'after-verified', got 'always'" in \
        capsys.readouterr().err
    configure(tmp_path, database_url, sdk, monkeypatch)
    schedule = celeryconfig.build(load_settings())
    assert schedule["beat_schedule"]["prune-videosdk"] == {"task": "archiver.prune", "schedule": 3600.0}
    assert schedule["task_routes"]["archiver.prune"]["queue"] == "maintenance"
    assert not [r for r in sdk.requests() if r.method == "DELETE"]
