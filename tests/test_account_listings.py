"""Confirming a webhook's file with VideoSDK's API costs little per job: a worker process keeps one
connection to the API, and the track recordings of one meeting are confirmed with one listing of its
room. The guarantee stays whole: a file not in the remembered listing is asked about afresh, a file
not in our account is still refused, and another api_key never inherits what the last one listed."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from archiver.copy import job as copy_job
from archiver.intake.record import accept_event
from archiver.runtime import Runtime
from tests import videosdk_stand_in
from tests.http_source import HttpSource
from tests.test_account_binding import KEY, SECRET, SESSION, accept, runtime_for
from tests.videosdk_stand_in import VideoSDKStandIn

pytestmark = pytest.mark.usefixtures("restore_root_logging")
TRACKS = "/recordings/participant/track"


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=KEY, secret=SECRET) as stand_in:
        yield stand_in


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per TCP connection the stand-in accepts (its handler is set up once per connection)."""
    opened: list[int] = []
    lock = threading.Lock()
    setup = videosdk_stand_in._Handler.setup

    def counted(handler: videosdk_stand_in._Handler) -> None:
        with lock:
            opened.append(1)
        setup(handler)

    monkeypatch.setattr(videosdk_stand_in._Handler, "setup", counted)
    return opened


def add_track(sdk: VideoSDKStandIn, cdn: HttpSource, room: str, participant: str) -> str:
    """A track recording of `participant` in our account; returns its file's name."""
    name = f"{secrets.token_hex(12)}.webm"
    sdk.add_participant_recording(room, session_id=SESSION, participant_id=participant, track="audio",
                                  files=[(f"individual-recordings/{name}", cdn.file_url(name, size=40_000), 40_000)])
    return name


def track_webhook(cdn: HttpSource, room: str, participant: str, name: str) -> str:
    return json.dumps({"webhookType": "participant-track-recording-stopped", "data": {
        "meetingId": room, "sessionId": SESSION, "participantId": participant, "kind": "audio",
        "fileDetails": [{"filePath": f"/encoded/videos/{name}", "fileUrl": cdn.file_url(name, size=40_000)}]}})


def accept_all(runtime: Runtime, body: str) -> list[int]:
    _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=True)
    return list(accepted.created)


def test_the_tracks_of_one_meeting_are_confirmed_with_one_listing_over_one_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn, connections: list[int]) -> None:
    """Before: every job opened a connection of its own and listed the room again (six of each here)."""
    runtime = runtime_for(tmp_path, monkeypatch, sdk)
    with HttpSource() as cdn:
        names = {f"p{n}": add_track(sdk, cdn, "meeting", f"p{n}") for n in range(6)}
        job_ids = [j for p, name in names.items() for j in accept_all(runtime, track_webhook(cdn, "meeting", p, name))]
        outcomes = [copy_job.run_copy_job(runtime, job_id) for job_id in job_ids]
    assert [o.state for o in outcomes] == ["succeeded"] * 6, outcomes
    assert len(sdk.requests(TRACKS)) == 1
    assert len(connections) == 1
    assert sorted(p.name for p in (tmp_path / "archive").rglob("*.webm")) == sorted(names.values())


def test_a_track_listed_after_the_remembered_listing_is_asked_about_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, sdk)
    with HttpSource() as cdn:
        first = add_track(sdk, cdn, "meeting", "early")
        [early] = accept_all(runtime, track_webhook(cdn, "meeting", "early", first))
        assert copy_job.run_copy_job(runtime, early).state == "succeeded"
        late = add_track(sdk, cdn, "meeting", "late")  # in our account only now
        [job_id] = accept_all(runtime, track_webhook(cdn, "meeting", "late", late))
        assert copy_job.run_copy_job(runtime, job_id).state == "succeeded"
        assert len(sdk.requests(TRACKS)) == 2

        # a track of this very room that our account does not list is refused, the listing fresh or not
        foreign = f"{secrets.token_hex(12)}.webm"
        [job_id] = accept_all(runtime, track_webhook(cdn, "meeting", "stranger", foreign))
        outcome = copy_job.run_copy_job(runtime, job_id)
        assert cdn.hits(f"/files/{foreign}") == []
    assert outcome.state == "failed" and (outcome.error or "").startswith("not_in_account:"), outcome
    assert len(sdk.requests(TRACKS)) == 3


def test_another_api_key_never_uses_what_the_last_one_listed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn, connections: list[int]) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, sdk)
    with HttpSource() as cdn:
        names = {p: add_track(sdk, cdn, "meeting", p) for p in ("p1", "p2")}
        [first], [second] = (accept_all(runtime, track_webhook(cdn, "meeting", p, n)) for p, n in names.items())
        assert copy_job.run_copy_job(runtime, first).state == "succeeded"  # the listing named p2's track too
        runtime.settings = replace(runtime.settings, videosdk=replace(runtime.settings.videosdk, api_key="not-ours"))
        outcome = copy_job.run_copy_job(runtime, second)
    # asked again with the new key (refused: the stand-in knows only ours), not confirmed from memory
    assert outcome.state == "failed" and (outcome.error or "").startswith("account_check:"), outcome
    assert len(sdk.requests(TRACKS)) == 2 and len(connections) == 2


def test_a_closed_client_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, sdk)
    runtime.videosdk().close()  # e.g. by a caller that used it in a `with`
    with HttpSource() as cdn:
        name = add_track(sdk, cdn, "meeting", "p")
        [job_id] = accept_all(runtime, track_webhook(cdn, "meeting", "p", name))
        assert copy_job.run_copy_job(runtime, job_id).state == "succeeded"


def test_a_room_recording_webhook_is_still_confirmed_by_its_own_listing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, sdk)
    with HttpSource() as cdn:
        file_id = secrets.token_hex(12)
        sdk.add_recording("meeting", session_id=SESSION, file_path=f"uploads/videos/{file_id}.mp4",
                          file_url=cdn.file_url(f"{file_id}.mp4", size=10_000), size=10_000)
        name = add_track(sdk, cdn, "meeting", "p")
        [track] = accept_all(runtime, track_webhook(cdn, "meeting", "p", name))
        assert copy_job.run_copy_job(runtime, track).state == "succeeded"
        body = json.dumps({"webhookType": "recording-stopped", "data": {
            "meetingId": "meeting", "sessionId": SESSION, "filePath": f"/encoded/videos/{file_id}.mp4",
            "fileUrl": cdn.file_url(f"{file_id}.mp4", size=10_000)}})
        assert copy_job.run_copy_job(runtime, accept(runtime, body)).state == "succeeded"
    # one listing per kind: the tracks' listing says nothing about room recordings
    assert len(sdk.requests(TRACKS)) == 1 and len(sdk.requests("/recordings")) == 1
