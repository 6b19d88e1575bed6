"""Every recording kind announced by its webhook is archived: files the webhook names are copied at
once; a recording the webhook names only by id (merged audio, composite, transcript) is looked up
through the REST API first. Then reconcile, which lists the same recordings with the API's path form
(uploads/..., individual-recordings/...), finds nothing new: one file, one copy per destination."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.domain.recordings import RecordingKind
from archiver.intake.record import accept_event
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from archiver.videosdk.api import VideoSDKClient
from archiver.videosdk.lookup import run_lookup
from tests import http_source
from tests.http_source import HttpSource
from tests.reconcile_env import API_KEY, SECRET, SESSION, Served, add_kind, cli, configure, copy_all
from tests.test_reconcile_kinds import s3_objects
from tests.videosdk_stand_in import VideoSDKStandIn

pytestmark = pytest.mark.usefixtures("restore_root_logging")
ANNOUNCED = [RecordingKind.ROOM, RecordingKind.PARTICIPANT, RecordingKind.TRACK, RecordingKind.MERGE,
             RecordingKind.COMPOSITE, RecordingKind.TRANSCRIPT]  # transcodings have no webhook


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=API_KEY, secret=SECRET) as stand_in:
        yield stand_in


def webhook(kind: RecordingKind, room: str, rid: str, files: list[Served], cdn: HttpSource) -> dict[str, Any]:
    """The body VideoSDK POSTs for this recording: the webhook's path form ("/encoded/..."), not the API's."""
    base = {"meetingId": room, "sessionId": SESSION}
    details = [{"filePath": f"/encoded/videos/{f.name}", "fileUrl": cdn.file_url(f.name, size=f.size)}
               for f in files]
    if kind is RecordingKind.ROOM:
        return {"webhookType": "recording-stopped", "data": {**base, **details[0]}}
    if kind is RecordingKind.PARTICIPANT:
        return {"webhookType": "participant-recording-stopped",
                "data": {**base, "participantId": "p-1", "fileDetails": details}}
    if kind is RecordingKind.TRACK:
        return {"webhookType": "participant-track-recording-stopped",
                "data": {**base, "participantId": "p-1", "kind": "audio", "fileDetails": details}}
    if kind is RecordingKind.MERGE:
        return {"webhookType": "merge-recording-completed", "data": {**base, "id": rid}}
    if kind is RecordingKind.COMPOSITE:
        return {"webhookType": "composite-recording-stopped", "data": {**base, "id": rid}}
    return {"type": "transcription-stopped", "data": {**base, "id": rid, "type": "post"}}  # `type` envelope too


@pytest.mark.parametrize("kind", ANNOUNCED)
def test_a_recording_announced_by_its_webhook_is_archived_once(
        kind: RecordingKind, tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, source: HttpSource,
        moto_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    room = f"announced-{kind}-{secrets.token_hex(3)}"
    rid, files = add_kind(sdk, source, kind, room, files=2)
    config = configure(tmp_path, database_url, sdk, monkeypatch, moto_url=moto_url)
    runtime = Runtime.create(load_settings(config))
    lookups: list[int] = []
    body = json.dumps(webhook(kind, room, rid, files, source))
    event, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=True,
                                   publish_lookups=lookups.extend)
    assert event.archivable
    if event.lookup is not None:  # named only by id: nothing to copy until the API says what it is
        assert accepted.job_ids == () and len(lookups) == 1
        with VideoSDKClient(sdk.api_base, api_key=API_KEY, secret=SECRET) as client:
            assert run_lookup(runtime, lookups[0], client, None).state == "done"
    copy_all(config, room)
    jobs = runtime.ledger.jobs(meeting_id=room)
    assert {(j.state, j.recording_kind) for j in jobs} == {("succeeded", str(kind))}
    assert len(jobs) == 2 * len(files)  # every file x (disk, s3)
    expected = sorted(http_source.sha256(f.name, f.size) for f in files)
    on_disk = sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in (tmp_path / "disk" / room).rglob("*") if p.is_file())
    assert on_disk == expected and sorted(s3_objects(config).values()) == expected

    # Reconcile lists the same files under the API's path form: the same rows, nothing new to copy.
    _, report, _ = cli(capsys, "reconcile", "--room", room, "--kind", str(kind), "--no-room-list", "--json")
    counts = report["kinds"][str(kind)]
    assert (counts["listed"], counts["newly_queued"], counts["jobs_created"]) == (len(files), 0, 0), report
    assert len(runtime.ledger.jobs(meeting_id=room)) == len(jobs)
    if kind in (RecordingKind.ROOM, RecordingKind.PARTICIPANT, RecordingKind.TRACK):
        # the webhook's files now know the recording id (retention needs it) and VideoSDK's size
        assert {j.recording_id for j in runtime.ledger.jobs(meeting_id=room)} == {rid}
        assert all(j.size is not None for j in runtime.ledger.jobs(meeting_id=room))
