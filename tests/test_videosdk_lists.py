"""VideoSDK's lists through VideoSDKClient against the stand-in: every recording kind at its own path
and in its documented item shape, every paging shape, rooms and sessions, and servers that would keep
a page loop going forever (real HTTP; the loop guard is also tried on a plain function)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from archiver.domain.recordings import RecordingKind
from archiver.videosdk.api import VideoSDKClient, VideoSDKError
from archiver.videosdk.items import files_of
from archiver.videosdk.paging import PagingError, walk
from tests.videosdk_stand_in import VideoSDKStandIn

KEY, SECRET = "list-api-key", "list-secret-0123456789abcdef0123456789"
CDN = "https://cdn.videosdk.live"
SHAPES = ["pageInfo", "totalPages", "pagination", "cursor"]


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=KEY, secret=SECRET) as stand_in:
        yield stand_in


@pytest.fixture
def client(sdk: VideoSDKStandIn) -> Iterator[VideoSDKClient]:
    with VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET, timeout=5, sleep=lambda _: None) as c:
        yield c


def add_one(sdk: VideoSDKStandIn, kind: RecordingKind, room: str, n: int = 0) -> str:
    """One recording of ``kind`` in the stand-in's documented shape; returns its id."""
    session = "s1"
    name = f"{kind}-{n}"
    if kind is RecordingKind.ROOM:
        return sdk.add_recording(room, session_id=session, file_path=f"uploads/videos/{name}.mp4")
    if kind is RecordingKind.COMPOSITE:
        return sdk.add_composite(room, session_id=session, file_path=f"composite/{name}.mp4")
    if kind is RecordingKind.TRANSCODING:
        return sdk.add_transcoding(room, session_id=session, file_path=f"transcoded/{name}.mp4")
    if kind in (RecordingKind.PARTICIPANT, RecordingKind.TRACK):
        folder = f"individual-recordings/{session}/p1/" + ("audio/" if kind is RecordingKind.TRACK else "")
        return sdk.add_participant_recording(
            room, session_id=session, participant_id="p1", track="audio" if kind is RecordingKind.TRACK else None,
            files=[(f"{folder}{name}-a.webm", f"{CDN}/{folder}{name}-a.webm", 10),
                   (f"{folder}{name}-b.webm", f"{CDN}/{folder}{name}-b.webm", 20)])
    if kind is RecordingKind.MERGE:
        return sdk.add_merge_recording(room, session_id=session, file_path=f"merged/{name}.mp3",
                                       file_url=f"{CDN}/merged/{name}.mp3", size=30)
    return sdk.add_transcript(room, session_id=session, transcription={"json": f"{CDN}/t/{name}.json",
                                                                       "txt": f"{CDN}/t/{name}.txt"},
                              summary={"txt": f"{CDN}/t/{name}.txt"})


PATHS = {RecordingKind.ROOM: "/v2/recordings", RecordingKind.PARTICIPANT: "/v2/recordings/participant",
         RecordingKind.TRACK: "/v2/recordings/participant/track",
         RecordingKind.MERGE: "/v2/recordings/participant/merge", RecordingKind.COMPOSITE: "/v2/recordings/composite",
         RecordingKind.TRANSCODING: "/v2/transcodings", RecordingKind.TRANSCRIPT: "/ai/v1/post-transcriptions"}
FILES = {RecordingKind.PARTICIPANT: 2, RecordingKind.TRACK: 2, RecordingKind.TRANSCRIPT: 3}


@pytest.mark.parametrize("kind", list(RecordingKind))
def test_every_kind_is_listed_from_its_path_in_its_shape(sdk: VideoSDKStandIn, client: VideoSDKClient,
                                                         kind: RecordingKind) -> None:
    rid = add_one(sdk, kind, "room-1")
    add_one(sdk, kind, "room-2", 1)  # another room's recording must not appear
    [item] = list(client.list_items(kind, "room-1"))
    assert item["id"] == rid
    [request] = sdk.requests(PATHS[kind])
    assert (request.query["roomId"], request.query["page"], request.query["perPage"]) == ("room-1", "1", "20")
    files = files_of(kind, item)
    assert len(files) == FILES.get(kind, 1)
    assert {(f.meeting_id, f.session_id, f.recording_id, f.recording_kind) for f in files} == {
        ("room-1", "s1", rid, kind)}
    if kind in (RecordingKind.PARTICIPANT, RecordingKind.TRACK):
        assert [f.size for f in files] == [10, 20] and all(f.file_id for f in files)  # files[]._id
        assert {(f.participant_id, f.kind) for f in files} == {("p1", "audio" if kind is RecordingKind.TRACK else None)}
    if kind is RecordingKind.TRANSCRIPT:  # the summary's txt is a second file beside the transcript's txt
        assert sorted((f.kind, f.filename) for f in files) == [
            ("summary", "transcript-0.txt"), ("transcript", "transcript-0.json"), ("transcript", "transcript-0.txt")]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", [RecordingKind.ROOM, RecordingKind.MERGE])
def test_every_paging_shape_lists_everything_once(sdk: VideoSDKStandIn, client: VideoSDKClient, shape: str,
                                                  kind: RecordingKind) -> None:
    sdk.catalog.page_shapes[str(kind)] = shape
    ids = [add_one(sdk, kind, "room-1", n) for n in range(45)]
    assert [item["id"] for item in client.list_items(kind, "room-1")] == ids
    requests = sdk.requests(PATHS[kind])
    assert len(requests) == 3
    if shape == "cursor":  # page 1 by number, then the opaque cursor each page handed out
        assert "cursor" not in requests[0].query and all("cursor" in r.query for r in requests[1:])
    else:
        assert [r.query["page"] for r in requests] == ["1", "2", "3"]


@pytest.mark.parametrize("shape", ["pageInfo", "cursor"])
def test_rooms_and_sessions_are_listed(sdk: VideoSDKStandIn, client: VideoSDKClient, shape: str) -> None:
    sdk.catalog.page_shapes["rooms"] = shape
    for n in range(25):
        sdk.add_room(f"room-{n:02d}", created_at=f"2026-11-{n + 1:02d}T10:00:00.000Z")
    sdk.add_recording("room-03", session_id="sess-a")
    pages = list(client.room_pages())
    assert [len(p) for p in pages] == [20, 5]
    assert [r["roomId"] for p in pages for r in p] == [f"room-{n:02d}" for n in range(24, -1, -1)]  # newest first
    assert [s["id"] for s in client.list_sessions("room-03")] == ["sess-a"]
    assert sdk.requests("/sessions")[-1].query["roomId"] == "room-03"


PAGE = {"currentPage": 1, "perPage": 20, "lastPage": 1, "total": 0}


@pytest.mark.parametrize(("body", "field"), [
    ({"pageInfo": PAGE, "data": {"id": "x"}}, "'data' is not a list"),
    ({"pageInfo": PAGE}, "'data' is missing"),
    ({"data": []}, "'pageInfo'"),
    ({"pageInfo": "1", "data": []}, "'pageInfo' is not an object"),
    ({"pageInfo": {**PAGE, "lastPage": "2"}, "data": []}, "'pageInfo.lastPage'"),
    ({"pageInfo": {**PAGE, "total": -1}, "data": []}, "'pageInfo.total'"),
    ({"pageInfo": {"currentPage": 1}, "data": []}, "'pageInfo.lastPage' (or 'totalPages') is missing"),
    ({"pagination": {"page": 1, "totalPages": True}, "data": []}, "'pagination.totalPages'"),
    ({"data": [], "nextCursor": 5}, "'nextCursor' is not text"),
    ({"pageInfo": {**PAGE, "nextCursor": ["x"]}, "data": []}, "'pageInfo.nextCursor' is not text"),
    (b"<html>gateway</html>", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
])
def test_malformed_list_responses_name_the_field(sdk: VideoSDKStandIn, client: VideoSDKClient, body: object,
                                                 field: str) -> None:
    sdk.fail_next(200, body=body)
    with pytest.raises(VideoSDKError) as err:
        list(client.list_items(RecordingKind.TRACK, "room-1"))
    assert err.value.code == "bad_response" and not err.value.retryable
    assert field in str(err.value) and "GET /v2/recordings/participant/track" in str(err.value)
    assert "room-1" not in str(err.value)  # no query string in the message


def test_merge_items_are_read_from_recordings_and_other_lists_from_data(sdk: VideoSDKStandIn,
                                                                        client: VideoSDKClient) -> None:
    sdk.fail_next(200, path="/recordings/participant/merge", body={"pageInfo": PAGE, "recordings": [{"id": "m"}]})
    assert [i["id"] for i in client.list_items(RecordingKind.MERGE, "room-1")] == ["m"]
    sdk.fail_next(200, path="/recordings", body={"pageInfo": PAGE, "recordings": [{"id": "m"}]})
    with pytest.raises(VideoSDKError, match="'data' is missing"):
        list(client.list_items(RecordingKind.ROOM, "room-1"))


def page(items: list[Any], **extra: Any) -> dict[str, Any]:
    return {"data": items, **extra}


@pytest.mark.parametrize(("answers", "message"), [
    # a cursor that comes back: page 3 hands out page 2's cursor again
    ([page([{"id": "a"}], nextCursor="c2"), page([{"id": "b"}], nextCursor="c3"), page([{"id": "c"}], nextCursor="c2")],
     "nextCursor repeats"),
    # lastPage says more, but the server ignores ?page= and answers page 1 again
    ([page([{"id": "a"}], pageInfo={"currentPage": 1, "lastPage": 9})] * 2, "asked for page 2"),
    ([page([{"id": "a"}], pageInfo={"lastPage": 9})] * 2, "only items already listed"),
    ([page([{"id": "a"}], pagination={"page": 1, "totalPages": 4}), page([{"id": "b"}], pagination={"page": 3,
                                                                                                    "totalPages": 4})],
     "asked for page 2, the answer says it is page 3"),
])
def test_a_server_that_leads_in_circles_is_a_bad_response(sdk: VideoSDKStandIn, client: VideoSDKClient,
                                                          answers: list[dict[str, Any]], message: str) -> None:
    for answer in answers:
        sdk.fail_next(200, path="/recordings/composite", body=answer)
    with pytest.raises(VideoSDKError, match=message) as err:
        list(client.list_items(RecordingKind.COMPOSITE, "room-1"))
    assert err.value.code == "bad_response"
    assert len(sdk.requests("/recordings/composite")) == len(answers)


def test_a_server_that_always_has_another_page_is_stopped() -> None:
    def endless(params: dict[str, Any]) -> dict[str, Any]:  # new items and a higher lastPage every time
        number = int(params["page"])
        return {"pageInfo": {"currentPage": number, "lastPage": number + 1}, "data": [{"id": f"i{number}"}]}

    pages = walk(endless, max_pages=50)
    with pytest.raises(PagingError, match="more than 50 pages"):
        for _ in pages:
            pass


def test_paging_ends_on_an_empty_page_or_a_null_cursor(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    sdk.fail_next(200, path="/recordings", body={"pageInfo": {"currentPage": 1, "lastPage": 7}, "data": []})
    assert list(client.list_items(RecordingKind.ROOM, "room-1")) == []
    sdk.fail_next(200, path="/transcodings", body=page([{"id": "a"}], nextCursor="x"))
    sdk.fail_next(200, path="/transcodings", body=page([{"id": "b"}], nextCursor=None))
    assert [i["id"] for i in client.list_items(RecordingKind.TRANSCODING, "room-1")] == ["a", "b"]
    assert [r.query.get("cursor") for r in sdk.requests("/transcodings")] == [None, "x"]
