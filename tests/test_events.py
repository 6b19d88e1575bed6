from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from archiver.intake.events import (
    KNOWN_TYPES,
    RECORDING_TYPES,
    EventValidationError,
    RecordingFile,
    dedupe_key,
    parse_event,
)

SAMPLES = Path(__file__).resolve().parent / "samples" / "webhooks"  # copied from shared/samples
MEETING, SESSION = "jvsg-8rjn-j304", "613731342f27f56e4fc4b6d0"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def errors_of(body: Any) -> list[str]:
    with pytest.raises(EventValidationError) as info:
        parse_event(body)
    assert str(info.value) == "invalid webhook: " + "; ".join(info.value.fields)
    return info.value.fields


def test_every_sample_is_covered() -> None:
    # If a sample is added, this list (and the per-type assertions below) must be extended.
    assert sorted(p.stem for p in SAMPLES.glob("*.json")) == [
        "merge-recording-completed",
        "participant-recording-stopped",
        "participant-track-recording-stopped",
        "recording-failed",
        "recording-started",
        "recording-stopped",
        "session-started",
    ]


def test_sample_recording_stopped_from_bytes() -> None:
    event = parse_event((SAMPLES / "recording-stopped.json").read_bytes())
    assert (event.webhook_type, event.meeting_id, event.session_id) == ("recording-stopped", MEETING, SESSION)
    assert event.archivable and not event.failure and event.merge_id is None
    assert event.files == (
        RecordingFile(
            meeting_id=MEETING,
            session_id=SESSION,
            participant_id=None,
            kind=None,
            file_path="/encoded/videos/62d148951a1eb20029fc9b05.mp4",
            file_url="https://cdn.videosdk.live/encoded/videos/62d148951a1eb20029fc9b05.mp4",
            webhook_type="recording-stopped",
        ),
    )
    assert event.files[0].filename == "62d148951a1eb20029fc9b05.mp4"


def test_sample_participant_recording_stopped() -> None:
    event = parse_event(sample("participant-recording-stopped"))
    assert event.participant_id == "p-ana" and event.archivable
    assert [(f.participant_id, f.kind, f.filename) for f in event.files] == [
        ("p-ana", None, "6540a1f01a1eb20029fc9c11.webm")
    ]


def test_sample_participant_track_recording_stopped() -> None:
    event = parse_event(json.dumps(sample("participant-track-recording-stopped")))
    assert [(f.participant_id, f.kind, f.file_path) for f in event.files] == [
        ("p-ana", "audio", "/encoded/audios/6540a2a41a1eb20029fc9c20.webm"),
        ("p-ana", "audio", "/encoded/audios/6540a2b71a1eb20029fc9c21.webm"),
    ]
    assert all(f.webhook_type == "participant-track-recording-stopped" for f in event.files)


def test_sample_merge_recording_completed() -> None:
    event = parse_event(sample("merge-recording-completed"))
    assert event.merge_id == "0f6b7a9e-3b8c-4d2e-9a51-6c1f2e7d8a90"
    assert event.archivable and event.files == () and not event.failure


@pytest.mark.parametrize(
    ("name", "failure"), [("recording-failed", True), ("recording-started", False), ("session-started", False)]
)
def test_sample_state_events(name: str, failure: bool) -> None:
    event = parse_event(sample(name))
    assert (event.meeting_id, event.session_id) == (MEETING, SESSION)
    assert event.failure is failure
    assert not event.archivable and event.files == () and event.merge_id is None


def test_failure_types_and_merge_failed() -> None:
    base = {"meetingId": "m", "sessionId": "s", "participantId": "p", "kind": "video"}
    for t in ("participant-recording-failed", "participant-track-recording-failed"):
        assert parse_event({"webhookType": t, "data": base}).failure
    merged = parse_event({"webhookType": "merge-recording-failed", "data": {"id": "u1", **base, "message": "x"}})
    assert merged.failure and merged.merge_id == "u1" and not merged.archivable


def test_known_types() -> None:
    assert "participant-track-recording-stopped" in RECORDING_TYPES and len(RECORDING_TYPES) == 28
    assert {"session-started", "merge-recording-failed"} <= KNOWN_TYPES


ARCHIVABLE = ["recording-stopped", "participant-recording-stopped", "participant-track-recording-stopped"]


@pytest.mark.parametrize("name", ARCHIVABLE)
def test_extra_fields_are_ignored(name: str) -> None:
    body = sample(name)
    body["deliveryId"] = 7
    body["data"]["roomId"] = body["data"]["meetingId"]
    body["data"]["duration"] = 55.05
    for entry in body["data"].get("fileDetails", []):
        entry["size"] = {"bytes": 1}
    assert parse_event(body).files == parse_event(sample(name)).files


def documented_fields(name: str) -> list[str]:
    return [k for k in sample(name)["data"] if k != "fileDetails"] + (
        ["fileDetails"] if "fileDetails" in sample(name)["data"] else []
    )


@pytest.mark.parametrize(
    ("name", "field"),
    [(n, f) for n in [*ARCHIVABLE, "merge-recording-completed"] for f in documented_fields(n)],
)
def test_each_documented_field_missing(name: str, field: str) -> None:
    body = sample(name)
    del body["data"][field]
    assert errors_of(body) == [f"data.{field}: required"]


@pytest.mark.parametrize("name", ARCHIVABLE)
def test_meeting_id_number_is_rejected(name: str) -> None:
    body = sample(name)
    body["data"]["meetingId"] = 12345
    assert errors_of(body) == ["data.meetingId: must be a string"]


URL_ERR = "data.fileDetails[0].fileUrl: must be an absolute http(s) URL"
CDN = "https://cdn.videosdk.live/a.webm"
PATH1_ERR = "data.fileDetails[1].filePath: must be a string"


@pytest.mark.parametrize("name", ARCHIVABLE[1:])
@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ("[{}]", ["data.fileDetails: must be an array"]),
        ([], ["data.fileDetails: must not be empty"]),
        (["x"], ["data.fileDetails[0]: must be an object"]),
        ([{"filePath": "/a.webm"}], ["data.fileDetails[0].fileUrl: required"]),
        ([{"fileUrl": CDN}], ["data.fileDetails[0].filePath: required"]),
        ([{"filePath": "/a.webm", "fileUrl": "cdn.videosdk.live/a"}], [URL_ERR]),
        ([{"filePath": "/a.webm", "fileUrl": "file:///etc/passwd"}], [URL_ERR]),
        ([{"filePath": "/a.webm", "fileUrl": "https:///no-host"}], [URL_ERR]),
        ([{"filePath": "", "fileUrl": "https://x/a b"}], ["data.fileDetails[0].filePath: must not be empty", URL_ERR]),
        ([{"filePath": "/a", "fileUrl": CDN}, {"filePath": 1, "fileUrl": CDN}], [PATH1_ERR]),
    ],
)  # fmt: skip
def test_bad_file_details(name: str, details: Any, expected: list[str]) -> None:
    body = sample(name)
    body["data"]["fileDetails"] = details
    assert errors_of(body) == expected


def test_recording_stopped_bad_url_and_path() -> None:
    body = sample("recording-stopped")
    body["data"].update(filePath=["x"], fileUrl="ftp://cdn.videosdk.live/x.mp4")
    assert errors_of(body) == ["data.filePath: must be a string", "data.fileUrl: must be an absolute http(s) URL"]


def test_three_problems_are_all_listed_in_document_order() -> None:
    body = sample("participant-track-recording-stopped")
    body["data"]["meetingId"] = 42
    del body["data"]["kind"]
    del body["data"]["fileDetails"][1]["fileUrl"]
    assert errors_of(body) == [
        "data.meetingId: must be a string",
        "data.kind: required",
        "data.fileDetails[1].fileUrl: required",
    ]


PARTICIPANT = {"meetingId": "m", "sessionId": "s", "participantId": "p"}


def test_state_events_are_validated_too() -> None:
    assert errors_of({"webhookType": "recording-started", "data": {"meetingId": "m"}}) == ["data.sessionId: required"]
    track = {"webhookType": "participant-track-recording-started", "data": {**PARTICIPANT, "kind": ""}}
    assert errors_of(track) == ["data.kind: must not be empty"]
    started = {"webhookType": "participant-recording-started", "data": {**PARTICIPANT, "fileFormat": 1}}
    assert errors_of(started) == ["data.fileFormat: must be a string"]
    # fileFormat is tolerated when absent or null (decision documented in events.py)
    for data in (PARTICIPANT, {**PARTICIPANT, "fileFormat": None}):
        assert parse_event({"webhookType": "participant-recording-started", "data": data}).participant_id == "p"


def test_kind_is_not_restricted_to_the_documented_four() -> None:
    body = sample("participant-track-recording-stopped")
    body["data"]["kind"] = "screen_share_v2"
    assert {f.kind for f in parse_event(body).files} == {"screen_share_v2"}


def test_unicode_ids() -> None:
    body = sample("participant-recording-stopped")
    body["data"].update(meetingId="réunion-會議", participantId="Zoë 🎥")
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    event = parse_event(raw)
    assert (event.meeting_id, event.files[0].participant_id) == ("réunion-會議", "Zoë 🎥")
    assert parse_event(json.dumps(body)).files == event.files  # \u-escaped form decodes the same


def test_lone_surrogate_id_is_rejected() -> None:
    raw = json.dumps(sample("recording-stopped")).replace(MEETING, "\\ud800")
    assert errors_of(raw) == ["data.meetingId: must be valid Unicode (lone surrogate)"]


@pytest.mark.parametrize(
    "body", [{"webhookType": "hls-started", "data": {"meetingId": 5}}, {"webhookType": "brand-new", "data": {}}]
)
def test_unknown_types_are_accepted(body: dict[str, Any]) -> None:
    event = parse_event(body)
    assert event.webhook_type == body["webhookType"]
    assert not event.archivable and event.files == () and event.meeting_id is None


def test_data_is_read_only_copy() -> None:
    body = sample("recording-started")
    event = parse_event(body)
    body["data"]["meetingId"] = "changed"
    assert event.data["meetingId"] == MEETING
    with pytest.raises(TypeError):
        event.data["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"webhookType":\n  recording-stopped}', "body: not valid JSON (line 2, col 3)"),
        (b'{"a":\n  NaN}', "body: not valid JSON (NaN/Infinity are not JSON numbers)"),
        (b'{"a": "\xff"}', "body: not valid JSON (not UTF-8 text)"),
        ('{"a": 1}'.encode("utf-16"), "body: not valid JSON (not UTF-8 text)"),
        (b'\xef\xbb\xbf{"a": 1}', "body: not valid JSON (line 1, col 1)"),
        (b"[" * 100_000, "body: not valid JSON (nested too deeply)"),
        (b"[1]", "body: must be a JSON object"),
        ('"text"', "body: must be a JSON object"),
    ],
)
def test_malformed_and_non_object_bodies(raw: bytes | str, expected: str) -> None:
    assert errors_of(raw) == [expected]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": {}}, ["webhookType: required"]),
        ({"webhookType": None, "data": []}, ["webhookType: must be a string", "data: must be an object"]),
        ({"webhookType": "", "data": {}}, ["webhookType: must not be empty"]),
        ({"webhookType": "recording-started"}, ["data: required"]),
    ],
)
def test_top_level_shape(body: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(body) == expected


def test_filename_falls_back_to_url() -> None:
    f = RecordingFile("m", "s", None, None, "/dir/", "https://cdn/x/a%20b.mp4", "recording-stopped")
    assert f.filename == "a b.mp4"


def test_dedupe_key_is_stable_across_formatting() -> None:
    body = sample("participant-track-recording-stopped")
    compact = json.dumps(body, separators=(",", ":")).encode()
    reordered = json.dumps({"data": dict(reversed(list(body["data"].items()))), "webhookType": body["webhookType"]})
    pretty = json.dumps(body, indent=4, ensure_ascii=True).encode("utf-8")
    key = dedupe_key(compact)
    assert len(key) == 64 and int(key, 16) >= 0
    assert dedupe_key(reordered) == key == dedupe_key(pretty) == dedupe_key(body)
    assert dedupe_key(parse_event(body).data) != key  # a different document, a different key


def test_dedupe_key_differs_between_events() -> None:
    body = sample("participant-track-recording-stopped")
    other = copy.deepcopy(body)
    other["data"]["fileDetails"].reverse()
    third = copy.deepcopy(body)
    third["webhookType"] = "participant-track-recording-stopping"
    keys = {dedupe_key(body), dedupe_key(other), dedupe_key(third), dedupe_key(sample("recording-stopped"))}
    assert len(keys) == 4


def test_dedupe_key_rejects_malformed_json() -> None:
    with pytest.raises(EventValidationError):
        dedupe_key(b"{")


# ---- values the ledger cannot store are refused here (400), never by the database (503) ----------------

# (sample, path to a field whose value reaches a bounded ledger column, the field as messages name it)
STORED_FIELDS: list[tuple[str, tuple[Any, ...], str]] = [
    ("recording-stopped", ("webhookType",), "webhookType"),
    ("recording-stopped", ("data", "meetingId"), "data.meetingId"),
    ("recording-stopped", ("data", "sessionId"), "data.sessionId"),
    ("recording-stopped", ("data", "filePath"), "data.filePath"),
    ("participant-track-recording-stopped", ("data", "participantId"), "data.participantId"),
    ("participant-track-recording-stopped", ("data", "kind"), "data.kind"),
    ("participant-track-recording-stopped", ("data", "fileDetails", 1, "filePath"), "data.fileDetails[1].filePath"),
    ("participant-recording-stopped", ("data", "fileDetails", 0, "filePath"), "data.fileDetails[0].filePath"),
    ("merge-recording-completed", ("data", "id"), "data.id"),
    ("session-started", ("data", "meetingId"), "data.meetingId"),  # ignored type: its ids are still recorded
]


def with_value(name: str, path: tuple[Any, ...], value: str) -> dict[str, Any]:
    body = sample(name)
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(("name", "path", "field"), STORED_FIELDS, ids=[f[2] + "@" + f[0] for f in STORED_FIELDS])
def test_a_value_longer_than_its_column_is_refused_naming_field_and_limit(name: str, path: tuple[Any, ...],
                                                                         field: str) -> None:
    from archiver.intake.field_limits import FIELD_LIMITS

    limit = FIELD_LIMITS[path[-1] if isinstance(path[-1], str) else "filePath"]
    parse_event(with_value(name, path, "x" * limit))  # exactly the limit is stored
    fields = errors_of(with_value(name, path, "x" * (limit + 1)))
    assert fields == [f"{field}: longer than {limit} characters, the most the ledger stores"]
    assert errors_of(with_value(name, path, "a\x00b")) == [f"{field}: must not contain NUL characters (\\u0000)"]


def test_the_limits_are_the_ledgers_column_sizes() -> None:
    from archiver.intake.field_limits import FIELD_LIMITS
    from archiver.ledger.models import Event, FileRow

    assert FIELD_LIMITS["meetingId"] == FileRow.__table__.c.meeting_id.type.length == 200
    assert FIELD_LIMITS["webhookType"] == Event.__table__.c.webhook_type.type.length == 100
    assert FIELD_LIMITS["filePath"] == 1024 and FIELD_LIMITS["kind"] == 50
    assert FIELD_LIMITS["id"] == Event.__table__.c.dedupe_key.type.length - len("merge:")  # archiver.merge's key


def test_unstored_fields_of_an_ignored_type_are_not_limited() -> None:
    body = {"webhookType": "hls-started", "data": {"meetingId": "m", "kind": "k" * 500, "id": "i" * 500,
                                                   "note": "n\x00" * 10}}
    assert parse_event(body).webhook_type == "hls-started"
