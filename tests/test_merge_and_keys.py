"""merge-recording-completed lookups, and the webhook key fetched (and rotated) from the API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_client

from archiver.config import load_settings
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger, utcnow
from archiver.merge import MergeNotUnderstood, resolve_merge
from archiver.runtime import Runtime
from archiver.videosdk_api import VideoSDKClient
from tests.receiver_harness import running_receiver, write_receiver_config
from tests.videosdk_stand_in import VideoSDKStandIn

KEY, SECRET = "demo-api-key", "demo-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=KEY, secret=SECRET) as stand_in:
        yield stand_in


def stopped(meeting: str) -> dict:
    return {"webhookType": "recording-stopped",
            "data": {"meetingId": meeting, "sessionId": "s1", "filePath": "/encoded/videos/a.mp4",
                     "fileUrl": "https://cdn.videosdk.live/encoded/videos/a.mp4"}}


def test_the_receiver_fetches_the_key_and_follows_a_rotation(tmp_path: Path, redis_url: str,
                                                             sdk: VideoSDKStandIn) -> None:
    redis_client.Redis.from_url(redis_url).flushdb()
    config = write_receiver_config(tmp_path, redis_url,
                                   f'[videosdk]\napi_base = "{sdk.api_base}"\nkey_refetch_seconds = 0.5')
    with running_receiver(config, None) as receiver:
        first = json.dumps(stopped("before-rotation")).encode()
        assert receiver.post(first, signature=sdk.sign(first)).status_code == 202
        old = json.dumps(stopped("old-key")).encode()
        old_signature = sdk.sign(old)
        sdk.rotate_key()
        time.sleep(0.6)  # past key_refetch_seconds since the first fetch
        second = json.dumps(stopped("after-rotation")).encode()
        assert receiver.post(second, signature=sdk.sign(second)).status_code == 202  # refetched once
        assert receiver.post(old, signature=old_signature).status_code == 401  # the retired key no longer works
    assert len(sdk.requests("/v2/public/rsa-public-key")) == 2


def merge_runtime(tmp_path: Path, api_base: str) -> Runtime:
    (tmp_path / "archiver.toml").write_text(f"""
database_url = "sqlite:///{tmp_path}/ledger.db"
[videosdk]
api_base = "{api_base}"
api_key = "{KEY}"
[[destinations]]
name = "local"
url = "file://{tmp_path}/archive/{{meetingId}}/{{kind}}/"
events = ["merge-recording-completed"]
""")
    settings = load_settings(tmp_path / "archiver.toml", environ={})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    return Runtime(settings=settings, ledger=Ledger(engine))


def record_merge_event(runtime: Runtime, merge_id: str) -> int:
    body = json.dumps({"webhookType": "merge-recording-completed",
                       "data": {"id": merge_id, "meetingId": "jvsg-8rjn-j304", "sessionId": "s1"}})
    accepted = runtime.ledger.accept(body=body, dedupe_key=merge_id, webhook_type="merge-recording-completed",
                                     meeting_id="jvsg-8rjn-j304", session_id="s1", received_at=utcnow(),
                                     verified=True, source="webhook", files=[])
    return accepted.event_id


def test_a_merge_is_looked_up_and_archived_once(tmp_path: Path, sdk: VideoSDKStandIn) -> None:
    runtime = merge_runtime(tmp_path, sdk.api_base)
    merge_id = "0b1e7f0a-5d1c-4a57-9a55-1f0f1a2b3c4d"
    sdk.add_merge(merge_id, {"id": merge_id, "roomId": "jvsg-8rjn-j304", "sessionId": "s1",
                             "file": {"filePath": "merged/audio/m1.mp3", "size": 4096,
                                      "fileUrl": "https://cdn.videosdk.live/merged/audio/m1.mp3"}})
    event_id = record_merge_event(runtime, merge_id)
    published: list[list[int]] = []
    client = VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET)
    first = resolve_merge(runtime, event_id, client, lambda ids: published.append(list(ids)))
    again = resolve_merge(runtime, event_id, client, lambda ids: published.append(list(ids)))
    assert len(first.created) == 1 and again.created == () and again.duplicate
    [job] = runtime.ledger.jobs(meeting_id="jvsg-8rjn-j304")
    assert (job.object_key, job.size, job.kind) == ("jvsg-8rjn-j304/merged/m1.mp3", 4096, "merged")
    assert published == [list(first.created)]


def test_a_merge_payload_without_a_file_is_reported(tmp_path: Path, sdk: VideoSDKStandIn) -> None:
    runtime = merge_runtime(tmp_path, sdk.api_base)
    sdk.add_merge("m-2", {"status": "processing"})
    event_id = record_merge_event(runtime, "m-2")
    with pytest.raises(MergeNotUnderstood, match="names no file"):
        resolve_merge(runtime, event_id, VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET), lambda ids: None)


def test_a_replayed_merge_event_starts_its_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  sdk: VideoSDKStandIn) -> None:
    import archiver.tasks as tasks

    runtime = merge_runtime(tmp_path, sdk.api_base)
    published: list[tuple[str, object]] = []

    class Recorder:
        def copies(self, ids: object) -> None:
            published.append(("copies", list(ids)))  # type: ignore[call-overload]

        def merge_lookup(self, event_id: int) -> None:
            published.append(("merge", event_id))

    monkeypatch.setattr(tasks, "publisher", Recorder())
    monkeypatch.setattr(tasks, "get_runtime", lambda: runtime)
    body = json.dumps({"webhookType": "merge-recording-completed",
                       "data": {"id": "m-9", "meetingId": "room-9", "sessionId": "s9"}})
    tasks.accept_event_task.run(body)
    tasks.accept_event_task.run(body)  # a duplicate replay adds nothing
    assert [kind for kind, _ in published] == ["merge"]
