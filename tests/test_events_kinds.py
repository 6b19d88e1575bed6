"""Every recording event of the reference is understood: customer storage, encryption files, the `type`
envelope, and the events that name a recording only by id (merge, transcript, composite)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from archiver.domain.recordings import RecordingKind, Storage, is_customer_storage_url
from archiver.intake.events import Lookup, parse_event

ROOM = {"meetingId": "jvsg-8rjn-j304", "sessionId": "613731342f27f56e4fc4b6d0"}
CDN = "https://cdn.videosdk.live/encoded/videos/62d148951a1eb20029fc9b05.mp4"


def event(webhook_type: str, **data: Any) -> Any:
    return parse_event({"webhookType": webhook_type, "data": {**ROOM, **data}})


def test_a_null_file_url_is_a_file_in_the_customers_storage() -> None:
    stopped = event("recording-stopped", filePath="meeting-recordings/room/x.mp4", fileUrl=None)
    [file] = stopped.files
    assert stopped.archivable and file.file_url is None and file.storage is Storage.CUSTOMER
    assert file.recording_kind is RecordingKind.ROOM and file.filename == "x.mp4"
    participant = event("participant-recording-stopped", participantId="p1",
                        fileDetails=[{"filePath": "a/p1.webm", "fileUrl": None},
                                     {"filePath": "a/p2.webm", "fileUrl": "https://cdn.videosdk.live/a/p2.webm"}])
    assert [f.storage for f in participant.files] == [Storage.CUSTOMER, Storage.VIDEOSDK]


@pytest.mark.parametrize(("url", "customer"), [
    ("https://acme.blob.core.windows.net/rec/x.mp4", True),
    ("https://acme-rec.s3.eu-west-1.amazonaws.com/x.mp4", True),
    ("https://storage.googleapis.com/acme/x.mp4", True),
    ("https://cdn.videosdk.live/x.mp4", False),
    (None, True),
])
def test_customer_storage_hosts(url: str | None, customer: bool) -> None:
    assert is_customer_storage_url(url) is customer


def test_type_is_accepted_for_webhook_type() -> None:
    body = {"type": "recording-stopped", "data": {**ROOM, "filePath": "/encoded/videos/x.mp4", "fileUrl": CDN}}
    parsed = parse_event(json.dumps(body))
    assert parsed.webhook_type == "recording-stopped" and len(parsed.files) == 1
    with pytest.raises(ValueError, match="type: must not be empty"):
        parse_event({"type": "", "data": {}})


def test_encryption_files_are_archived_beside_the_media() -> None:
    stopped = event("recording-stopped", filePath="/encoded/videos/x.mp4", fileUrl=CDN, id="rec-1",
                    encryption={"keyUrl": "https://cdn.videosdk.live/keys/x.key",
                                "metaUrl": "https://cdn.videosdk.live/keys/x.meta.json"})
    assert [f.filename for f in stopped.files] == ["x.mp4", "x.key", "x.meta.json"]
    assert {f.recording_id for f in stopped.files} == {"rec-1"}
    with pytest.raises(ValueError, match=r"data.encryption.keyUrl: must be an absolute http\(s\) URL"):
        event("recording-stopped", filePath="/x.mp4", fileUrl=CDN, encryption={"keyUrl": "nope"})


@pytest.mark.parametrize(("webhook_type", "data", "lookup"), [
    ("merge-recording-completed", {"id": "u1"}, Lookup(RecordingKind.MERGE, "u1")),
    ("transcription-stopped", {"id": "t1", "type": "post"}, Lookup(RecordingKind.TRANSCRIPT, "t1")),
    ("transcription-stopped", {"id": "t2"}, Lookup(RecordingKind.TRANSCRIPT, "t2")),
    ("composite-recording-stopped", {"id": "c1"}, Lookup(RecordingKind.COMPOSITE, "c1")),
    ("composite-merge-completed", {"id": "c2"}, Lookup(RecordingKind.COMPOSITE, "c2")),
])
def test_events_that_name_a_recording_by_id_start_a_lookup(webhook_type: str, data: dict[str, str],
                                                           lookup: Lookup) -> None:
    parsed = event(webhook_type, **data)
    assert parsed.lookup == lookup and parsed.archivable and parsed.files == () and not parsed.failure


def test_a_composite_event_with_its_file_needs_no_lookup() -> None:
    parsed = event("composite-recording-stopped", id="c1", filePath="/encoded/videos/c.mp4", fileUrl=CDN)
    assert parsed.lookup is None and [f.recording_kind for f in parsed.files] == [RecordingKind.COMPOSITE]
    assert parsed.files[0].recording_id == "c1"


@pytest.mark.parametrize(("webhook_type", "data", "failure"), [
    ("transcription-stopped", {"id": "t1", "type": "realtime"}, False),
    ("transcription-started", {"id": "t1", "type": "post"}, False),
    ("transcription-failed", {"id": "t1", "type": "post"}, True),
    ("composite-recording-started", {"id": "c1"}, False),
    ("composite-recording-failed", {"id": "c1"}, True),
    ("composite-merge-failed", {"id": "c1", "message": "x"}, True),
])
def test_state_and_failure_events_of_the_newer_kinds(webhook_type: str, data: dict[str, str],
                                                     failure: bool) -> None:
    parsed = event(webhook_type, **data)
    assert not parsed.archivable and parsed.lookup is None and parsed.failure is failure


def test_a_lookup_event_without_its_id_is_refused() -> None:
    with pytest.raises(ValueError, match=r"data\.id: required"):
        event("transcription-stopped", type="post")
