"""The customer's own bucket as a source: a file VideoSDK wrote there (fileUrl null, or on a storage host)
is copied from it through the provider interface when `[videosdk] storage` names it; without that setting
it is recorded and held, `archiver status --state held` shows it, and `archiver retry --held` starts it once
the setting is there. The customer's bucket here is an Azurite container; the destination is S3 (moto)."""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from archiver.cli import main
from archiver.copy.job import run_copy_job
from archiver.intake.record import accept_event
from archiver.runtime import Runtime
from providers import StorageProvider, open_provider
from tests.backends import create_az_container, unique_name
from tests.copy_runtime import read, runtime_for, s3_destination, sha256, write_config

CUSTOMER_VARIABLE = "ARCHIVER_TEST_CUSTOMER_AZURE"


@pytest.fixture
def customer(azurite_connection_string: str) -> tuple[str, StorageProvider]:
    """The customer's bucket: (the [videosdk] storage table, a provider to put objects in it)."""
    container = unique_name()
    create_az_container(azurite_connection_string, container)
    os.environ[CUSTOMER_VARIABLE] = azurite_connection_string
    setting = f'\n[videosdk.storage]\nurl = "az://{container}"\nconnection_string_env = "{CUSTOMER_VARIABLE}"\n'
    return setting, open_provider(f"az://{container}", connection_string=azurite_connection_string)


def stopped(meeting: str, path: str, url: str | None = None) -> str:
    return json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": meeting, "sessionId": "s1", "filePath": path, "fileUrl": url}})


def accept(runtime: Runtime, body: str) -> list[int]:
    _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=False)
    return list(accepted.job_ids)


def s3(runtime: Runtime) -> StorageProvider:
    return runtime.provider(runtime.settings.destination("s3"))


@pytest.mark.parametrize("file_url", [None, "https://acme.blob.core.windows.net/recordings/{path}"])
def test_a_file_in_the_customers_bucket_is_copied_from_it(tmp_path: Path, moto_url: str, customer: Any,
                                                          file_url: str | None) -> None:
    setting, bucket = customer
    runtime = runtime_for(tmp_path, s3_destination(moto_url), extra=setting)
    meeting, path = f"m-{secrets.token_hex(3)}", f"meeting-recordings/{secrets.token_hex(4)}/x.mp4"
    data = os.urandom(3 << 20)
    bucket.upload(path, io.BytesIO(data))
    [job_id] = accept(runtime, stopped(meeting, f"/{path}", file_url and file_url.format(path=path)))
    outcome = run_copy_job(runtime, job_id)
    assert outcome.state == "succeeded" and outcome.size_proven, outcome
    assert "customer's storage reported" in (outcome.size_note or "")
    job = runtime.ledger.job(job_id)
    assert job is not None and (job.storage, job.bytes, job.sha256) == ("customer", len(data), sha256(data))
    assert read(s3(runtime), job.object_key) == data  # type: ignore[arg-type]
    assert json.loads(read(s3(runtime), f"{job.object_key}.json"))["storage"] == "customer"


def test_without_the_storage_setting_it_is_held_until_retry_held(tmp_path: Path, moto_url: str, customer: Any,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 restore_root_logging: None) -> None:
    setting, bucket = customer
    destinations = s3_destination(moto_url)
    runtime = runtime_for(tmp_path, destinations)
    monkeypatch.setenv("ARCHIVER_CONFIG", str(tmp_path / "archiver.toml"))  # main() sets it; restored after
    data = os.urandom(100_000)
    bucket.upload("rec/held.mp4", io.BytesIO(data))
    [job_id] = accept(runtime, stopped("m-held", "/rec/held.mp4"))
    job = runtime.ledger.job(job_id)
    assert job is not None and (job.state, job.error_code) == ("held", "customer_storage")

    def cli(*argv: str) -> tuple[int, str]:
        code = main(["--config", str(tmp_path / "archiver.toml"), *argv])
        return code, capsys.readouterr().out

    code, out = cli("status", "--state", "held")
    assert code == 0 and f"{job_id}" in out and "held" in out and "[videosdk] storage" in out
    code, out = cli("retry", "--held")
    assert code == 2  # nothing to read it from yet: the operator is told to set it first
    write_config(tmp_path, destinations, extra=setting)
    code, out = cli("retry", "--held")
    assert code == 0 and f"re-enqueued 1 job(s): {job_id}" in out, out
    configured = runtime_for(tmp_path, destinations, extra=setting)
    assert run_copy_job(configured, job_id).state == "succeeded"
    assert read(s3(configured), configured.ledger.job(job_id).object_key) == data  # type: ignore[union-attr,arg-type]


def test_an_object_replaced_while_being_read_is_copied_again_whole(tmp_path: Path, moto_url: str,
                                                                   customer: Any) -> None:
    setting, bucket = customer
    runtime = runtime_for(tmp_path, s3_destination(moto_url, manifest=False), extra=setting)
    old, new = os.urandom(3 << 20), os.urandom((2 << 20) + 17)
    bucket.upload("rec/replaced.mp4", io.BytesIO(old))
    [job_id] = accept(runtime, stopped("m-replaced", "/rec/replaced.mp4"))
    replaced = []

    def replace_once(job: Any, done: int, total: int | None) -> None:
        if not replaced:  # VideoSDK (or anyone) writes a new version under the same name mid-copy
            replaced.append(done)
            bucket.upload("rec/replaced.mp4", io.BytesIO(new), if_absent=False)

    outcome = run_copy_job(runtime, job_id, progress=replace_once)
    assert outcome.state == "succeeded" and replaced, outcome
    job = runtime.ledger.job(job_id)
    assert job is not None and (job.attempts, job.bytes, job.sha256) == (1, len(new), sha256(new))
    assert read(s3(runtime), job.object_key) == new  # type: ignore[arg-type]


def test_a_file_missing_from_the_customers_bucket_fails_saying_where_it_looked(tmp_path: Path, moto_url: str,
                                                                               customer: Any) -> None:
    setting, _ = customer
    runtime = runtime_for(tmp_path, s3_destination(moto_url), extra=setting)
    [job_id] = accept(runtime, stopped("m-missing", "/rec/nowhere.mp4"))
    outcome = run_copy_job(runtime, job_id)
    assert outcome.state == "failed" and (outcome.error or "").startswith("source_not_found: "), outcome
    assert "rec/nowhere.mp4" in (outcome.error or "") and "[videosdk] storage" in (outcome.error or "")


def test_a_held_job_retried_by_id_without_the_setting_fails_saying_what_to_set(tmp_path: Path,
                                                                               moto_url: str) -> None:
    runtime = runtime_for(tmp_path, s3_destination(moto_url))
    [job_id] = accept(runtime, stopped("m-noset", "/rec/x.mp4"))
    assert runtime.ledger.requeue([job_id]) == [job_id]  # `archiver retry JOB_ID` on a held job
    outcome = run_copy_job(runtime, job_id)
    assert outcome.state == "failed" and (outcome.error or "").startswith("customer_storage: "), outcome
    assert "[videosdk] storage" in (outcome.error or "")


def test_an_hls_recording_in_the_customers_bucket_is_copied_with_its_segments(tmp_path: Path, moto_url: str,
                                                                              customer: Any) -> None:
    setting, bucket = customer
    runtime = runtime_for(tmp_path, s3_destination(moto_url), extra=setting)
    folder = f"individual-recordings/s1/p1/{secrets.token_hex(3)}"
    segments = {f"seg/{n}.ts": os.urandom(20_000) for n in range(3)}
    playlist = ("#EXTM3U\n#EXT-X-TARGETDURATION:4\n" + "".join(f"#EXTINF:4,\n{name}\n" for name in segments)
                + "#EXT-X-ENDLIST\n").encode()
    for name, data in segments.items():
        bucket.upload(f"{folder}/{name}", io.BytesIO(data))
    bucket.upload(f"{folder}/index.m3u8", io.BytesIO(playlist))
    body = json.dumps({"webhookType": "participant-recording-stopped",
                       "data": {"meetingId": "m-hls", "sessionId": "s1", "participantId": "p1",
                                "fileDetails": [{"filePath": f"/{folder}/index.m3u8", "fileUrl": None}]}})
    [job_id] = accept(runtime, body)
    assert run_copy_job(runtime, job_id).state == "succeeded"
    key = runtime.ledger.job(job_id).object_key  # type: ignore[union-attr]
    assert read(s3(runtime), key) == playlist  # type: ignore[arg-type]
    for name, data in segments.items():
        assert read(s3(runtime), f"{key.rsplit('/', 1)[0]}/{name}") == data  # type: ignore[union-attr]


def test_the_sweeper_releases_held_jobs_once_the_storage_is_set(tmp_path: Path, moto_url: str, customer: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.worker import tasks

    setting, _ = customer
    destinations = s3_destination(moto_url)
    [job_id] = accept(runtime_for(tmp_path, destinations), stopped("m-sweep", "/rec/sweep.mp4"))
    configured, published = runtime_for(tmp_path, destinations, extra=setting), []
    monkeypatch.setattr(tasks, "get_runtime", lambda: configured)
    monkeypatch.setattr(tasks.publisher, "copies", lambda ids, **kw: published.extend(ids))
    monkeypatch.setattr(tasks.publisher, "lookups", lambda ids, **kw: None)
    tasks.sweep_leases()
    assert job_id in published and configured.ledger.job(job_id).state == "pending"  # type: ignore[union-attr]
