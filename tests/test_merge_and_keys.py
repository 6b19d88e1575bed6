"""merge-recording-completed lookups, and the webhook key fetched (and rotated) from the API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis as redis_client

from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger, utcnow
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from archiver.videosdk.api import VideoSDKClient
from archiver.videosdk.lookup import run_lookup
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


def record_merge_event(runtime: Runtime, merge_id: str, published: list[int] | None = None) -> int:
    """A merge-recording-completed webhook recorded as the receiver records it; returns its lookup's id."""
    body = json.dumps({"webhookType": "merge-recording-completed",
                       "data": {"id": merge_id, "meetingId": "jvsg-8rjn-j304", "sessionId": "s1"}})
    accept_event(runtime.ledger, runtime.settings, body, verified=True,
                               publish_lookups=(published.extend if published is not None else None))
    [lookup] = [lk for lk in runtime.ledger.lookups.list() if lk.resource_id == merge_id]
    return lookup.lookup_id


def test_a_merge_is_looked_up_and_archived_once(tmp_path: Path, sdk: VideoSDKStandIn) -> None:
    runtime = merge_runtime(tmp_path, sdk.api_base)
    merge_id = "0b1e7f0a-5d1c-4a57-9a55-1f0f1a2b3c4d"
    sdk.add_merge(merge_id, {"id": merge_id, "roomId": "jvsg-8rjn-j304", "sessionId": "s1", "status": "completed",
                             "file": {"filePath": "merged/audio/m1.mp3", "size": 4096,
                                      "fileUrl": "https://cdn.videosdk.live/merged/audio/m1.mp3"}})
    lookups: list[int] = []
    lookup_id = record_merge_event(runtime, merge_id, lookups)
    assert lookups == [lookup_id]  # published with the event, inside its transaction
    published: list[list[int]] = []
    client = VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET)
    first = run_lookup(runtime, lookup_id, client, lambda ids: published.append(list(ids)))
    again = run_lookup(runtime, lookup_id, client, lambda ids: published.append(list(ids)))
    assert first.state == "done" and len(first.created) == 1 and again.state == "skipped"
    [job] = runtime.ledger.jobs(meeting_id="jvsg-8rjn-j304")
    assert (job.object_key, job.size, job.kind, job.recording_kind) == ("jvsg-8rjn-j304/merged/m1.mp3", 4096,
                                                                       "merged", "merge")
    assert published == [list(first.created)]
    assert runtime.ledger.lookups.get(lookup_id).state == "done"  # type: ignore[union-attr]


def test_a_merge_still_running_is_looked_up_again_later(tmp_path: Path, sdk: VideoSDKStandIn) -> None:
    runtime = merge_runtime(tmp_path, sdk.api_base)
    sdk.add_merge("m-2", {"id": "m-2", "status": "running", "meetingId": "jvsg-8rjn-j304", "sessionId": "s1"})
    lookup_id = record_merge_event(runtime, "m-2")
    client = VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET)
    outcome = run_lookup(runtime, lookup_id, client, lambda ids: None)
    assert outcome.state == "pending" and outcome.retry_in is not None and "not_ready" in (outcome.error or "")
    sdk.add_merge("m-2", {"id": "m-2", "status": "completed", "meetingId": "jvsg-8rjn-j304", "sessionId": "s1",
                          "file": {"filePath": "merged/m2.mp3", "fileUrl": "https://cdn.videosdk.live/merged/m2.mp3"}})
    assert run_lookup(runtime, lookup_id, client, lambda ids: None).state == "done"


def test_a_lookup_that_never_finds_a_file_fails_once_with_the_fix(tmp_path: Path, sdk: VideoSDKStandIn,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import archiver.videosdk.lookup

    monkeypatch.setattr(archiver.videosdk.lookup, "MAX_ATTEMPTS", 2)
    runtime = merge_runtime(tmp_path, sdk.api_base)
    lookup_id = record_merge_event(runtime, "m-404")  # the stand-in has no such merge: 404
    client = VideoSDKClient(sdk.api_base, api_key=KEY, secret=SECRET)
    assert run_lookup(runtime, lookup_id, client, lambda ids: None).state == "pending"
    final = run_lookup(runtime, lookup_id, client, lambda ids: None)
    assert final.state == "failed" and "retry --lookups" in (final.error or "")
    assert runtime.ledger.lookups.retry() == [lookup_id]  # the operator's retry gives it a fresh budget


def test_a_lookup_whose_message_was_lost_is_started_again_by_the_sweeper(
        tmp_path: Path, sdk: VideoSDKStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    import archiver.worker.tasks as tasks

    runtime = merge_runtime(tmp_path, sdk.api_base)
    lookup_id = record_merge_event(runtime, "m-lost")  # published to nowhere: the message is lost
    published: list[tuple[str, object]] = []

    class Recorder:
        def copies(self, ids: object, **_: object) -> None:
            published.append(("copies", list(ids)))  # type: ignore[call-overload]

        def lookups(self, ids: object, **_: object) -> None:
            published.append(("lookups", list(ids)))  # type: ignore[call-overload]

    monkeypatch.setattr(tasks, "publisher", Recorder())
    monkeypatch.setattr(tasks, "get_runtime", lambda: runtime)
    tasks.sweep_leases.run()
    assert ("lookups", []) in published  # not stale yet: its own message may still be queued
    published.clear()
    with runtime.ledger.sessions.begin() as db:  # its message was lost an hour ago
        from sqlalchemy import update

        from archiver.ledger.models import Lookup
        db.execute(update(Lookup).values(updated_at=utcnow() - timedelta(hours=1)))
    tasks.sweep_leases.run()
    assert ("lookups", [lookup_id]) in published


def test_a_replayed_merge_event_starts_its_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  sdk: VideoSDKStandIn) -> None:
    import archiver.worker.tasks as tasks

    runtime = merge_runtime(tmp_path, sdk.api_base)
    published: list[tuple[str, object]] = []

    class Recorder:
        def copies(self, ids: object) -> None:
            published.append(("copies", list(ids)))  # type: ignore[call-overload]

        def lookups(self, ids: object) -> None:
            published.append(("lookups", list(ids)))  # type: ignore[call-overload]

    monkeypatch.setattr(tasks, "publisher", Recorder())
    monkeypatch.setattr(tasks, "get_runtime", lambda: runtime)
    body = json.dumps({"webhookType": "merge-recording-completed",
                       "data": {"id": "m-9", "meetingId": "room-9", "sessionId": "s9"}})
    tasks.accept_event_task.run(body)
    tasks.accept_event_task.run(body)  # a duplicate replay adds nothing
    assert [kind for kind, _ in published] == ["lookups"]
