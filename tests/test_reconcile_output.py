"""What `archiver reconcile` says: odd items skipped and counted, the table per kind with the failed
listings, and archiver_reconcile_finds_total per recording kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from tests.reconcile_env import API_KEY, SECRET, SESSION, cli, configure
from tests.videosdk_stand_in import VideoSDKStandIn

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def sdk(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=API_KEY, secret=SECRET) as stand_in:
        configure(tmp_path, database_url, stand_in, monkeypatch, disk_only=True)
        yield stand_in


def test_an_item_that_cannot_be_read_is_skipped_and_counted(
        sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    good = sdk.add_recording("room-q", session_id=SESSION)
    item = sdk.catalog.items["room"][good]
    odd = {**item, "id": "odd-one", "file": {**item["file"], "size": "big"}}
    sdk.fail_next(200, path="/recordings", body={"pageInfo": {"currentPage": 1, "lastPage": 1},
                                                 "data": ["junk", odd, item]})
    code, report, log = cli(capsys, "reconcile", "--room", "room-q", "--kind", "room", "--no-room-list", "--json")
    assert code == 1 and (report["files_new"], report["kinds"]["room"]["failed"], report["failed"]) == (1, 2, 2)
    assert "'odd-one'" in log and "field file.size missing or invalid" in log
    assert "item (not an object)" in log
    assert [f.recording_id for f in Runtime.create(load_settings()).ledger.files(meeting_id="room-q")] == [good]


def test_the_table_shows_each_kind_and_each_failed_listing(
        sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    sdk.add_participant_recording("room-t", session_id=SESSION, participant_id="p", files=[
        ("individual-recordings/s/p/a.webm", "https://cdn.videosdk.live/individual-recordings/s/p/a.webm", 5)])
    sdk.fail_next(404, path="/recordings/composite")
    code, out, _ = cli(capsys, "reconcile")
    assert code == 1
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["participant"][:4] == ["1", "1", "0", "1"]  # recordings, listed, already archived, newly queued
    assert lines["room-t"][:2] == ["composite", "not_found:"]
    assert "rooms scanned 1 (1 listed by /v2/rooms), files listed 1, new 1, jobs created 1" in out


def test_finds_are_counted_per_recording_kind(sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    from prometheus_client import REGISTRY

    def finds(kind: str) -> float:
        return REGISTRY.get_sample_value("archiver_reconcile_finds_total", {"kind": kind}) or 0.0

    before = {kind: finds(kind) for kind in ("room", "track")}
    sdk.add_participant_recording("room-k", session_id=SESSION, participant_id="p", track="video", files=[
        (f"individual-recordings/s/p/video/{n}.webm", f"https://cdn.videosdk.live/v/{n}.webm", 5) for n in range(3)])
    assert cli(capsys, "reconcile")[0] == 1
    assert (finds("track") - before["track"], finds("room") - before["room"]) == (3.0, 0.0)
