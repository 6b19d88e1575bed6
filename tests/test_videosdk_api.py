"""VideoSDKClient's transport against the REST API stand-in (real HTTP; httpx is not mocked): the token,
retries and backoff, error codes, ids in paths, the webhook key. Lists and paging: test_videosdk_lists."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from archiver.domain.recordings import RecordingKind
from archiver.videosdk.api import VideoSDKAuthError, VideoSDKClient, VideoSDKError
from tests.emulators import free_port
from tests.videosdk_stand_in import VideoSDKStandIn

KEY, SECRET = "test-api-key", "test-secret-do-not-leak-0123456789abcdef"
ROOM, MERGE, TRACK = RecordingKind.ROOM, RecordingKind.MERGE, RecordingKind.TRACK


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
        assert len(list(c.list_items(ROOM, "room-s"))) == 1
    monkeypatch.delenv("VIDEOSDK_SECRET_KEY")
    with VideoSDKClient.from_settings(settings) as c, pytest.raises(VideoSDKAuthError):
        c.token()


def test_429_then_success_honours_retry_after(sdk: VideoSDKStandIn, client: VideoSDKClient,
                                              sleeps: Sleeps) -> None:
    sdk.add_recording("room-1")
    sdk.fail_next(429, count=2, retry_after=7)
    assert len(list(client.list_items(ROOM, "room-1"))) == 1
    assert sleeps == [7.0, 7.0]
    assert len(sdk.requests("/recordings")) == 3


def test_retry_after_is_capped(sdk: VideoSDKStandIn, client: VideoSDKClient, sleeps: Sleeps) -> None:
    sdk.fail_next(503, retry_after=3600)
    sdk.add_merge("m1", {"fileUrl": "https://cdn.videosdk.live/m.mp3"})
    assert client.get_item(MERGE, "m1") == {"fileUrl": "https://cdn.videosdk.live/m.mp3"}
    assert sleeps == [60.0]


def test_503_until_attempts_run_out(sdk: VideoSDKStandIn, sleeps: Sleeps) -> None:
    sdk.fail_next(503, count=10)
    with VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET, max_attempts=4, backoff=0.5,
                        sleep=sleeps) as c, pytest.raises(VideoSDKError) as err:
        c.get_item(ROOM, "abc")
    assert err.value.retryable and err.value.code == "http_status"
    assert "GET /v2/recordings/abc" in str(err.value) and "503" in str(err.value)
    assert len(sdk.requests()) == 4
    assert len(sleeps) == 3  # no sleep after the last attempt
    assert all(0 <= delay <= 0.5 * 2 ** n for n, delay in enumerate(sleeps))  # full jitter under the ceiling


def test_timeout_and_connection_errors_are_retried(sdk: VideoSDKStandIn, sleeps: Sleeps) -> None:
    rid = sdk.add_recording("room-1")
    sdk.fail_next(200, delay=1.0)
    with VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET, timeout=0.2, sleep=sleeps) as c:
        assert c.get_item(ROOM, rid)["id"] == rid
    assert len(sleeps) == 1
    dead = f"http://127.0.0.1:{free_port()}/v2"
    with VideoSDKClient(dead, api_key=KEY, secret=SECRET, max_attempts=3, sleep=sleeps) as c, \
            pytest.raises(VideoSDKError) as err:
        c.delete_item(ROOM, rid)
    assert err.value.code == "connection" and err.value.retryable
    assert len(sleeps) == 3


@pytest.mark.parametrize("status,code", [(401, "unauthorized"), (403, "forbidden")])
def test_auth_errors_are_not_retried_and_leak_nothing(sdk: VideoSDKStandIn, client: VideoSDKClient,
                                                      sleeps: Sleeps, status: int, code: str) -> None:
    sdk.fail_next(status, count=3)
    with pytest.raises(VideoSDKAuthError) as err:
        client.get_item(ROOM, "abc")
    message = str(err.value)
    assert err.value.code == code and not err.value.retryable
    assert "api_key" in message and "VIDEOSDK_SECRET_KEY" in message
    assert SECRET not in message and client.token() not in message
    assert sleeps == [] and len(sdk.requests()) == 1


def test_wrong_secret_is_refused_by_the_stand_in(sdk: VideoSDKStandIn) -> None:
    wrong = "wrong-secret-but-long-enough-for-hs256!"
    with VideoSDKClient(sdk.api_base, api_key=KEY, secret=wrong, sleep=lambda _: None) as c, \
            pytest.raises(VideoSDKAuthError) as err:
        list(c.list_items(ROOM, "room-1"))
    assert "wrong-secret" not in str(err.value) and "401" in str(err.value)
    good = VideoSDKClient("http://unused.invalid", api_key=KEY, secret=SECRET).token()
    expired = jwt.encode({"apikey": KEY, "iat": int(time.time()) - 700, "exp": int(time.time()) - 100}, SECRET)
    for header in (f"Bearer {good}", expired):  # VideoSDK wants the bare token, and a live one
        assert httpx.get(f"{sdk.api_base}/recordings/x", headers={"Authorization": header}).status_code == 401
    assert httpx.get(f"{sdk.api_base}/recordings/x", headers={"Authorization": good}).status_code == 404


def test_404_on_get_and_delete(client: VideoSDKClient, sleeps: Sleeps) -> None:
    for call in (client.get_item, client.delete_item):
        with pytest.raises(VideoSDKError) as err:
            call(TRACK, "0123456789abcdef01234567")
        assert err.value.code == "not_found" and not err.value.retryable
    assert sleeps == []


def test_other_4xx_is_not_retried(sdk: VideoSDKStandIn, client: VideoSDKClient, sleeps: Sleeps) -> None:
    sdk.fail_next(400, count=5)
    with pytest.raises(VideoSDKError) as err:
        client.delete_item(ROOM, "abc")
    assert err.value.code == "http_status" and not err.value.retryable
    assert "DELETE /v2/recordings/abc" in str(err.value) and sleeps == []


def test_delete_removes_it(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    keep, gone = sdk.add_recording("room-1"), sdk.add_recording("room-1")
    client.delete_item(ROOM, gone)
    assert sdk.requests()[-1].method == "DELETE"
    assert [r["id"] for r in client.list_items(ROOM, "room-1")] == [keep]
    with pytest.raises(VideoSDKError, match="404"):
        client.get_item(ROOM, gone)


def test_ids_are_quoted_in_the_path(sdk: VideoSDKStandIn, client: VideoSDKClient) -> None:
    sdk.add_recording("room/1?x=&y", recording_id="a/b")
    assert client.get_item(ROOM, "a/b")["roomId"] == "room/1?x=&y"
    assert sdk.requests()[-1].path == "/v2/recordings/a%2Fb"
    assert [r["id"] for r in client.list_items(ROOM, "room/1?x=&y")] == ["a/b"]
    assert sdk.requests()[-1].query["roomId"] == "room/1?x=&y"
    sdk.add_merge("m 1#", {"fileUrl": "https://cdn.videosdk.live/m.mp3"})
    assert client.get_item(MERGE, "m 1#")
    assert sdk.requests()[-1].path == "/v2/recordings/participant/merge/m%201%23"


@pytest.mark.parametrize("bad", ["", "   ", "..", ".", None, 5])
def test_ids_must_be_non_empty_strings(client: VideoSDKClient, sdk: VideoSDKStandIn, bad: object) -> None:
    with pytest.raises(ValueError):
        client.delete_item(ROOM, bad)  # type: ignore[arg-type]
    if bad not in (".", ".."):  # a dot is a valid room id: it travels in the query string
        with pytest.raises(ValueError):
            client.list_items(TRACK, bad)  # type: ignore[arg-type]  (refused at the call, not when iterated)
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


@pytest.mark.parametrize("kind", [RecordingKind.MERGE, RecordingKind.TRANSCODING, RecordingKind.TRANSCRIPT])
def test_kinds_without_a_documented_delete_are_never_sent_one(client: VideoSDKClient, sdk: VideoSDKStandIn,
                                                              kind: RecordingKind) -> None:
    with pytest.raises(ValueError, match=f"no delete for {kind}"):
        client.delete_item(kind, "abc")
    assert sdk.requests() == []


@pytest.mark.parametrize(("kind", "path"), [
    (RecordingKind.PARTICIPANT, "/v2/recordings/participant/"),
    (RecordingKind.TRACK, "/v2/recordings/participant/track/"),
    (RecordingKind.COMPOSITE, "/v2/recordings/composite/"), (RecordingKind.TRANSCODING, "/v2/transcodings/"),
    (RecordingKind.TRANSCRIPT, "/ai/v1/post-transcriptions/")])
def test_each_kind_is_fetched_from_its_own_path(sdk: VideoSDKStandIn, client: VideoSDKClient,
                                                kind: RecordingKind, path: str) -> None:
    with pytest.raises(VideoSDKError) as err:
        client.get_item(kind, "x1")
    assert err.value.code == "not_found" and sdk.requests()[-1].path == path + "x1"
    assert f"GET {path}x1" in str(err.value)
