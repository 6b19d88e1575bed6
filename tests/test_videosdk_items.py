"""files_of: one REST item of any kind -> its files; a documented field of the wrong type is Unusable
naming the field, a recording without a file yet is NotReady."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from archiver.domain.recordings import RecordingKind, Storage
from archiver.videosdk.items import NotReady, Unusable, files_of

CDN = "https://cdn.videosdk.live"
ROOM_ITEM = {"id": "61d6e834e1326304a9e73dac", "roomId": "abc-xyzw-lmno", "sessionId": "s1",
             "createdAt": "2022-01-06T13:07:21.187Z", "fileId": "61d6e871d1617e097b41699b",
             "file": {"id": "61d6e871d1617e097b41699b", "type": "video", "size": 17023255,
                      "filePath": "uploads/videos/61d6e871d1617e097b41699b.mp4",
                      "fileUrl": f"{CDN}/uploads/videos/61d6e871d1617e097b41699b.mp4"}}
TRACK_ITEM = {"id": "t1", "roomId": "r", "sessionId": "s", "participantId": "p", "kind": "video", "mode": "track",
              "start": "2026-11-30T10:00:00Z",
              "files": [{"_id": "f1", "filePath": "individual-recordings/s/p/video/a.webm",
                         "fileUrl": f"{CDN}/individual-recordings/s/p/video/a.webm", "size": 5},
                        {"_id": "f2", "filePath": "individual-recordings/s/p/video/b.webm", "fileUrl": None}]}


def test_room_item() -> None:
    [f] = files_of(RecordingKind.ROOM, ROOM_ITEM)
    assert (f.meeting_id, f.session_id, f.recording_id, f.file_id, f.size, f.webhook_type) == (
        "abc-xyzw-lmno", "s1", ROOM_ITEM["id"], "61d6e871d1617e097b41699b", 17023255, "recording-stopped")
    assert f.recorded_at == datetime(2022, 1, 6, 13, 7, 21, 187000, tzinfo=UTC)


def test_track_item_has_one_file_per_entry_and_a_null_url_is_customer_storage() -> None:
    a, b = files_of(RecordingKind.TRACK, TRACK_ITEM)
    assert [(f.file_id, f.kind, f.participant_id, f.storage) for f in (a, b)] == [
        ("f1", "video", "p", Storage.VIDEOSDK), ("f2", "video", "p", Storage.CUSTOMER)]
    assert a.recorded_at == datetime(2026, 11, 30, 10, tzinfo=UTC)


def test_encryption_files_come_with_the_media() -> None:
    item = {**ROOM_ITEM, "encryption": {"keyUrl": f"{CDN}/keys/x.key", "metaUrl": f"{CDN}/keys/x.meta.json"}}
    assert [f.filename for f in files_of(RecordingKind.ROOM, item)] == [
        "61d6e871d1617e097b41699b.mp4", "x.key", "x.meta.json"]


def with_(item: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of ``item`` with the dotted ``path`` (list indexes as numbers) set to ``value``."""
    import copy

    out = copy.deepcopy(item)
    target: Any = out
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value
    return out


@pytest.mark.parametrize(("kind", "item", "field"), [
    (RecordingKind.ROOM, with_(ROOM_ITEM, "file.size", "17023255"), "file.size"),
    (RecordingKind.ROOM, with_(ROOM_ITEM, "file.size", -1), "file.size"),
    (RecordingKind.ROOM, with_(ROOM_ITEM, "file.fileUrl", ""), "file.fileUrl"),
    (RecordingKind.ROOM, with_(ROOM_ITEM, "file.fileUrl", "ftp://x/y.mp4"), "file.fileUrl"),
    (RecordingKind.ROOM, with_(ROOM_ITEM, "file.filePath", 7), "file.filePath"),
    (RecordingKind.ROOM, with_(ROOM_ITEM, "file", "x"), "file"),
    (RecordingKind.ROOM, with_(ROOM_ITEM, "createdAt", "yesterday"), "createdAt"),
    (RecordingKind.ROOM, with_(ROOM_ITEM, "sessionId", 5), "sessionId"),
    (RecordingKind.ROOM, with_(ROOM_ITEM, "roomId", None), "roomId"),
    (RecordingKind.ROOM, {**ROOM_ITEM, "encryption": {"keyUrl": "nope"}}, "encryption.keyUrl"),
    (RecordingKind.TRACK, with_(TRACK_ITEM, "files.1.size", 1.5), "files[1].size"),
    (RecordingKind.TRACK, with_(TRACK_ITEM, "files.0._id", 3), "files[0]._id"),
    (RecordingKind.TRACK, with_(TRACK_ITEM, "files.1", "x"), "files[1]"),
    (RecordingKind.TRACK, with_(TRACK_ITEM, "files", {}), "files"),
    (RecordingKind.TRACK, with_(TRACK_ITEM, "kind", None), "kind"),
    (RecordingKind.PARTICIPANT, with_(TRACK_ITEM, "participantId", ""), "participantId"),
    (RecordingKind.MERGE, {"id": "m", "meetingId": "r", "status": "failed"}, "status (failed)"),
    (RecordingKind.TRANSCRIPT, {"id": "t", "roomId": "r", "transcriptionFilePaths": ["x"]}, "transcriptionFilePaths"),
    (RecordingKind.TRANSCRIPT, {"id": "t", "roomId": "r", "transcriptionFilePaths": {"txt": 1}},
     "transcriptionFilePaths.txt"),
    (RecordingKind.COMPOSITE, "not an object", "item (not an object)"),
])
def test_a_documented_field_of_the_wrong_type_is_named(kind: RecordingKind, item: object, field: str) -> None:
    with pytest.raises(Unusable) as err:
        files_of(kind, item)
    assert str(err.value) == field


@pytest.mark.parametrize(("kind", "item"), [
    (RecordingKind.MERGE, {"id": "m", "meetingId": "r", "status": "running"}),
    (RecordingKind.TRANSCODING, {"id": "x", "roomId": "r", "status": "PROCESSING"}),
    (RecordingKind.TRANSCRIPT, {"id": "t", "roomId": "r", "status": "in_progress"}),
    (RecordingKind.PARTICIPANT, {**TRACK_ITEM, "files": []}),
    (RecordingKind.COMPOSITE, {"id": "c", "roomId": "r"}),
])
def test_a_recording_without_a_file_yet_is_not_ready(kind: RecordingKind, item: dict[str, Any]) -> None:
    with pytest.raises(NotReady):
        files_of(kind, item)
