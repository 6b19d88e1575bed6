"""kill -9 of a worker while its notification POST is in flight: real `celery worker` and `celery beat`
processes, a real broker and ledger, and a receiver that verifies with `standardwebhooks`. The
recording's outcome is processed by the receiver exactly once, under one webhook-id."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators import ROOT
from tests.notify_receiver import NotifyReceiver, new_secret
from tests.stack import Stack, write_config
from tests.test_notifications import SECRET_VARIABLE, endpoint


@pytest.fixture
def notify_stack(stack_env: dict[str, Any], tmp_path: Path, moto_url: str, azurite_connection_string: str,
                 gcs_emulator_url: str) -> Iterator[tuple[Stack, NotifyReceiver]]:
    secret = new_secret()
    with NotifyReceiver(secret, hold=True) as receiver:
        env, buckets = write_config(tmp_path, broker_url=stack_env["broker_url"],
                                    database_url=stack_env["database_url"], moto_url=moto_url,
                                    azure_connection=azurite_connection_string, gcs_url=gcs_emulator_url,
                                    only=("s3",), extra=endpoint(receiver.url))
        env[SECRET_VARIABLE] = secret
        stack = Stack(root=tmp_path, broker_url=stack_env["broker_url"], database_url=stack_env["database_url"],
                      env=env, source=stack_env["source"], buckets=buckets)
        beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "archiver.worker.app", "beat", "-s",
                                 str(tmp_path / "beat-schedule"), "-l", "INFO"], cwd=ROOT,
                                env={**os.environ, **env}, stdout=(tmp_path / "beat.log").open("wb"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield stack, receiver
        finally:
            beat.terminate()
            beat.wait(30)
            stack.stop()


def messages_of(stack: Stack, meeting: str) -> list[Any]:
    """This test's outbox messages (the ledger is shared by the module's tests)."""
    return [m for m in stack.ledger().deliveries.messages() if f'"meetingId":"{meeting}"' in m.payload]


def test_kill_9_during_the_post_then_the_receiver_processes_the_outcome_once(
        notify_stack: tuple[Stack, NotifyReceiver]) -> None:
    stack, receiver = notify_stack
    mid = f"notify-{secrets.token_hex(4)}"
    first = stack.start_worker(concurrency=2)
    stack.send_event({"webhookType": "recording-stopped", "data": {
        "meetingId": mid, "sessionId": "s1", "filePath": f"/encoded/videos/{mid}.mp4",
        "fileUrl": stack.source.file_url(f"{mid}.mp4", size=100_000)}})
    [job] = stack.wait_for_jobs(mid, 1)
    assert job.state == "succeeded"
    assert receiver.arrived.wait(60), "no notification was sent"
    first.kill9()  # the POST is in flight: the endpoint has it, the sender never hears the answer
    receiver.release()
    [message] = messages_of(stack, mid)
    assert (message.state, message.attempts) == ("delivering", 1)

    stack.start_worker(concurrency=2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not receiver.processed:
        time.sleep(0.2)
    assert receiver.processed, f"not delivered after the crash: {receiver.dump()}"
    time.sleep(2)  # nothing more arrives: a second send would show here
    ids = {r.webhook_id for r in receiver.requests} | {message.webhook_id}
    assert ids == {message.webhook_id} and len(receiver.processed) == 1
    [payload] = receiver.processed.values()
    assert payload["type"] == "recording.archived" and payload["data"]["recording"]["meetingId"] == mid
    assert payload["data"]["destinations"][0]["sha256"] == job.sha256
    [message] = messages_of(stack, mid)
    assert (message.state, message.attempts) == ("delivered", 2)


def test_kill_9_mid_copy_then_one_archived_notification_for_the_one_copy(
        notify_stack: tuple[Stack, NotifyReceiver], moto_url: str) -> None:
    from tests.test_crash import s3, wait_for_parts

    stack, receiver = notify_stack
    receiver.hold = False
    mid = f"notify-copy-{secrets.token_hex(4)}"
    first = stack.start_worker(concurrency=2)
    stack.send_event({"webhookType": "recording-stopped", "data": {
        "meetingId": mid, "sessionId": "s1", "filePath": f"/encoded/videos/{mid}.mp4",
        "fileUrl": stack.source.file_url(f"{mid}.mp4", size=48 << 20, trickle=f"{1 << 20}:0.15")}})  # ~7 s
    wait_for_parts(s3(moto_url), stack.buckets["s3"], minimum=1)
    first.kill9()
    assert stack.jobs(mid)[0].state == "running"
    assert messages_of(stack, mid) == []  # no outcome yet: nothing to tell

    stack.start_worker(concurrency=2)
    [job] = stack.wait_for_jobs(mid, 1, timeout=120)
    assert (job.state, job.attempts) == ("succeeded", 2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not receiver.processed:
        time.sleep(0.2)
    time.sleep(2)
    [payload] = receiver.processed.values()
    assert len(receiver.requests) == 1 and payload["type"] == "recording.archived"
    assert payload["data"]["destinations"][0]["sha256"] == job.sha256
