"""Retention of every recording kind: a recording with a documented DELETE (room, participant, track,
composite) leaves VideoSDK through its own endpoint once EVERY one of its files is verified in every
destination (local disk and moto's S3); one unverified file, or a file VideoSDK lists that the ledger
lacks, keeps all of it. Merge, transcoding and transcript recordings are never deleted."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.cli import main
from archiver.copy.job import run_copy_job
from archiver.domain.recordings import RecordingKind
from archiver.ledger.models import Deletion
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from tests.http_source import HttpSource
from tests.reconcile_env import API_KEY, SECRET, SESSION, add_kind, cli, configure, copy_all
from tests.videosdk_stand_in import VideoSDKStandIn

pytestmark = pytest.mark.usefixtures("restore_root_logging")
DELETE_PATHS = {RecordingKind.ROOM: "/v2/recordings/", RecordingKind.PARTICIPANT: "/v2/recordings/participant/",
                RecordingKind.TRACK: "/v2/recordings/participant/track/",
                RecordingKind.COMPOSITE: "/v2/recordings/composite/"}


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=API_KEY, secret=SECRET) as stand_in:
        yield stand_in


def deletions(runtime: Runtime) -> list[tuple[int, str, str]]:
    with runtime.ledger.sessions() as db:
        return [(d.file_id, d.recording_id, d.outcome) for d in db.scalars(select(Deletion).order_by(Deletion.id))]


def prune(capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, dict[str, dict]]:
    code, decisions, _ = cli(capsys, "prune", "--json", "--yes", *options)
    return code, {d["recording_id"]: d for d in decisions}


def deletes(sdk: VideoSDKStandIn) -> list[str]:
    return [r.path for r in sdk.requests() if r.method == "DELETE"]


@pytest.mark.parametrize("kind", list(RecordingKind))
def test_a_recording_is_deleted_through_its_kinds_endpoint_once_every_file_is_verified(
        kind: RecordingKind, tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, source: HttpSource,
        moto_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = configure(tmp_path, database_url, sdk, monkeypatch, moto_url=moto_url, retention=True)
    room = f"room-{secrets.token_hex(3)}"
    rid, files = add_kind(sdk, source, kind, room, files=3)
    assert cli(capsys, "reconcile", "--json")[0] == 1
    runtime = copy_all(config, room)
    assert cli(capsys, "verify", "--json")[0] == 0

    code, plan = prune(capsys, "--dry-run")
    code, done = prune(capsys)
    assert code == 0
    if kind not in DELETE_PATHS:  # no documented DELETE: never considered
        assert plan == done == {} and deletes(sdk) == [] and sdk.recording_ids(room, str(kind)) == [rid]
        return
    assert (plan[rid]["action"], plan[rid]["kind"], plan[rid]["files"]) == ("delete", str(kind), len(files))
    assert done[rid]["action"] == "deleted" and deletes(sdk) == [DELETE_PATHS[kind] + rid]
    assert sdk.recording_ids(room, str(kind)) == []
    file_ids = sorted(f.file_id for f in runtime.ledger.files(meeting_id=room))
    assert sorted(deletions(runtime)) == [(file_id, rid, "deleted") for file_id in file_ids]
    assert prune(capsys) == (0, {})  # every file of it is marked: never considered again


def test_a_track_recording_with_one_unverified_file_keeps_all_of_them(
        tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, source: HttpSource, moto_url: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = configure(tmp_path, database_url, sdk, monkeypatch, moto_url=moto_url, retention=True)
    room = f"room-{secrets.token_hex(3)}"
    rid, files = add_kind(sdk, source, RecordingKind.TRACK, room, files=3)
    assert cli(capsys, "reconcile", "--json")[0] == 1
    runtime = Runtime.create(load_settings(config))
    late = files[1].name  # copied only after `verify` ran: its copies are not verified
    for job in runtime.ledger.jobs(meeting_id=room):
        if not job.file_path.endswith(late):
            assert run_copy_job(runtime, job.job_id).state == "succeeded"
    assert main(["verify"]) == 0
    copy_all(config, room)

    code, done = prune(capsys)
    assert code == 0 and done[rid]["action"] == "keep" and done[rid]["files"] == 3
    assert done[rid]["reason"] == f"{late}: disk: copy not verified (run `archiver verify`)"
    assert deletes(sdk) == [] and sdk.recording_ids(room, "track") == [rid] and deletions(runtime) == []

    assert main(["verify"]) == 0
    code, plan = prune(capsys, "--dry-run")
    assert (plan[rid]["action"], plan[rid]["reason"]) == ("delete", "all 3 files verified in disk, s3")
    code, done = prune(capsys)
    assert (code, done[rid]["action"], len(deletions(runtime))) == (0, "deleted", 3)


def test_a_file_videosdk_lists_that_the_ledger_lacks_keeps_the_recording(
        tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, source: HttpSource, moto_url: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = configure(tmp_path, database_url, sdk, monkeypatch, moto_url=moto_url, retention=True)
    room = f"room-{secrets.token_hex(3)}"
    rid, _ = add_kind(sdk, source, RecordingKind.TRACK, room, files=2)
    assert cli(capsys, "reconcile", "--json")[0] == 1
    copy_all(config, room)
    assert main(["verify"]) == 0
    # the participant unmuted again after that reconcile: VideoSDK's recording has a third file now
    name = f"unmuted-{secrets.token_hex(3)}.webm"
    entry = {"_id": secrets.token_hex(12), "filePath": f"individual-recordings/{SESSION}/p-1/audio/{name}",
             "fileUrl": source.file_url(name, size=9_000), "size": 9_000}
    sdk.catalog.items["track"][rid]["files"].append(entry)

    code, plan = prune(capsys, "--dry-run")  # the ledger alone cannot know
    assert plan[rid]["action"] == "delete"
    code, done = prune(capsys)
    assert code == 0 and done[rid]["action"] == "keep"
    assert done[rid]["reason"] == (f"VideoSDK lists 1 file(s) of this recording the ledger has no verified copy of "
                                   f"({name}); run `archiver reconcile`")
    assert deletes(sdk) == []

    code, report, _ = cli(capsys, "reconcile", "--json")
    assert (code, report["files_new"], report["kinds"]["track"]["already_archived"]) == (1, 1, 2)
    copy_all(config, room)
    assert main(["verify"]) == 0
    code, done = prune(capsys)
    assert done[rid]["action"] == "deleted" and done[rid]["files"] == 3
    assert json.loads(json.dumps(done[rid]))["kind"] == "track"
