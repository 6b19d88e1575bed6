"""kill -9 of a worker in the middle of an HLS recording: the next worker copies only what is missing."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers import open_provider
from tests import http_source
from tests.stack import Stack, write_config
from tests.test_hls import HLS, media_playlist, segment_names

SEGMENT, COUNT = 40_000, 30


@pytest.fixture
def crash_stack(stack_env: dict[str, Any], tmp_path: Path, moto_url: str, azurite_connection_string: str,
                gcs_emulator_url: str) -> Iterator[Stack]:
    env, buckets = write_config(tmp_path, broker_url=stack_env["broker_url"], database_url=stack_env["database_url"],
                                moto_url=moto_url, azure_connection=azurite_connection_string,
                                gcs_url=gcs_emulator_url, only=("s3",))
    stack = Stack(root=tmp_path, broker_url=stack_env["broker_url"], database_url=stack_env["database_url"],
                  env=env, source=stack_env["source"], buckets=buckets)
    yield stack
    stack.stop()


def wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen in {timeout} s")


def test_kill_9_mid_playlist_then_only_the_missing_pieces_are_fetched(crash_stack: Stack) -> None:
    stack, cdn = crash_stack, crash_stack.source
    mid = f"hls-crash-{secrets.token_hex(4)}"
    names = segment_names(COUNT)
    # each segment takes at least 0.36 s to serve: 30 of them outlast the moment the worker is killed
    stack.source.add_file(f"{mid}/index.m3u8", media_playlist(
        [f"{n}?size={SEGMENT}&trickle=10000:0.12" for n in names]), HLS)
    first = stack.start_worker(concurrency=1)
    stack.send_event({"webhookType": "participant-recording-stopped",
                      "data": {"meetingId": mid, "sessionId": "s1", "participantId": "p1",
                               "fileDetails": [{"filePath": "/individual-recordings/s1/p1/index.m3u8",
                                                "fileUrl": cdn.url(f"/files/{mid}/index.m3u8")}]}})
    [job] = wait_for("the job", lambda: stack.jobs(mid))
    ledger = stack.ledger()
    wait_for("five committed pieces", lambda: len(ledger.pieces.of(job.job_id)) >= 5)
    first.kill9()
    recorded = set(ledger.pieces.of(job.job_id))
    assert stack.jobs(mid)[0].state == "running" and len(recorded) < COUNT

    stack.start_worker(concurrency=1)
    [job] = stack.wait_for_jobs(mid, 1, timeout=120)
    assert (job.state, job.attempts) == ("succeeded", 2), job
    hits = {n: len(cdn.hits(f"/files/{mid}/{n}")) for n in names}
    assert all(hits[n] == 1 for n in recorded), hits  # committed and recorded: never fetched again
    assert all(1 <= count <= 2 for count in hits.values()), hits  # at most the one in flight twice
    settings = stack.settings()
    dest = settings.destination("s3")
    provider = open_provider(dest.provider_url, **dest.options)
    base = job.object_key.rsplit("/", 1)[0]  # type: ignore[union-attr]
    for name in names:
        with provider.open_reader(f"{base}/{name}") as reader:
            assert reader.read() == http_source.content(f"{mid}/{name}", SEGMENT), name
