"""kill -9 of a worker in the middle of a 200 MiB copy: the copy completes exactly once."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import http_source
from tests.backends import s3_options
from tests.stack import Stack, write_config

SIZE = 200 << 20


@pytest.fixture
def crash_stack(stack_env: dict[str, Any], tmp_path: Path, moto_url: str, azurite_connection_string: str,
                gcs_emulator_url: str) -> Iterator[Stack]:
    # Only the S3 destination: it is the one where a dead writer leaves something behind to clean up.
    env, buckets = write_config(tmp_path, broker_url=stack_env["broker_url"], database_url=stack_env["database_url"],
                                moto_url=moto_url, azure_connection=azurite_connection_string,
                                gcs_url=gcs_emulator_url, only=("s3",))
    stack = Stack(root=tmp_path, broker_url=stack_env["broker_url"], database_url=stack_env["database_url"],
                  env=env, source=stack_env["source"], buckets=buckets)
    yield stack
    stack.stop()


def s3(moto_url: str) -> Any:
    o = s3_options(moto_url)
    return boto3.client("s3", endpoint_url=o["endpoint_url"], region_name=o["region"],
                        aws_access_key_id=o["access_key_id"], aws_secret_access_key=o["secret_access_key"])


def wait_for_parts(client: Any, bucket: str, minimum: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            if len(parts.get("Parts", [])) >= minimum:
                return
        time.sleep(0.1)
    raise AssertionError(f"no multipart upload with {minimum} parts appeared")


def test_kill_9_mid_copy_then_exactly_one_object_and_one_succeeded_job(crash_stack: Stack, moto_url: str) -> None:
    stack, client, bucket = crash_stack, s3(moto_url), crash_stack.buckets["s3"]
    mid = f"crash-{secrets.token_hex(4)}"
    name = f"{mid}.mp4"
    # ~40 MB/s, so the 200 MiB copy is still in flight when the worker dies.
    url = stack.source.file_url(name, size=SIZE, trickle=f"{2 << 20}:0.05")
    first = stack.start_worker(concurrency=1)
    stack.send_event({"webhookType": "recording-stopped",
                      "data": {"meetingId": mid, "sessionId": "s1", "filePath": f"/encoded/videos/{name}",
                               "fileUrl": url}})
    wait_for_parts(client, bucket, minimum=3)
    first.kill9()
    [job] = stack.jobs(mid)
    assert job.state == "running"
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads"), "the dead worker left its upload"

    stack.start_worker(concurrency=1)
    [job] = stack.wait_for_jobs(mid, 1, timeout=120)
    assert (job.state, job.attempts, job.bytes) == ("succeeded", 2, SIZE)
    objects = client.list_objects_v2(Bucket=bucket, Prefix=f"videosdk/{mid}/")["Contents"]
    assert sorted(o["Key"] for o in objects) == [job.object_key, f"{job.object_key}.json"]
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    digest = hashlib.sha256()
    for chunk in client.get_object(Bucket=bucket, Key=job.object_key)["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
    assert digest.hexdigest() == job.sha256 == http_source.sha256(name, SIZE)


def test_sigterm_lets_the_copy_in_flight_finish(crash_stack: Stack, moto_url: str) -> None:
    stack, client, bucket = crash_stack, s3(moto_url), crash_stack.buckets["s3"]
    mid = f"term-{secrets.token_hex(4)}"
    name, size = f"{mid}.mp4", 24 << 20
    url = stack.source.file_url(name, size=size, trickle=f"{1 << 20}:0.2")  # about 5 s
    worker = stack.start_worker(concurrency=1)
    stack.send_event({"webhookType": "recording-stopped",
                      "data": {"meetingId": mid, "sessionId": "s1", "filePath": f"/encoded/videos/{name}",
                               "fileUrl": url}})
    wait_for_parts(client, bucket, minimum=1)
    worker.stop()  # SIGTERM to the main process: a warm shutdown
    assert worker.proc.returncode == 0
    [job] = stack.jobs(mid)
    assert (job.state, job.attempts, job.bytes) == ("succeeded", 1, size)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
