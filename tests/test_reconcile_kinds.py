"""Every recording kind, announced by no webhook, in a room no webhook ever named: found by reconcile
through GET /v2/rooms, archived to local disk and moto's S3 with the bytes the CDN serves, and left
alone by the next run. Also: one file named by two path forms gets one copy per destination."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from archiver.domain.recordings import RecordingKind
from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine
from archiver.ledger.store import Ledger
from archiver.settings.config import load_settings
from tests import http_source
from tests.backends import s3_options
from tests.http_source import HttpSource
from tests.reconcile_env import API_KEY, SECRET, SESSION, add_kind, cli, configure, copy_all
from tests.videosdk_stand_in import VideoSDKStandIn

pytestmark = pytest.mark.usefixtures("restore_root_logging")
SHAPES = ["pageInfo", "totalPages", "pagination", "cursor"]


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=API_KEY, secret=SECRET) as stand_in:
        yield stand_in


def s3_objects(config: Path) -> dict[str, str]:
    """key -> sha256 hex of every object in the config's S3 destination."""
    dest = load_settings(config).destination("s3")
    bucket = dest.provider_url.removeprefix("s3://")
    options = s3_options(dest.options["endpoint_url"])
    client = boto3.client("s3", endpoint_url=options["endpoint_url"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="moto-secret-key")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: hashlib.sha256(client.get_object(Bucket=bucket, Key=k)["Body"].read()).hexdigest() for k in keys}


@pytest.mark.parametrize("kind", list(RecordingKind))
def test_a_recording_no_webhook_announced_in_a_room_no_webhook_named_is_archived(
        kind: RecordingKind, tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, source: HttpSource,
        moto_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    index = list(RecordingKind).index(kind)
    # each kind's list answers in another paging shape; the room list is paged by number or by cursor
    sdk.catalog.page_shapes[str(kind)] = SHAPES[index % 4]
    sdk.catalog.page_shapes["rooms"] = "cursor" if index % 2 else "pageInfo"
    room = f"silent-{kind}-{secrets.token_hex(3)}"
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    rid, files = add_kind(sdk, source, kind, room, files=3, created=an_hour_ago)
    for n in range(21):  # newer rooms first: the silent room is on the room list's second page
        sdk.add_room(f"busy-{n}")
    config = configure(tmp_path, database_url, sdk, monkeypatch, moto_url=moto_url)

    code, report, _ = cli(capsys, "reconcile", "--json")
    assert code == 1 and report["error"] is None and report["failed"] == 0
    counts = report["kinds"][str(kind)]
    assert (counts["recordings"], counts["listed"], counts["already_archived"], counts["newly_queued"],
            counts["jobs_created"]) == (1, len(files), 0, len(files), 2 * len(files))
    [silent] = [r for r in report["rooms"] if r["room"] == room]
    assert silent["found_by"] == ["rooms-api"] and silent["new"] == [f"{kind}:{rid}"]
    assert report["discovery"]["pages"] == 2 and report["rooms_discovered"] == 22
    assert len(sdk.requests("/rooms")) == 2

    runtime = copy_all(config, room)
    jobs = runtime.ledger.jobs(meeting_id=room)
    assert {(j.state, j.recording_kind, j.recording_id) for j in jobs} == {("succeeded", str(kind), rid)}
    expected = sorted(http_source.sha256(f.name, f.size) for f in files)
    on_disk = sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in (tmp_path / "disk" / room).rglob("*") if p.is_file())
    assert on_disk == expected
    assert sorted(s3_objects(config).values()) == expected
    if kind is not RecordingKind.TRANSCRIPT:  # a transcript's files are URLs only: VideoSDK gives no size
        assert all(j.size == next(f.size for f in files if j.file_path.endswith(f.name)) for j in jobs)

    code, again, _ = cli(capsys, "reconcile", "--json")  # nothing new: nothing written, exit 0
    assert code == 0, again
    counts = again["kinds"][str(kind)]
    assert (counts["listed"], counts["already_archived"], counts["newly_queued"]) == (len(files), len(files), 0)
    [silent] = [r for r in again["rooms"] if r["room"] == room]
    assert silent["found_by"] == ["ledger", "rooms-api"]


@pytest.mark.parametrize(("kind", "webhook_path", "api_path"), [
    (RecordingKind.ROOM, "/encoded/videos/{id}.mp4", "uploads/videos/{id}.mp4"),
    (RecordingKind.TRACK, "encoded/videos/{id}.webm", "individual-recordings/{session}/p-1/audio/{id}.webm"),
])
def test_one_file_under_two_path_forms_gets_one_copy_per_destination(
        kind: RecordingKind, webhook_path: str, api_path: str, tmp_path: Path, database_url: str,
        sdk: VideoSDKStandIn, source: HttpSource, moto_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = configure(tmp_path, database_url, sdk, monkeypatch, moto_url=moto_url)
    room, file_id, size = f"room-{secrets.token_hex(3)}", secrets.token_hex(12), 120_000
    url = source.file_url(f"{file_id}.mp4", size=size)
    data: dict[str, object] = {"meetingId": room, "sessionId": SESSION}
    if kind is RecordingKind.ROOM:
        webhook = "recording-stopped"
        data |= {"filePath": webhook_path.format(id=file_id), "fileUrl": url}
        rid = sdk.add_recording(room, session_id=SESSION, file_path=api_path.format(id=file_id), file_url=url,
                                size=size)
    else:
        webhook = "participant-track-recording-stopped"
        data |= {"participantId": "p-1", "kind": "audio",
                 "fileDetails": [{"filePath": webhook_path.format(id=file_id), "fileUrl": url}]}
        rid = sdk.add_participant_recording(room, session_id=SESSION, participant_id="p-1", track="audio",
                                            files=[(api_path.format(id=file_id, session=SESSION), url, size)])
    settings = load_settings(config)
    ledger = Ledger(create_ledger_engine(settings.database_url))
    accept_event(ledger, settings, json.dumps({"webhookType": webhook, "data": data}), verified=True)
    before = {j.job_id for j in ledger.jobs(meeting_id=room)}
    assert len(before) == 2

    code, report, _ = cli(capsys, "reconcile", "--room", room, "--json")
    counts = report["kinds"][str(kind)]
    # nothing new to archive (exit 0), but the size and ids the webhook lacked are learned
    assert (code, counts["listed"], counts["already_archived"], counts["newly_queued"], report["files_new"]) == (
        0, 1, 1, 0, 0)
    [file] = ledger.files(meeting_id=room)
    assert (file.recording_id, file.size, file.videosdk_file_id) == (rid, size, file_id)
    assert file.file_path == webhook_path.format(id=file_id).lstrip("/")  # the row keeps the form first seen
    assert {j.job_id for j in ledger.jobs(meeting_id=room)} == before

    copy_all(config, room)
    assert len([p for p in (tmp_path / "disk").rglob("*") if p.is_file()]) == 1
    assert list(s3_objects(config).values()) == [http_source.sha256(f"{file_id}.mp4", size)]
