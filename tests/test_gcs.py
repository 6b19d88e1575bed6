"""GCS specifics against a live fake-gcs-server, plus what only the real service does (auth failures,
checksum rejections, precondition failures at finalization), played by a small HTTP proxy placed in
front of the emulator. The SDK itself is never mocked: every request goes over real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions

from providers import (
    AccessDenied,
    AuthenticationError,
    ConfigurationError,
    IntegrityError,
    MissingSecret,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientError,
    open_provider,
)
from providers.gcs.provider import GCSProvider, translate
from tests.backends import create_gcs_bucket, unique_name
from tests.http_proxy import Answer, Proxy, Seen

CHUNK = 256 << 10  # the smallest part GCS accepts, so multi-chunk writes stay small and fast


# ---- a proxy that can answer for Google (tests/http_proxy.py) ----------------------------------
def google_error(status: int, reason: str, message: str) -> Answer:
    body = {"error": {"code": status, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def chunks(proxy: Proxy) -> list[Seen]:
    return [s for s in proxy.seen if s.is_chunk]


def cancels(proxy: Proxy) -> list[Seen]:
    return [s for s in proxy.seen if s.method == "DELETE" and "upload_id" in s.query]


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def bucket(gcs_emulator_url: str) -> str:
    name = unique_name()
    create_gcs_bucket(gcs_emulator_url, name)
    return name


@pytest.fixture
def proxy(gcs_emulator_url: str) -> Iterator[Proxy]:
    p = Proxy(gcs_emulator_url)
    yield p
    p.close()


def provider(endpoint: str, bucket: str, **options: Any) -> GCSProvider:
    made = open_provider(f"gs://{bucket}/pre", endpoint=endpoint, project="test", **options)
    assert isinstance(made, GCSProvider)
    return made


def crc32c_hex(data: bytes) -> str:
    return google_crc32c.Checksum(data).digest().hex()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read(p: GCSProvider, key: str) -> bytes:
    with p.open_reader(key) as reader:
        return reader.read()


# ---- what is stored -----------------------------------------------------------------------------
def test_single_request_write_stores_class_checksums_and_sha256(gcs_emulator_url: str, bucket: str) -> None:
    p = provider(gcs_emulator_url, bucket, storage_class="NEARLINE")
    data = os.urandom(1000)
    written = p.upload("one.bin", io.BytesIO(data), content_type="video/mp4", metadata={"m": "1"})
    info = p.stat("one.bin")
    assert info.storage_class == written.storage_class == "NEARLINE"
    assert info.checksums == {"crc32c": crc32c_hex(data), "md5": hashlib.md5(data).hexdigest(),
                              "sha256": hashlib.sha256(data).hexdigest()}
    assert info.metadata == {"m": "1"}  # "sha256" is reported as a checksum, not as user metadata
    assert info.content_type == "video/mp4"


def test_resumable_write_protocol_and_what_survives_it(proxy: Proxy, bucket: str) -> None:
    p = provider(proxy.url, bucket, part_size=CHUNK, storage_class="COLDLINE")
    data = os.urandom(2 * CHUNK + 1000)
    written = p.upload("two.bin", io.BytesIO(data), content_type="video/mp4",
                       metadata={"meeting": "abc", "sha256": "caller-supplied, must not be stored"})
    start = next(s for s in proxy.seen if s.method == "POST" and s.query.get("uploadType") == ["resumable"])
    assert start.query["ifGenerationMatch"] == ["0"]
    # fake-gcs-server drops a session's storage class, so what we asked for is checked on the wire.
    assert json.loads(start.body)["storageClass"] == "COLDLINE"
    ranges = [(s.headers["Content-Range"], s.headers.get("X-Goog-Hash"), len(s.body)) for s in chunks(proxy)]
    whole_crc = "crc32c=" + base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    assert ranges == [(f"bytes 0-{CHUNK - 1}/*", None, CHUNK),
                      (f"bytes {CHUNK}-{2 * CHUNK - 1}/*", None, CHUNK),
                      (f"bytes {2 * CHUNK}-{len(data) - 1}/{len(data)}", whole_crc, 1000)]
    info = p.stat("two.bin")
    assert (info.size, info.content_type, info.metadata) == (len(data), "video/mp4", {"meeting": "abc"})
    assert info.checksums == {"crc32c": crc32c_hex(data), "md5": hashlib.md5(data).hexdigest()}
    assert written.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    assert read(p, "two.bin") == data


def test_an_exact_multiple_is_finalized_with_an_empty_request(proxy: Proxy, bucket: str) -> None:
    p = provider(proxy.url, bucket, part_size=CHUNK)
    data = os.urandom(2 * CHUNK)
    p.upload("even.bin", io.BytesIO(data))
    assert [s.headers["Content-Range"] for s in chunks(proxy)][-1] == f"bytes */{2 * CHUNK}"
    assert read(p, "even.bin") == data


def test_a_single_part_too_big_for_one_request_still_stores_its_sha256(proxy: Proxy, bucket: str) -> None:
    # Above 8 MiB the SDK would not send one request; our own multipart upload is, and it carries
    # the SHA-256 because the whole object is known before it starts.
    p = provider(proxy.url, bucket, part_size=9 << 20)
    data = os.urandom((8 << 20) + 1)
    p.upload("big-single.bin", io.BytesIO(data), metadata={"m": "1"})
    assert chunks(proxy) == []
    uploads = [s.query.get("uploadType") for s in proxy.seen if s.method == "POST" and s.target.startswith("/upload/")]
    assert uploads == [["multipart"]]
    info = p.stat("big-single.bin")
    assert info.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    assert info.metadata == {"m": "1"}
    with pytest.raises(ObjectExists):
        p.upload("big-single.bin", io.BytesIO(data))


def test_part_size_is_rounded_up_to_whole_chunks(gcs_emulator_url: str, bucket: str) -> None:
    assert provider(gcs_emulator_url, bucket, part_size=1).open_writer("a").request.part_size == CHUNK
    assert provider(gcs_emulator_url, bucket, part_size=CHUNK + 1).open_writer("a").request.part_size == 2 * CHUNK
    assert provider(gcs_emulator_url, bucket).open_writer("a").request.part_size == 16 << 20


def test_bytes_the_service_did_not_persist_are_sent_again(proxy: Proxy, bucket: str) -> None:
    half = CHUNK // 2

    def persist_half_of_the_first_chunk(seen: Seen) -> Seen | None:
        if seen.is_chunk and seen.headers["Content-Range"] == f"bytes 0-{CHUNK - 1}/*":
            return replace(seen, body=seen.body[:half],
                           headers={**seen.headers, "Content-Range": f"bytes 0-{half - 1}/*"})
        return None

    proxy.rule = persist_half_of_the_first_chunk
    p = provider(proxy.url, bucket, part_size=CHUNK)
    data = os.urandom(2 * CHUNK + 5)
    p.upload("resent.bin", io.BytesIO(data))
    assert chunks(proxy)[1].headers["Content-Range"] == f"bytes {half}-{CHUNK - 1}/*"
    assert read(p, "resent.bin") == data


# ---- nothing visible unless verified ------------------------------------------------------------
def test_abort_cancels_the_session_and_publishes_nothing(proxy: Proxy, bucket: str) -> None:
    p = provider(proxy.url, bucket, part_size=CHUNK)
    with pytest.raises(RuntimeError), p.open_writer("gone.bin") as writer:
        writer.write(os.urandom(2 * CHUNK + 7))
        wait_until(lambda: len(chunks(proxy)) == 2)  # two chunks stored in the session
        raise RuntimeError("source died")
    assert len(cancels(proxy)) == 1
    assert cancels(proxy)[0].query["upload_id"] == chunks(proxy)[0].query["upload_id"]
    assert not any(s.is_final_chunk for s in proxy.seen)
    assert not p.exists("gone.bin")


@pytest.mark.parametrize("size", [100, 2 * CHUNK + 100], ids=["single-request", "resumable"])
def test_bytes_corrupted_in_transit_fail_verification(proxy: Proxy, bucket: str, size: int) -> None:
    # fake-gcs-server accepts a wrong declared CRC32C (metadata or X-Goog-Hash), like a service
    # that does not check: our own comparison after commit must catch it and remove the object.
    data = os.urandom(size)
    tail = data[-50:]

    def flip_a_byte(seen: Seen) -> Seen | None:
        if seen.method in ("POST", "PUT") and tail in seen.body:
            return replace(seen, body=seen.body.replace(tail, bytes([tail[0] ^ 1]) + tail[1:]))
        return None

    proxy.rule = flip_a_byte
    p = provider(proxy.url, bucket, part_size=CHUNK)
    with pytest.raises(IntegrityError, match="crc32c"):
        p.upload("corrupt.bin", io.BytesIO(data))
    assert not p.exists("corrupt.bin")


def test_a_checksum_rejected_by_the_service_is_an_integrity_error(proxy: Proxy, bucket: str) -> None:
    message = 'Provided CRC32C "AAAAAA==" doesn\'t match calculated CRC32C "2HvlZg==".'  # Google's answer
    proxy.rule = lambda seen: google_error(400, "invalid", message) if seen.is_final_chunk else None
    p = provider(proxy.url, bucket, part_size=CHUNK)
    with pytest.raises(IntegrityError) as excinfo:
        p.upload("refused.bin", io.BytesIO(os.urandom(CHUNK + 1)))
    assert "2HvlZg" not in str(excinfo.value)
    assert len(cancels(proxy)) == 1
    assert not p.exists("refused.bin")


def test_a_corrupted_download_fails_at_the_end_of_the_stream(proxy: Proxy, bucket: str) -> None:
    p = provider(proxy.url, bucket)
    p.upload("read.bin", io.BytesIO(b"a recording" * 1000))

    def corrupt(seen: Seen, answer: Answer) -> Answer:
        status, headers, payload = answer
        return (status, headers, b"A" + payload[1:]) if seen.target.startswith("/download/") else answer

    proxy.on_response = corrupt
    with pytest.raises(IntegrityError, match="crc32c"):
        read(p, "read.bin")


# ---- create-only ----------------------------------------------------------------------------------
def test_an_object_created_during_a_resumable_write_wins(proxy: Proxy, bucket: str) -> None:
    p = provider(proxy.url, bucket, part_size=CHUNK)
    with p.open_writer("race.bin") as writer:
        writer.write(os.urandom(2 * CHUNK + 3))  # the session exists and chunks are on their way
        p.upload("race.bin", io.BytesIO(b"someone else"))
        with pytest.raises(ObjectExists):
            writer.commit()
    assert read(p, "race.bin") == b"someone else"
    assert len(cancels(proxy)) == 1


def test_a_precondition_failure_at_finalization_is_object_exists(proxy: Proxy, bucket: str) -> None:
    # What Google answers when ifGenerationMatch=0 no longer holds as the session finalizes.
    proxy.rule = lambda seen: (google_error(412, "conditionNotMet", "At least one of the pre-conditions "
                                            "you specified did not hold.") if seen.is_final_chunk else None)
    p = provider(proxy.url, bucket, part_size=CHUNK)
    with pytest.raises(ObjectExists, match=r"race2\.bin"):
        p.upload("race2.bin", io.BytesIO(os.urandom(CHUNK + 3)))
    assert not p.exists("race2.bin")


def test_overwrite_sends_no_precondition(proxy: Proxy, bucket: str) -> None:
    p = provider(proxy.url, bucket, part_size=CHUNK)
    p.upload("over.bin", io.BytesIO(b"old"))
    p.upload("over.bin", io.BytesIO(b"newer"), if_absent=False)
    p.upload("over.bin", io.BytesIO(os.urandom(CHUNK + 1)), if_absent=False)
    assert p.stat("over.bin").size == CHUNK + 1
    creates = [s.query for s in proxy.seen if s.method == "POST" and s.target.startswith("/upload/")]
    assert [(q["uploadType"], q.get("ifGenerationMatch")) for q in creates] == [
        (["multipart"], ["0"]), (["multipart"], None), (["resumable"], None)]


# ---- errors -------------------------------------------------------------------------------------
def test_a_denied_write_is_reported_by_check(proxy: Proxy, bucket: str) -> None:
    proxy.rule = lambda seen: (google_error(403, "forbidden", "probe@x.iam does not have storage.objects."
                                            "create access") if seen.target.startswith("/upload/") else None)
    report = provider(proxy.url, bucket).check()
    assert not report.ok
    assert [(s.name, s.message) for s in report.steps] == [
        ("write", f"write denied: forbidden on gs://{bucket}/pre/ (endpoint {proxy.url}) (missing the write "
                  "permission: storage.objects.create)")]


def test_an_unauthenticated_write_is_an_authentication_error(proxy: Proxy, bucket: str) -> None:
    proxy.rule = lambda seen: google_error(401, "required", "Login Required") if seen.method == "POST" else None
    with pytest.raises(AuthenticationError, match=f"gs://{bucket}/pre/a.bin") as excinfo:
        provider(proxy.url, bucket).upload("a.bin", io.BytesIO(b"x"))
    assert not excinfo.value.retryable


def test_a_failed_chunk_is_transient_and_hides_the_session_url(proxy: Proxy, bucket: str) -> None:
    proxy.rule = lambda seen: google_error(503, "backendError", "Backend Error") if seen.is_chunk else None
    p = provider(proxy.url, bucket, part_size=CHUNK)
    with pytest.raises(TransientError) as excinfo:
        p.upload("busy.bin", io.BytesIO(os.urandom(2 * CHUNK)))
    assert excinfo.value.retryable
    assert "upload_id" not in str(excinfo.value)
    assert len(cancels(proxy)) == 1
    assert not p.exists("busy.bin")


@pytest.mark.parametrize(("status", "reason", "expected"), [
    (404, "notFound", ObjectNotFound), (403, "forbidden", AccessDenied), (401, "required", AuthenticationError),
    (412, "conditionNotMet", ObjectExists), (429, "rateLimitExceeded", TransientError),
    (503, "backendError", TransientError), (408, None, TransientError), (403, "rateLimitExceeded", TransientError),
    (400, "invalid", StorageError),
])
def test_error_table(status: int, reason: str | None, expected: type[StorageError]) -> None:
    errors = [{"reason": reason, "message": "token ya29.secret"}] if reason else []
    exc = api_exceptions.from_http_status(status, "token ya29.secret", errors=errors)
    err = translate(exc, "gs://b/pre/k")
    assert type(err) is expected
    assert err.retryable == (expected is TransientError)
    assert "gs://b/pre/k" in str(err)
    assert "ya29" not in str(err)


@pytest.mark.parametrize(("exc", "expected"), [
    (requests.ConnectionError("to 10.0.0.1 with token"), TransientError),
    (requests.ReadTimeout("token"), TransientError),
    (auth_exceptions.TransportError("token"), TransientError),
    (auth_exceptions.DefaultCredentialsError("token"), AuthenticationError),
    (auth_exceptions.RefreshError("invalid_grant token"), AuthenticationError),
    (auth_exceptions.RefreshError("token", retryable=True), TransientError),
])
def test_transport_and_auth_errors(exc: Exception, expected: type[StorageError]) -> None:
    err = translate(exc, "gs://b/pre/k")
    assert type(err) is expected
    assert "token" not in str(err)


# ---- configuration ------------------------------------------------------------------------------
def test_a_missing_bucket_is_a_configuration_error(gcs_emulator_url: str) -> None:
    p = provider(gcs_emulator_url, unique_name(), part_size=CHUNK)
    calls: list[Callable[[], Any]] = [
        lambda: p.stat("a.bin"), lambda: p.open_reader("a.bin"), lambda: p.delete("a.bin"),
        lambda: p.upload("a.bin", io.BytesIO(b"x")), lambda: p.upload("a.bin", io.BytesIO(bytes(CHUNK + 1)))]
    for call in calls:
        with pytest.raises(ConfigurationError, match="bucket does not exist"):
            call()


def test_credentials_file_problems_name_the_option(tmp_path: Path, gcs_emulator_url: str, bucket: str) -> None:
    # The key file is a secret: opening the destination (the receiver does) does not need it; the
    # first client (a worker's) does, and names it.
    missing = provider(gcs_emulator_url, bucket, credentials_file=str(tmp_path / "missing.json"))
    with pytest.raises(MissingSecret, match=r"'credentials_file'.*no such file"):
        missing.stat("a.bin")
    bad = tmp_path / "key.json"
    bad.write_text(json.dumps({"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"}))
    p = provider(gcs_emulator_url, bucket, credentials_file=str(bad))
    with pytest.raises(ConfigurationError, match="'credentials_file'") as excinfo:
        p.stat("a.bin")  # the client, and so the key, is loaded at first use
    assert "SECRET-KEY-MATERIAL" not in str(excinfo.value) + repr(p)


def test_no_application_default_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    p = open_provider("gs://some-bucket/pre")
    with pytest.raises(AuthenticationError, match="no Application Default Credentials"):
        p.stat("a.bin")


def test_storage_emulator_host_is_honoured(monkeypatch: pytest.MonkeyPatch, gcs_emulator_url: str,
                                           bucket: str) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator_url)
    p = open_provider(f"gs://{bucket}/pre")
    p.upload("env.bin", io.BytesIO(b"via env"))
    assert read(p, "env.bin") == b"via env"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")
    with pytest.raises(ConfigurationError, match="STORAGE_EMULATOR_HOST"):
        open_provider(f"gs://{bucket}/pre")


def test_option_values_are_checked(gcs_emulator_url: str) -> None:
    with pytest.raises(ConfigurationError, match="'storage_class'"):
        provider(gcs_emulator_url, "b-1", storage_class="GLACIER")
    with pytest.raises(ConfigurationError, match="'kms_key_name'"):
        provider(gcs_emulator_url, "b-1", kms_key_name="my-key")
    with pytest.raises(ConfigurationError, match="bucket name"):
        provider(gcs_emulator_url, "Not_A_Bucket!")


def test_check_without_credentials_says_where_they_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Nothing configured and no Application Default Credentials: the check names Google's endpoint and
    # both places credentials can come from, instead of a bare "unauthenticated".
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application-default file either
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on Google Compute Engine: no metadata server
    report = open_provider("gs://some-archive-bucket/videosdk/").check()
    write = report.steps[0]
    assert not write.ok and write.message.startswith("write unauthenticated: ")
    assert "on gs://some-archive-bucket/videosdk/ (endpoint https://storage.googleapis.com)" in write.message
    assert "credentials: give the destination credentials_file" in write.message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in write.message
