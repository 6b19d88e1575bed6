"""End to end on real processes: a celery worker against Redis (and RabbitMQ in CI), the ledger on
SQLite (and PostgreSQL in CI), destinations on moto, Azurite and fake-gcs-server, and a stand-in CDN
with fault modes."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from archiver.settings.config import Settings
from providers import open_provider
from tests import http_source
from tests.stack import Stack


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, Any]) -> Iterator[Stack]:
    running = Stack(root=stack_env["root"], broker_url=stack_env["broker_url"],
                    database_url=stack_env["database_url"], env=stack_env["env"], source=stack_env["source"],
                    buckets=stack_env["buckets"])
    running.start_worker(concurrency=2)
    yield running
    running.stop()


def meeting() -> str:
    return f"mtg-{secrets.token_hex(4)}"


def recording_stopped(meeting_id: str, url: str, path: str = "/encoded/videos/61d6e871d1617e097b41699b.mp4"):
    return {"webhookType": "recording-stopped",
            "data": {"meetingId": meeting_id, "sessionId": "61d6e834e1326304a9e73d00", "filePath": path,
                     "fileUrl": url}}


def object_sha256(settings: Settings, destination: str, key: str) -> str:
    dest = settings.destination(destination)
    digest = hashlib.sha256()
    with open_provider(dest.provider_url, **dest.options).open_reader(key) as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_one_recording_lands_identically_in_three_destinations(stack: Stack) -> None:
    mid, size = meeting(), 3 * (1 << 20) + 12345
    url = stack.source.file_url(f"{mid}.mp4", size=size)
    stack.send_event(recording_stopped(mid, url))
    jobs = stack.wait_for_jobs(mid, 3)
    expected = http_source.sha256(f"{mid}.mp4", size)
    assert {j.destination: j.state for j in jobs} == {"s3": "succeeded", "azure": "succeeded", "gcs": "succeeded"}
    settings = stack.settings()
    for job in jobs:
        assert (job.bytes, job.sha256, job.attempts) == (size, expected, 1)
        assert job.object_key is not None
        assert object_sha256(settings, job.destination, job.object_key) == expected
    keys = {j.destination: j.object_key for j in jobs}
    assert keys["s3"] == f"videosdk/{mid}/61d6e834e1326304a9e73d00/61d6e871d1617e097b41699b.mp4"
    assert keys["gcs"] == f"rec/{mid}/room/61d6e871d1617e097b41699b.mp4"
    manifest = open_provider(settings.destination("s3").provider_url, **settings.destination("s3").options)
    with manifest.open_reader(f"{keys['s3']}.json") as reader:
        assert b'"sha256": "' + expected.encode() in reader.read()


def test_a_duplicate_event_creates_nothing_new(stack: Stack) -> None:
    mid = meeting()
    body = recording_stopped(mid, stack.source.file_url(f"{mid}.mp4"))
    for _ in range(3):
        stack.send_event(body)
    jobs = stack.wait_for_jobs(mid, 3)
    assert len(stack.jobs(mid)) == 3
    assert all(j.state == "succeeded" and j.attempts == 1 for j in jobs)
    assert len(stack.source.hits(f"/files/{mid}.mp4")) == 3  # one download per destination, not nine


def test_a_dropped_download_resumes_without_restarting_the_upload(stack: Stack) -> None:
    mid, size = meeting(), 4 << 20
    url = stack.source.file_url(f"{mid}.mp4", size=size, drop=1 << 20, drops=3)
    stack.send_event(recording_stopped(mid, url))
    jobs = stack.wait_for_jobs(mid, 3)
    assert all(j.state == "succeeded" and j.attempts == 1 for j in jobs), jobs
    assert all(j.sha256 == http_source.sha256(f"{mid}.mp4", size) for j in jobs)
    ranges = [h.range for h in stack.source.hits(f"/files/{mid}.mp4") if h.range]
    assert len(ranges) == 3 and all(r.startswith("bytes=") for r in ranges)


def test_a_transient_failure_heals(stack: Stack) -> None:
    mid = meeting()
    stack.send_event(recording_stopped(mid, stack.source.file_url(f"{mid}.mp4", fail=4)))
    jobs = stack.wait_for_jobs(mid, 3)
    assert all(j.state == "succeeded" for j in jobs), [(j.state, j.error_code) for j in jobs]
    assert sum(j.attempts for j in jobs) == 3 + 4  # four 500s spread over the jobs, each retried


@pytest.mark.parametrize(("faults", "code"), [
    ({"status": 404}, "source_not_found"),
    ({"status": 410}, "source_gone"),
    ({"status": 403}, "source_forbidden"),
    ({"page": "html"}, "source_content_type"),
    ({"page": "json"}, "source_content_type"),
])
def test_a_permanent_failure_fails_at_once_with_its_reason(stack: Stack, faults: dict[str, Any], code: str) -> None:
    mid = meeting()
    stack.send_event(recording_stopped(mid, stack.source.file_url(f"{mid}.mp4", **faults)))
    jobs = stack.wait_for_jobs(mid, 3)
    assert [(j.state, j.attempts, j.error_code) for j in jobs] == [("failed", 1, code)] * 3
    assert all(j.error_message for j in jobs)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::1]:9/x.mp4",  # loopback, but only 127.0.0.1/32 is exempt in this stack
    "http://10.0.0.1/x.mp4",
    "https://evil.example.com/x.mp4",
])
def test_an_unsafe_source_url_is_refused_before_any_connection(stack: Stack, url: str) -> None:
    mid = meeting()
    stack.send_event(recording_stopped(mid, url))
    jobs = stack.wait_for_jobs(mid, 3)
    assert [(j.state, j.attempts) for j in jobs] == [("failed", 1)] * 3
    assert {j.error_code for j in jobs} <= {"source_ssrf"}, [j.error_message for j in jobs]


def test_a_redirect_to_a_private_address_is_refused(stack: Stack) -> None:
    mid = meeting()
    stack.send_event(recording_stopped(mid, stack.source.redirect_url("http://169.254.169.254/latest/")))
    jobs = stack.wait_for_jobs(mid, 3)
    assert {(j.state, j.error_code) for j in jobs} == {("failed", "source_ssrf")}


def test_a_different_object_at_the_key_is_a_conflict_and_an_identical_one_is_adopted(stack: Stack) -> None:
    mid, size = meeting(), 1 << 20
    settings = stack.settings()
    s3 = settings.destination("s3")
    provider = open_provider(s3.provider_url, **s3.options)
    key = f"videosdk/{mid}/61d6e834e1326304a9e73d00/61d6e871d1617e097b41699b.mp4"
    import io

    provider.upload(key, io.BytesIO(b"somebody else's bytes"))
    azure = settings.destination("azure")
    az_provider = open_provider(azure.provider_url, **azure.options)
    from datetime import UTC, datetime

    today = datetime.now(UTC)
    az_key = f"{mid}/{today:%Y}/{today:%m}/{today:%d}/61d6e871d1617e097b41699b.mp4"
    az_provider.upload(az_key, io.BytesIO(http_source.content(f"{mid}.mp4", size)))
    stack.send_event(recording_stopped(mid, stack.source.file_url(f"{mid}.mp4", size=size)))
    jobs = {j.destination: j for j in stack.wait_for_jobs(mid, 3)}
    assert (jobs["s3"].state, jobs["s3"].error_code) == ("failed", "conflict")
    assert "overwrite" in (jobs["s3"].error_message or "")
    assert jobs["azure"].state == "succeeded"  # our bytes were already there: adopted (found by the create-only commit)
    assert jobs["gcs"].state == "succeeded"


def test_two_workers_as_operators_start_them_share_one_host(stack: Stack) -> None:
    # `archiver worker` twice on one machine: on RabbitMQ two nodes named celery@<host> collide on the
    # exclusive control queue and the second one died at start (ResourceLocked). Each gets its own name.
    from tests.emulators import free_port

    extra = [stack.start_worker(concurrency=1, metrics_port=free_port()) for _ in range(2)]
    try:
        time.sleep(3)  # the collision killed the second one a moment after "ready"
        assert all(w.proc.poll() is None for w in extra), [w.log.read_text()[-2000:] for w in extra]
        mid = meeting()
        stack.send_event(recording_stopped(mid, stack.source.file_url(f"{mid}.mp4", size=200_000)))
        assert {j.state for j in stack.wait_for_jobs(mid, 3)} == {"succeeded"}
    finally:
        for worker in extra:
            worker.stop()
