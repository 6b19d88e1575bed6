"""Rooms reconcile finds through GET /v2/rooms: bounded by the window when the list is newest first,
capped when its order cannot bound it, odd room items skipped, and a failing room list reported
while the rooms the ledger names are still reconciled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.reconcile_env import API_KEY, SECRET, SESSION, cli, configure
from tests.videosdk_stand_in import VideoSDKStandIn

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def sdk(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=API_KEY, secret=SECRET) as stand_in:
        configure(tmp_path, database_url, stand_in, monkeypatch, disk_only=True)
        yield stand_in


def stamp(hours_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def add_rooms(sdk: VideoSDKStandIn, recent: int, old: int) -> None:
    """``recent`` rooms created in the last day, ``old`` ones created weeks ago."""
    for n in range(recent):
        sdk.add_room(f"recent-{n:02d}", created_at=stamp(1 + n / 10))
    for n in range(old):
        sdk.add_room(f"old-{n:02d}", created_at=stamp(24 * 30 + n))


def test_a_newest_first_list_is_read_only_as_far_as_the_window(
        sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    add_rooms(sdk, recent=25, old=35)
    sdk.add_recording("recent-24", session_id=SESSION)  # found on page 2, next to rooms older than the window
    code, report, _ = cli(capsys, "reconcile", "--json")
    assert code == 1 and report["failed"] == 0
    assert report["discovery"] == {"rooms": 25, "pages": 2, "examined": 40, "skipped": 0, "order": "newest-first",
                                   "capped": False, "error": None}
    assert [r.query["page"] for r in sdk.requests("/rooms")] == ["1", "2"]  # page 3 of 3 is never fetched
    assert sorted(r["room"] for r in report["rooms"]) == [f"recent-{n:02d}" for n in range(25)]
    assert report["files_new"] == 1

    code, wider, _ = cli(capsys, "reconcile", "--since", "60d", "--kind", "room", "--json")  # a wider window
    assert wider["discovery"]["rooms"] == 60 and wider["discovery"]["pages"] == 3


def test_a_list_in_another_order_is_read_up_to_the_cap(
        sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    sdk.catalog.rooms_order = "oldest"
    sdk.catalog.page_shapes["rooms"] = "cursor"
    add_rooms(sdk, recent=5, old=30)
    code, report, _ = cli(capsys, "reconcile", "--kind", "room", "--json")
    assert report["discovery"] == {"rooms": 5, "pages": 2, "examined": 35, "skipped": 0, "order": "unordered",
                                   "capped": False, "error": None}
    assert sorted(r["room"] for r in report["rooms"]) == [f"recent-{n:02d}" for n in range(5)]

    import archiver.maintenance.reconcile_rooms

    monkeypatch.setattr(archiver.maintenance.reconcile_rooms, "ROOM_SCAN_LIMIT", 20)
    code, capped, log = cli(capsys, "reconcile", "--kind", "room", "--json")
    assert (capped["discovery"]["capped"], capped["discovery"]["examined"], capped["discovery"]["rooms"]) == (
        True, 20, 0)  # the recent rooms come last in this order: beyond the cap
    assert "stopped after 20 rooms" in log and "--room" in log
    assert code == 0  # a capped list is a warning, not a failure: it would fail every run


def test_odd_room_items_are_skipped_and_rooms_without_times_are_kept(
        sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    items = [{"roomId": "fine", "createdAt": stamp(1)}, {"roomId": "timeless"}, {"createdAt": stamp(1)},
             {"roomId": 7}, {"roomId": "bad-time", "createdAt": "last week"}, "junk"]
    sdk.fail_next(200, path="/rooms", body={"pageInfo": {"currentPage": 1, "lastPage": 1}, "data": items})
    code, report, log = cli(capsys, "reconcile", "--kind", "room", "--json")
    assert (report["discovery"]["rooms"], report["discovery"]["skipped"]) == (2, 4)
    assert [r["room"] for r in report["rooms"]] == ["fine", "timeless"]
    assert "field roomId is missing or not text" in log and "field createdAt is not an ISO time" in log
    assert code == 0


def test_a_failing_room_list_is_reported_and_the_ledgers_rooms_still_reconciled(
        sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    sdk.add_recording("named-room", session_id=SESSION)
    sdk.fail_next(502, count=5, path="/rooms")
    code, report, _ = cli(capsys, "reconcile", "--room", "named-room", "--json")
    assert code == 1 and report["failed"] == 1 and report["error"] is None
    assert report["discovery"]["error"].startswith("http_status: GET /v2/rooms: HTTP 502 (gave up after 5 attempts)")
    assert [(r["room"], r["new_files"]) for r in report["rooms"]] == [("named-room", 1)]
    sdk.fail_next(502, count=5, path="/rooms")
    code, table, _ = cli(capsys, "reconcile")
    assert code == 1 and "(room list)" in table and "GET /v2/rooms: HTTP 502" in table
