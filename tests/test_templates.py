from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from archiver.domain.templates import (
    VARIABLES,
    RenderError,
    TemplateError,
    parse_template,
    template_values,
)
from archiver.intake.events import RecordingFile
from providers import MAX_KEY_BYTES

# 23:30 at UTC-05:00 is already the next day in UTC: date parts must follow UTC.
RECEIVED = datetime(2024, 3, 9, 23, 30, 7, tzinfo=timezone(timedelta(hours=-5)))
TRACK = RecordingFile(
    meeting_id="jvsg-8rjn-j304",
    session_id="613731342f27f56e4fc4b6d0",
    participant_id="p-ana",
    kind="audio",
    file_path="/encoded/audios/clip.tar.webm",
    file_url="https://cdn.videosdk.live/encoded/audios/clip.tar.webm",
    webhook_type="participant-track-recording-stopped",
)
ROOM = replace(
    TRACK, participant_id=None, kind=None, file_path="/encoded/videos/v.mp4", webhook_type="recording-stopped"
)


def render(template: str, file: RecordingFile = TRACK) -> str:
    return parse_template(template).render(template_values(file, received_at=RECEIVED, destination="s3-main"))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/meeting-recordings/${meetingId}/", "meeting-recordings/jvsg-8rjn-j304/clip.tar.webm"),
        ("{sessionId}/{participantId}/{kind}/", "613731342f27f56e4fc4b6d0/p-ana/audio/clip.tar.webm"),
        ("{roomId}/{stem}.{ext}", "jvsg-8rjn-j304/clip.tar.webm"),
        ("{yyyy}/{MM}/{dd}/{HH}{mm}{ss}-{filename}", "2024/03/10/043007-clip.tar.webm"),
        ("${date}/${destination}/${webhookType|x}/", "2024-03-10/s3-main/" + TRACK.webhook_type + "/clip.tar.webm"),
        ("a/{recordingId|no-id}/{ext}", "a/no-id/webm"),
        ("archive/", "archive/clip.tar.webm"),
        ("{filename}", "clip.tar.webm"),
        ("cost$/{meetingId}.{ext}", "cost$/jvsg-8rjn-j304.webm"),
    ],
)  # fmt: skip
def test_render_table(template: str, expected: str) -> None:
    assert render(template) == expected


def test_room_recording_uses_defaults_for_absent_participant() -> None:
    assert render("r/{meetingId}/{participantId|room}/{kind|mixed}/", ROOM) == "r/jvsg-8rjn-j304/room/mixed/v.mp4"
    with pytest.raises(RenderError) as info:
        render("r/{participantId}/", ROOM)
    assert str(info.value) == (
        "variable {participantId} has no value for this recording (give a default: {participantId|<text>})"
    )


@pytest.mark.parametrize(
    ("file_path", "stem", "ext"),
    [
        ("/x/a.tar.webm", "a.tar", "webm"),
        ("/x/README", "README", None),
        ("/x/.hidden", ".hidden", None),
        ("/x/a.", "a.", None),
    ],
)
def test_stem_and_ext(file_path: str, stem: str, ext: str | None) -> None:
    values = template_values(replace(TRACK, file_path=file_path), received_at=RECEIVED, destination="d")
    assert (values["stem"], values["ext"]) == (stem, ext)


def test_template_values_covers_variables_and_needs_aware_time() -> None:
    values = template_values(TRACK, received_at=RECEIVED, destination="d")
    assert set(values) == VARIABLES
    with pytest.raises(ValueError, match="timezone-aware"):
        template_values(TRACK, received_at=datetime(2024, 1, 1), destination="d")


def test_parsed_attributes() -> None:
    t = parse_template("/meeting-recordings/${roomId}/{kind|x}/")
    assert (t.fixed_prefix, t.is_folder, t.variables) == ("meeting-recordings/", True, frozenset({"meetingId", "kind"}))
    f = parse_template("{meetingId}/{filename}")
    assert (f.fixed_prefix, f.is_folder) == ("", False)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("meetingId", "..", "contains '..'"),
        ("meetingId", ".", "is '.'"),
        ("participantId", "a/b", "contains '/'"),
        ("participantId", "..\\x", "contains '\\'"),
        ("sessionId", "ok..no", "contains '..'"),
        ("sessionId", "", "is empty"),
        ("kind", "a\nb", "contains a control or invisible formatting character (U+000A)"),
        ("kind", "nul\x00", "contains a control or invisible formatting character (U+0000)"),
        ("kind", "esc\x1b[31m", "contains a control or invisible formatting character (U+001B)"),
        ("meetingId", "abc\u202egpj.exe", "contains a control or invisible formatting character (U+202E)"),
        ("meetingId", "line\u2028sep", "contains a control or invisible formatting character (U+2028)"),
        ("meetingId", "zero\u200bwidth", "contains a control or invisible formatting character (U+200B)"),
        ("meetingId", "\ud800", "contains a control or invisible formatting character (U+D800)"),
    ],
)
def test_unsafe_values_are_refused(variable: str, value: str, reason: str) -> None:
    values = template_values(TRACK, received_at=RECEIVED, destination="d") | {variable: value}
    with pytest.raises(RenderError) as info:
        parse_template("x/{meetingId}/{sessionId}/{participantId}/{kind}/").render(values)
    assert str(info.value) == f"value of {{{variable}}} {reason}"


def test_unsafe_filename_in_folder_template() -> None:
    evil = replace(TRACK, file_path="/", file_url="https://cdn.videosdk.live/x/..%2F..%2Fetc")
    with pytest.raises(RenderError, match=r"value of \{filename\} contains '/'"):
        render("rec/", evil)


def test_unsafe_value_is_not_replaced_by_default() -> None:
    with pytest.raises(RenderError, match=r"contains '\.\.'"):
        parse_template("{participantId|room}/x").render({"participantId": ".."})


PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # "mi-khaham": ZWNJ is part of the spelling


def test_harmless_lookalikes_are_literal() -> None:
    # Percent-encoding is literal text in object keys; ZWJ/ZWNJ and ordinary Unicode are allowed.
    values = {"meetingId": "%2e%2e", "participantId": "Zoë 👩\u200d💻", "kind": PERSIAN}
    key = parse_template("{meetingId}/{participantId}/{kind}").render(values)
    assert key == "%2e%2e/Zoë 👩\u200d💻/" + PERSIAN


def test_roomid_alias_reads_meetingid_or_roomid() -> None:
    t = parse_template("{roomId}/x")
    assert t.render({"meetingId": "m1"}) == "m1/x"
    assert t.render({"roomId": "m2"}) == "m2/x"


def test_key_length_limit_is_utf8_bytes() -> None:
    t = parse_template("p/{meetingId}", max_key_bytes=MAX_KEY_BYTES)
    assert t.render({"meetingId": "a" * (MAX_KEY_BYTES - 2)}) == "p/" + "a" * (MAX_KEY_BYTES - 2)
    with pytest.raises(RenderError, match="1025 bytes"):
        t.render({"meetingId": "a" * (MAX_KEY_BYTES - 1)})
    # 341 three-byte characters are 1023 bytes but only 341 characters: still too long with the prefix
    with pytest.raises(RenderError, match="1025 bytes"):
        t.render({"meetingId": "會" * 341})


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "empty template"),
        ("   ", "empty template"),
        ("/", "template is only '/'"),
        ("{roomID}/", "unknown variable {roomID} at column 1 (names are case-sensitive: did you mean {roomId}?)"),
        ("rec/{nope}/", "unknown variable {nope} at column 5"),
        ("meeting/{meetingId", "unbalanced '{' at column 9"),
        ("a/${x{meetingId}}", "unbalanced '{' at column 4"),
        ("a/meetingId}/", "unbalanced '}' at column 12"),
        ("a/{}/", "empty placeholder at column 3"),
        ("a/${|x}/", "empty placeholder at column 4"),
        ("a/{kind|}/", "default of {kind} at column 3 is empty"),
        ("a/{kind|../x}/", "default of {kind} at column 3 contains '/'"),
        ("a//{meetingId}", "empty ('//'), '.' or '..' path segment"),
        ("a/../{meetingId}", "empty ('//'), '.' or '..' path segment"),
        ("//{meetingId}", "empty ('//'), '.' or '..' path segment"),
        ("a\\{meetingId}", "template contains a backslash at column 2"),
        ("a\t{meetingId}", "template contains a control or invisible formatting character (U+0009) at column 2"),
        (" {meetingId}", "template has leading or trailing whitespace"),
        ("a/b.mp4", "no placeholder and no trailing '/'"),
    ],
)
def test_template_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(template)
    assert message in str(info.value)


def test_template_and_render_errors_are_distinct() -> None:
    # Config problems and per-recording problems are handled differently by callers.
    assert not issubclass(TemplateError, RenderError) and not issubclass(RenderError, TemplateError)
    assert issubclass(TemplateError, ValueError) and issubclass(RenderError, ValueError)
