"""VideoSDKClient against the REST API stand-in (real HTTP; httpx is not mocked)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from archiver.videosdk_api import (
    RecordingInfo,
    VideoSDKAuthError,
    VideoSDKClient,
    VideoSDKError,
    merge_files,
)
from tests.emulators import free_port
from tests.videosdk_stand_in import VideoSDKStandIn

KEY, SECRET = "test-api-key", "test-secret-do-not-leak-0123456789abcdef"


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=KEY, secret=SECRET) as stand_in:
        yield stand_in


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(sdk: VideoSDKStandIn, sleeps: Sleeps) -> Iterator[VideoSDKClient]:
    with VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET, timeout=5, sleep=sleeps) as c:
        yield c


def test_token_shape_and_reuse() -> None:
    now = [1_700_000_000.0]
    c = VideoSDKClient("http://unused.invalid/v2", api_key=KEY, secret=SECRET, clock=lambda: now[0])
    token = c.token()
    assert not token.startswith("Bearer")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims == {"apikey": KEY, "permissions": ["allow_join"], "version": 2, "roles": ["crawler"],
                      "iat": 1_700_000_000, "exp": 1_700_000_600}
    now[0] += 535  # 65 s left: still reused
    assert c.token() == token
    now[0] += 10  # 55 s left: too close to expiry, a new one is minted
    renewed = c.token()
    assert renewed != token
    assert jwt.decode(renewed, SECRET, algorithms=["HS256"], options={"verify_exp": False,
                                                                     "verify_iat": False})["iat"] == 1_700_000_545


@pytest.mark.parametrize("api_key,secret", [(None, SECRET), (KEY, None), (KEY, "")])
def test_missing_credentials(sdk: VideoSDKStandIn, api_key: str | None, secret: str | None) -> None:
    with VideoSDKClient(sdk.api_base, api_key=api_key, secret=secret) as c, pytest.raises(VideoSDKAuthError) as err:
        c.token()
    assert "api_key" in str(err.value) and "VIDEOSDK_SECRET_KEY" in str(err.value)
    assert not err.value.retryable
    assert sdk.requests() == []


def test_from_settings(monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn) -> None:
    settings = SimpleNamespace(videosdk=SimpleNamespace(api_base=sdk.api_base + "/", api_key=KEY, timeout=3.0))
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", SECRET)
    sdk.add_recording("room-s")
    with VideoSDKClient.from_settings(settings) as c:
        assert len(list(c.list_recordings("room-s"))) == 1
    monkeypatch.delenv("VIDEOSDK_SECRET_KEY")
    with VideoSDKClient.from_settings(settings) as c, pytest.raises(VideoSDKAuthError):
        c.token()


def test_pagination(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    ids = [sdk.add_recording("room-1", session_id="s1", size=i + 1) for i in range(45)]
    sdk.add_recording("room-2")  # another room's recording must not appear
    found = list(client.list_recordings("room-1", per_page=20))
    assert [r.id for r in found] == ids
    assert [r.size for r in found] == list(range(1, 46))
    listed = sdk.requests("/recordings")
    assert [(r.query["page"], r.query["perPage"], r.query["roomId"]) for r in listed] == \
        [("1", "20", "room-1"), ("2", "20", "room-1"), ("3", "20", "room-1")]
    assert all("sessionId" not in r.query and r.authorization and not r.authorization.startswith("Bearer")
               for r in listed)


def test_recording_fields_and_session_filter(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    rid = sdk.add_recording("room-1", session_id="sess-a", file_path="uploads/videos/x.mp4",
                            file_url="https://cdn.videosdk.live/uploads/videos/x.mp4", size=17023255,
                            created_at="2022-01-06T13:07:21.187Z")
    sdk.add_recording("room-1", session_id="sess-b")
    expected = RecordingInfo(id=rid, room_id="room-1", session_id="sess-a", file_path="uploads/videos/x.mp4",
                             file_url="https://cdn.videosdk.live/uploads/videos/x.mp4", size=17023255,
                             created_at=datetime(2022, 1, 6, 13, 7, 21, 187000, tzinfo=UTC), file_type="video")
    assert list(client.list_recordings("room-1", session_id="sess-a")) == [expected]
    assert sdk.requests("/recordings")[-1].query["sessionId"] == "sess-a"
    assert client.get_recording(rid) == expected


def test_items_without_file_url_are_skipped(sdk: VideoSDKStandIn, client: VideoSDKClient,
                                            caplog: pytest.LogCaptureFixture) -> None:
    good = sdk.add_recording("room-1")
    sdk.add_recording("room-1", file_url="")
    sdk.fail_next(200, path="/recordings", body={
        "pageInfo": {"currentPage": 1, "perPage": 20, "lastPage": 1, "total": 4},
        "data": [{"id": "no-file", "roomId": "room-1"}, "junk",
                 {"id": "no-url", "roomId": "room-1", "file": {"size": 3}},
                 {"id": good, "roomId": "room-1", "file": {"fileUrl": "https://cdn.videosdk.live/a.mp4"}}]})
    assert [r.id for r in client.list_recordings("room-1")] == [good]
    assert "no-url" in caplog.text and "file.fileUrl" in caplog.text
    assert [r.id for r in client.list_recordings("room-1")] == [good]  # the stand-in's own item with fileUrl ""


def test_429_then_success_honours_retry_after(sdk: VideoSDKStandIn, client: VideoSDKClient,
                                              sleeps: Sleeps) -> None:
    sdk.add_recording("room-1")
    sdk.fail_next(429, count=2, retry_after=7)
    assert len(list(client.list_recordings("room-1"))) == 1
    assert sleeps == [7.0, 7.0]
    assert len(sdk.requests("/recordings")) == 3


def test_retry_after_is_capped(sdk: VideoSDKStandIn, client: VideoSDKClient, sleeps: Sleeps) -> None:
    sdk.fail_next(503, retry_after=3600)
    sdk.add_merge("m1", {"fileUrl": "https://cdn.videosdk.live/m.mp3"})
    assert client.get_merge("m1") == {"fileUrl": "https://cdn.videosdk.live/m.mp3"}
    assert sleeps == [60.0]


def test_503_until_attempts_run_out(sdk: VideoSDKStandIn, sleeps: Sleeps) -> None:
    sdk.fail_next(503, count=10)
    with VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET, max_attempts=4, backoff=0.5,
                        sleep=sleeps) as c, pytest.raises(VideoSDKError) as err:
        c.get_recording("abc")
    assert err.value.retryable and err.value.code == "http_status"
    assert "GET /recordings/abc" in str(err.value) and "503" in str(err.value)
    assert len(sdk.requests()) == 4
    assert len(sleeps) == 3  # no sleep after the last attempt
    assert all(0 <= delay <= 0.5 * 2 ** n for n, delay in enumerate(sleeps))  # full jitter under the ceiling


def test_timeout_and_connection_errors_are_retried(sdk: VideoSDKStandIn, sleeps: Sleeps) -> None:
    rid = sdk.add_recording("room-1")
    sdk.fail_next(200, delay=1.0)
    with VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET, timeout=0.2, sleep=sleeps) as c:
        assert c.get_recording(rid).id == rid
    assert len(sleeps) == 1
    dead = f"http://127.0.0.1:{free_port()}/v2"
    with VideoSDKClient(dead, api_key=KEY, secret=SECRET, max_attempts=3, sleep=sleeps) as c, \
            pytest.raises(VideoSDKError) as err:
        c.delete_recording(rid)
    assert err.value.code == "connection" and err.value.retryable
    assert len(sleeps) == 3


@pytest.mark.parametrize("status,code", [(401, "unauthorized"), (403, "forbidden")])
def test_auth_errors_are_not_retried_and_leak_nothing(sdk: VideoSDKStandIn, client: VideoSDKClient,
                                                      sleeps: Sleeps, status: int, code: str) -> None:
    sdk.fail_next(status, count=3)
    with pytest.raises(VideoSDKAuthError) as err:
        client.get_recording("abc")
    message = str(err.value)
    assert err.value.code == code and not err.value.retryable
    assert "api_key" in message and "VIDEOSDK_SECRET_KEY" in message
    assert SECRET not in message and client.token() not in message
    assert sleeps == [] and len(sdk.requests()) == 1


def test_wrong_secret_is_refused_by_the_stand_in(sdk: VideoSDKStandIn) -> None:
    wrong = "wrong-secret-but-long-enough-for-hs256!"
    with VideoSDKClient(sdk.api_base, api_key=KEY, secret=wrong, sleep=lambda _: None) as c, \
            pytest.raises(VideoSDKAuthError) as err:
        list(c.list_recordings("room-1"))
    assert "wrong-secret" not in str(err.value) and "401" in str(err.value)
    good = VideoSDKClient("http://unused.invalid", api_key=KEY, secret=SECRET).token()
    expired = jwt.encode({"apikey": KEY, "iat": int(time.time()) - 700, "exp": int(time.time()) - 100}, SECRET)
    for header in (f"Bearer {good}", expired):  # VideoSDK wants the bare token, and a live one
        assert httpx.get(f"{sdk.api_base}/recordings/x", headers={"Authorization": header}).status_code == 401
    assert httpx.get(f"{sdk.api_base}/recordings/x", headers={"Authorization": good}).status_code == 404


def test_404_on_get_and_delete(client: VideoSDKClient, sleeps: Sleeps) -> None:
    for call in (client.get_recording, client.delete_recording):
        with pytest.raises(VideoSDKError) as err:
            call("0123456789abcdef01234567")
        assert err.value.code == "not_found" and not err.value.retryable
    assert sleeps == []


def test_other_4xx_is_not_retried(sdk: VideoSDKStandIn, client: VideoSDKClient, sleeps: Sleeps) -> None:
    sdk.fail_next(400, count=5)
    with pytest.raises(VideoSDKError) as err:
        client.delete_recording("abc")
    assert err.value.code == "http_status" and not err.value.retryable
    assert "DELETE /recordings/abc" in str(err.value) and sleeps == []


def test_delete_removes_it(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    keep, gone = sdk.add_recording("room-1"), sdk.add_recording("room-1")
    client.delete_recording(gone)
    assert sdk.requests()[-1].method == "DELETE"
    assert [r.id for r in client.list_recordings("room-1")] == [keep]
    with pytest.raises(VideoSDKError, match="404"):
        client.get_recording(gone)


def test_ids_are_quoted_in_the_path(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    sdk.add_recording("room/1?x=&y", recording_id="a/b")
    assert client.get_recording("a/b").room_id == "room/1?x=&y"
    assert sdk.requests()[-1].path == "/v2/recordings/a%2Fb"
    assert [r.id for r in client.list_recordings("room/1?x=&y")] == ["a/b"]
    assert sdk.requests()[-1].query["roomId"] == "room/1?x=&y"
    sdk.add_merge("m 1#", {"fileUrl": "https://cdn.videosdk.live/m.mp3"})
    assert client.get_merge("m 1#")
    assert sdk.requests()[-1].path == "/v2/recordings/participant/merge/m%201%23"


@pytest.mark.parametrize("bad", ["", "   ", "..", ".", None, 5])
def test_ids_must_be_non_empty_strings(client: VideoSDKClient, sdk: VideoSDKStandIn, bad: object) -> None:
    with pytest.raises(ValueError):
        client.delete_recording(bad)  # type: ignore[arg-type]
    if bad not in (".", ".."):  # a dot is a valid room id: it travels in the query string
        with pytest.raises(ValueError):
            list(client.list_recordings(bad))  # type: ignore[arg-type]
    assert sdk.requests() == []


@pytest.mark.parametrize("key_format,marker", [("pkcs1", "BEGIN RSA PUBLIC KEY"), ("spki", "BEGIN PUBLIC KEY")])
def test_public_key_verifies_the_stand_ins_signature(key_format: str, marker: str) -> None:
    with VideoSDKStandIn(api_key=KEY, secret=SECRET, key_format=key_format) as sdk:  # type: ignore[arg-type]
        body = b'{"webhookType":"recording-stopped","data":{}}'
        for _ in range(2):  # and again after a rotation: the new key, not the old one
            with VideoSDKClient(sdk.api_base) as anonymous:  # no credentials needed for this endpoint
                pem = anonymous.public_key()
            assert marker in pem
            key = serialization.load_pem_public_key(pem.encode())
            key.verify(base64.b64decode(sdk.sign(body)), body, padding.PKCS1v15(), hashes.SHA256())  # type: ignore
            sdk.rotate_key()
        assert sdk.requests()[0].authorization is None


def test_public_key_sends_token_when_it_has_one(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    client.public_key()
    assert sdk.requests()[-1].authorization == client.token()


@pytest.mark.parametrize("body", [{"publicKey": ""}, {"publicKey": 42}, {"key": "x"}])
def test_public_key_response_is_validated(sdk: VideoSDKStandIn, client: VideoSDKClient, body: object) -> None:
    sdk.fail_next(200, body=body)
    with pytest.raises(VideoSDKError, match="publicKey") as err:
        client.public_key()
    assert err.value.code == "bad_response"


PAGE = {"currentPage": 1, "perPage": 20, "lastPage": 1, "total": 0}


@pytest.mark.parametrize("body,field", [
    ({"pageInfo": PAGE, "data": {"id": "x"}}, "'data'"),
    ({"pageInfo": PAGE}, "'data'"),
    ({"data": []}, "'pageInfo'"),
    ({"pageInfo": {**PAGE, "lastPage": "2"}, "data": []}, "'pageInfo.lastPage'"),
    (b"<html>gateway</html>", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
])
def test_malformed_list_responses(sdk: VideoSDKStandIn, client: VideoSDKClient, sleeps: Sleeps,
                                  body: object, field: str) -> None:
    sdk.fail_next(200, body=body)
    with pytest.raises(VideoSDKError) as err:
        list(client.list_recordings("room-1"))
    assert err.value.code == "bad_response" and not err.value.retryable
    assert field in str(err.value) and "GET /recordings" in str(err.value)
    assert "room-1" not in str(err.value) and sleeps == []  # no query string in the message


def test_malformed_single_recording(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    sdk.fail_next(200, body={"id": "abc", "roomId": "r", "file": {"filePath": "x.mp4"}})
    with pytest.raises(VideoSDKError, match=r"file\.fileUrl") as err:
        client.get_recording("abc")
    assert err.value.code == "bad_response"
    sdk.fail_next(200, body=["not", "an", "object"])
    with pytest.raises(VideoSDKError, match="not a JSON object"):
        client.get_merge("m1")


ITEM = {"id": "61d6e834e1326304a9e73dac", "roomId": "abc-xyzw-lmno", "sessionId": "s1",
        "createdAt": "2022-01-06T13:07:21Z",
        "file": {"type": "audio", "size": 1234, "filePath": "/encoded/audios/x.mp3",
                 "fileUrl": "https://cdn.videosdk.live/encoded/audios/x.mp3"}}


def test_merge_files_list_item_shape() -> None:
    assert merge_files(ITEM) == [RecordingInfo(
        id=ITEM["id"], room_id="abc-xyzw-lmno", session_id="s1", file_path="/encoded/audios/x.mp3",
        file_url="https://cdn.videosdk.live/encoded/audios/x.mp3", size=1234,
        created_at=datetime(2022, 1, 6, 13, 7, 21, tzinfo=UTC), file_type="audio")]


def test_merge_files_flat_shape() -> None:
    [info] = merge_files({"meetingId": "room-9", "fileUrl": "https://cdn.videosdk.live/merge/y.mp3",
                          "size": True, "createdAt": "yesterday"})
    assert (info.id, info.room_id, info.session_id) == ("", "room-9", None)
    assert info.file_path == "merge/y.mp3"  # from the URL when filePath is absent
    assert info.size is None and info.created_at is None and info.file_type is None


def test_merge_files_wrapped_shapes() -> None:
    assert [f.id for f in merge_files({"data": ITEM})] == [ITEM["id"]]
    flat = {"fileUrl": "https://cdn.videosdk.live/b.mp3", "filePath": "b.mp3", "size": 5}
    found = merge_files({"data": [ITEM, "junk", {"file": {}}, flat]})
    assert [(f.file_path, f.size) for f in found] == [("/encoded/audios/x.mp3", 1234), ("b.mp3", 5)]


@pytest.mark.parametrize("payload", [{}, {"data": None}, {"data": "x"}, {"status": "completed"},
                                     {"file": {"fileUrl": ""}}, {"fileUrl": 7}, {"data": [1, 2]}, [ITEM], "x"])
def test_merge_files_garbage(payload: object) -> None:
    assert merge_files(payload) == []  # type: ignore[arg-type]


def test_merge_end_to_end(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    sdk.add_merge("4f1c", {"data": ITEM})
    assert [f.file_url for f in merge_files(client.get_merge("4f1c"))] == [ITEM["file"]["fileUrl"]]  # type: ignore
    with pytest.raises(VideoSDKError) as err:
        client.get_merge("unknown")
    assert err.value.code == "not_found"
