"""What one copy asks of S3 and of the ledger. A job's first attempt has nothing of its own to look for
at its key, so a small recording costs one create-only PUT, which S3 verifies by the SHA-256 it carries
(S3 bills per request); a store that does not echo that checksum is asked with a HEAD; an attempt after
another one still looks first and cleans up what a dead attempt left."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.copy.job import run_copy_job
from archiver.domain.states import JobState
from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from tests.backends import billed_leftovers, create_s3_bucket, unique_name
from tests.http_proxy import Proxy
from tests.http_source import HttpSource, sha256


@pytest.fixture
def s3_runtime(tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Runtime, Proxy]]:
    """A runtime whose one destination is a fresh moto bucket seen through a proxy that records requests."""
    monkeypatch.setenv("T_S3_SECRET", "moto-secret-key")
    bucket = unique_name()
    create_s3_bucket(moto_url, bucket)
    proxy = Proxy(moto_url)
    (tmp_path / "archiver.toml").write_text(f"""
database_url = "sqlite:///{tmp_path}/ledger.db"
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
[[destinations]]
name = "s3"
url = "s3://{bucket}/rec/{{meetingId}}/"
endpoint_url = "{proxy.url}"
region = "us-east-1"
addressing_style = "path"
access_key_id = "testing"
secret_access_key_env = "T_S3_SECRET"
""")
    settings = load_settings(tmp_path / "archiver.toml", environ={"T_S3_SECRET": "moto-secret-key"})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    yield Runtime(settings=settings, ledger=Ledger(engine)), proxy
    proxy.close()


def accept(runtime: Runtime, meeting: str, url: str) -> int:
    body = json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": meeting, "sessionId": "s1", "filePath": f"/encoded/videos/{meeting}.mp4",
                                "fileUrl": url}})
    _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=False)
    return accepted.created[0]


def requests(proxy: Proxy) -> list[str]:
    return [s.method + ("?uploads" if "uploads" in s.query else "") for s in proxy.seen]


def test_a_first_attempt_costs_one_put(s3_runtime: tuple[Runtime, Proxy]) -> None:
    runtime, proxy = s3_runtime
    with HttpSource() as source:
        job_id = accept(runtime, "m1", source.file_url("m1.mp4", size=1 << 20))
        proxy.seen.clear()
        outcome = run_copy_job(runtime, job_id)
    assert outcome.state == "succeeded", outcome
    # Before: ListMultipartUploads and a HEAD before the PUT, then a HEAD to verify it and
    # ListMultipartUploads again. The PUT carries the SHA-256, S3 checks it and echoes it: proof enough.
    assert requests(proxy) == ["PUT"]
    put = proxy.requests("PUT")[0]
    assert put.header("x-amz-checksum-sha256") and put.header("if-none-match") == "*"
    job = runtime.ledger.job(job_id)
    assert job is not None and job.sha256 == sha256("m1.mp4", 1 << 20)


def test_a_store_that_does_not_echo_the_checksum_is_asked_with_a_head(s3_runtime: tuple[Runtime, Proxy]) -> None:
    """An S3-compatible store may ignore x-amz-checksum-sha256: no echo, no proof, so the object is
    looked at (and read back when what it reports proves nothing) before the copy counts."""
    runtime, proxy = s3_runtime

    def no_echo(seen: object, answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = answer
        return status, {k: v for k, v in headers.items() if not k.lower().startswith("x-amz-checksum")}, body

    proxy.on_response = no_echo  # type: ignore[method-assign]
    with HttpSource() as source:
        job_id = accept(runtime, "m3", source.file_url("m3.mp4", size=1 << 20))
        proxy.seen.clear()
        outcome = run_copy_job(runtime, job_id)
    assert outcome.state == "succeeded", outcome
    assert requests(proxy)[:2] == ["PUT", "HEAD"], requests(proxy)
    job = runtime.ledger.job(job_id)
    assert job is not None and job.sha256 == sha256("m3.mp4", 1 << 20)


def test_a_later_attempt_looks_first_and_discards_what_a_dead_attempt_left(s3_runtime: tuple[Runtime, Proxy]) -> None:
    runtime, proxy = s3_runtime
    provider = runtime.provider(runtime.settings.destination("s3"))
    with HttpSource() as source:
        job_id = accept(runtime, "m2", source.file_url("m2.mp4", size=1 << 20))
        # A worker claimed it, started a multipart upload at the key and died; its lease has run out.
        dead = runtime.ledger.claim(job_id, "dead-worker", timedelta(seconds=-1))
        assert dead is not None and dead.object_key is not None
        provider.client.create_multipart_upload(Bucket=provider.location, Key=provider.full_key(dead.object_key))
        assert billed_leftovers(provider) != []
        proxy.seen.clear()
        outcome = run_copy_job(runtime, job_id)
    assert outcome.state == "succeeded", outcome
    seen = requests(proxy)
    # It looked before writing: the dead attempt's upload found and aborted, then the key looked at.
    assert seen[:seen.index("PUT")] == ["GET?uploads", "DELETE", "HEAD"], seen
    assert billed_leftovers(provider) == []
    job = runtime.ledger.job(job_id)
    assert job is not None and (job.attempts, job.sha256) == (2, sha256("m2.mp4", 1 << 20))


def test_only_a_jobs_very_first_claim_is_first(s3_runtime: tuple[Runtime, Proxy]) -> None:
    # Not even one whose earlier attempt was given back (refund brings the attempt count back to 0)
    # or that an operator retried (requeue resets the count): something of theirs may be at the key.
    ledger, lease = s3_runtime[0].ledger, timedelta(seconds=60)
    job_id = accept(s3_runtime[0], "m3", "https://cdn.videosdk.live/m3.mp4")
    claimed = ledger.take(job_id, "w1", lease)
    assert claimed is not None and claimed.first and claimed.job.state == JobState.RUNNING
    assert ledger.take(job_id, "w2", lease) is None  # leased
    ledger.fail(job_id, "w1", code="not_in_account_yet", message="later", retrying=True, refund=True)
    again = ledger.take(job_id, "w1", lease)
    assert again is not None and not again.first and again.job.attempts == 1
    ledger.fail(job_id, "w1", code="http_status", message="gone", retrying=False)
    assert ledger.requeue([job_id]) == [job_id]
    retried = ledger.take(job_id, "w1", lease)
    assert retried is not None and not retried.first and retried.job.attempts == 1


def test_a_first_attempt_still_looks_before_uploading_a_file_of_unknown_length(s3_runtime: tuple[Runtime,
                                                                                               Proxy]) -> None:
    # A conflict found only by the create-only commit would cost the whole upload of a large file first.
    runtime, proxy = s3_runtime
    provider = runtime.provider(runtime.settings.destination("s3"))
    with HttpSource() as source:
        job_id = accept(runtime, "m4", source.file_url("m4.mp4", size=1 << 20, chunked=1))
        job = runtime.ledger.job(job_id)
        assert job is not None and job.object_key is not None
        provider.upload(job.object_key, io.BytesIO(b"somebody else's bytes"))
        proxy.seen.clear()
        outcome = run_copy_job(runtime, job_id)
    assert outcome.state == "failed" and (outcome.error or "").startswith("conflict:"), outcome
    assert "PUT" not in requests(proxy) and "POST?uploads" not in requests(proxy), requests(proxy)
