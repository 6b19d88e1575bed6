"""S3-specific behaviour, against the session's real moto server (never a mocked boto3).

Authentication and permissions: tests/test_s3_iam.py; stores whose ETags are not MD5s and integrity
read-backs: tests/test_s3_readback.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Callable
from typing import Any

import pytest

from providers import (
    ConfigurationError,
    ObjectExists,
    StorageProvider,
    open_provider,
)
from providers.s3.provider import MAX_PARTS
from providers.s3.writer import S3Writer
from tests.backends import boto, create_s3_bucket, s3_options, unique_name
from tests.http_proxy import Proxy, error_answer

MiB = 1 << 20
PART = 5 * MiB
Make = Callable[..., StorageProvider]
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture
def bucket(moto_url: str) -> str:
    name = unique_name()
    create_s3_bucket(moto_url, name)
    return name


@pytest.fixture
def make(moto_url: str, bucket: str) -> Make:
    return lambda **o: open_provider(f"s3://{bucket}/pre", **{**s3_options(moto_url), "part_size": PART,
                                                             "concurrency": 3, **o})


@pytest.fixture
def s3(moto_url: str) -> Any:
    return boto(moto_url)


def sent_headers(provider: StorageProvider, operation: str) -> list[dict[str, str]]:
    """Record the headers of every `operation` request, through botocore's public event hooks."""
    seen: list[dict[str, str]] = []

    def hook(request: Any, **_: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        seen.append({**headers, "body-type": type(request.body).__name__})

    provider.client.meta.events.register(f"before-send.s3.{operation}", hook)
    return seen


# ---- what lands with the object -----------------------------------------------------------------
def test_storage_class_is_reported_for_single_and_multipart_writes(make: Make) -> None:
    provider = make(storage_class="STANDARD_IA")
    written = provider.upload("sc/small.bin", io.BytesIO(b"small"))
    provider.upload("sc/big.bin", io.BytesIO(os.urandom(PART + 1)))
    assert written.storage_class == "STANDARD_IA"
    assert provider.stat("sc/small.bin").storage_class == "STANDARD_IA"
    assert provider.stat("sc/big.bin").storage_class == "STANDARD_IA"
    plain = make()
    plain.upload("sc/plain.bin", io.BytesIO(b"x"))
    assert plain.stat("sc/plain.bin").storage_class == "STANDARD"  # S3 omits the header for STANDARD


KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/k1"


def test_check_works_for_an_archive_storage_class(make: Make) -> None:
    provider = make(storage_class="DEEP_ARCHIVE")
    report = provider.check()  # the probe could not be read back if it were archived too
    assert report.ok, str(report)
    provider.upload("sc/archived.bin", io.BytesIO(b"x"))
    assert provider.stat("sc/archived.bin").storage_class == "DEEP_ARCHIVE"


@pytest.mark.parametrize("options", [{"sse": "AES256"}, {"sse": "aws:kms", "kms_key_id": KMS_KEY}],
                         ids=["AES256", "aws-kms"])
def test_server_side_encryption_round_trip(make: Make, s3: Any, bucket: str, options: dict[str, str]) -> None:
    provider = make(**options)
    for key, data in (("sse/small.bin", b"secret recording"), ("sse/big.bin", os.urandom(PART + 3))):
        provider.upload(key, io.BytesIO(data))
        with provider.open_reader(key) as reader:
            assert reader.read() == data
        head = s3.head_object(Bucket=bucket, Key=f"pre/{key}")
        assert head["ServerSideEncryption"] == options["sse"]
        assert head.get("SSEKMSKeyId") == options.get("kms_key_id")


def test_tags_acl_and_content_disposition_land(make: Make, s3: Any, bucket: str) -> None:
    disposition = 'attachment; filename="meeting.mp4"'
    provider = make(tags={"retention": "7 years", "source": "videosdk/rec=1+2"},
                    content_disposition=disposition, acl="public-read")
    provider.upload("t/small.mp4", io.BytesIO(b"x"))
    provider.upload("t/big.mp4", io.BytesIO(os.urandom(PART + 1)))
    for key in ("pre/t/small.mp4", "pre/t/big.mp4"):
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
        assert tags == {"retention": "7 years", "source": "videosdk/rec=1+2"}
        assert s3.head_object(Bucket=bucket, Key=key)["ContentDisposition"] == disposition
        grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
        readers = [g["Grantee"] for g in grants if g["Permission"] == "READ"]
        assert {"URI": ALL_USERS, "Type": "Group"} in readers


@pytest.mark.parametrize("mode", ["crc32", "sha256"])
def test_stat_reports_service_checksums(make: Make, mode: str) -> None:
    provider = make(checksum_mode=mode)
    small, big = b"abc" * 10, os.urandom(2 * PART + 1)
    provider.upload("c/small.bin", io.BytesIO(small))
    written = provider.upload("c/big.bin", io.BytesIO(big))
    info = provider.stat("c/small.bin")
    assert info.checksums["sha256"] == hashlib.sha256(small).hexdigest()
    assert info.checksums["md5"] == info.etag == hashlib.md5(small).hexdigest()
    assert '"' not in info.etag
    big_info = provider.stat("c/big.bin")
    assert big_info.checksums[f"{mode}-composite"].endswith("-3")
    assert big_info.checksums[f"{mode}-composite"] == written.checksums[f"{mode}-composite"]
    assert "md5" not in big_info.checksums  # a multipart ETag is not an MD5 of the bytes
    assert written.checksums["sha256"] == hashlib.sha256(big).hexdigest()


# ---- multipart uploads: parts, aborts, leftovers ------------------------------------------------
def test_abort_leaves_no_pending_multipart_upload(make: Make, s3: Any, bucket: str) -> None:
    provider = make()
    with pytest.raises(RuntimeError), provider.open_writer("ab/a.bin") as writer:
        writer.write(os.urandom(2 * PART + 1))
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads")  # the upload really was started
        raise RuntimeError("source died")
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert not provider.exists("ab/a.bin")


def test_object_exists_on_complete_aborts_the_upload(make: Make, s3: Any, bucket: str) -> None:
    provider = make()
    provider.upload("ab/taken.bin", io.BytesIO(b"first"))
    with pytest.raises(ObjectExists, match=rf"exists: PreconditionFailed on s3://{bucket}/pre/ab/taken"):
        provider.upload("ab/taken.bin", io.BytesIO(os.urandom(PART + 1)))
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert provider.stat("ab/taken.bin").size == 5


def test_an_upload_that_cannot_be_aborted_is_reported_and_discarded_later(make: Make, moto_url: str, s3: Any,
                                                                         bucket: str) -> None:
    proxy = Proxy(moto_url)  # AbortMultipartUpload denied, as without s3:AbortMultipartUpload
    proxy.rule = lambda seen: (error_answer(403, "AccessDenied")
                               if seen.method == "DELETE" and "uploadId" in seen.query else None)
    try:
        provider = make(endpoint_url=proxy.url)
        provider.upload("ab/kept.bin", io.BytesIO(b"first"))
        writer = provider.open_writer("ab/kept.bin")
        writer.write(os.urandom(PART + 1))
        with pytest.raises(ObjectExists) as excinfo:
            writer.commit()
    finally:
        proxy.close()
    [upload] = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert writer.left_incomplete == f"the multipart upload {upload['UploadId']} of s3://{bucket}/pre/ab/kept.bin " \
                                     "(AccessDenied)"
    assert str(excinfo.value).endswith(f"; {writer.left_incomplete} could not be discarded")
    assert make().discard_incomplete("ab/kept.bin") == 1  # what the next attempt does first
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_discard_incomplete_aborts_a_dead_writers_upload_of_that_key_only(make: Make, s3: Any,
                                                                         bucket: str) -> None:
    provider = make()
    dead, neighbour = provider.open_writer("dead/a.bin"), provider.open_writer("dead/a.bin.2")
    for writer in (dead, neighbour):
        writer.write(os.urandom(PART + 1))  # the multipart upload has begun; the writer "dies" here
    assert provider.discard_incomplete("dead/a.bin") == 1
    left = [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == ["pre/dead/a.bin.2"]
    assert provider.discard_incomplete("dead/a.bin") == 0
    dead.abort()  # its upload is already gone: NoSuchUpload is not an error
    neighbour.abort()
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_part_size_grows_to_stay_under_10000_parts(make: Make) -> None:
    provider = make(part_size=None)
    assert provider._part_size(None) == 8 * MiB  # unknown length: 8 MiB x 10,000 parts
    assert provider._part_size(1 << 30) == 8 * MiB
    for hint in (100 << 30, (80 << 30) + 1, 5 << 40):
        size = provider._part_size(hint)
        assert size % MiB == 0 and size >= 8 * MiB
        assert -(-hint // size) <= MAX_PARTS, hint
        assert -(-hint // (size - MiB)) > MAX_PARTS, "not the smallest whole-MiB part that fits"
    assert make(part_size="5MiB")._part_size(None) == PART


def test_a_three_part_write_sends_exactly_three_parts(make: Make, s3: Any, bucket: str) -> None:
    provider = make()
    sent, puts = sent_headers(provider, "UploadPart"), sent_headers(provider, "PutObject")
    info = provider.upload("parts/three.bin", io.BytesIO(os.urandom(2 * PART + 1)))
    assert info.etag and info.etag.endswith("-3")
    assert s3.head_object(Bucket=bucket, Key="pre/parts/three.bin", PartNumber=1)["PartsCount"] == 3
    assert len(sent) == 3
    provider.upload("parts/one.bin", io.BytesIO(b"one part"))
    # botocore sends the writer's bytearray as it is: no copy of a part is made on the way out.
    assert {h["body-type"] for h in sent + puts} == {"bytearray"}


# ---- integrity ----------------------------------------------------------------------------------
def test_a_composite_mismatch_the_bytes_do_not_confirm_keeps_the_object(
        make: Make, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # The store's composite SHA-256 disagrees with the one expected (here: the part digests it is
    # compared with are wrong). That is not proof: the object is read back whole and, being the
    # bytes streamed, kept. (Bytes that really differ: tests/test_s3_readback.py.)
    original = S3Writer._run_part

    def other_digest(self: S3Writer, number: int, data: bytearray) -> Any:
        part = original(self, number, data)
        return dataclasses.replace(part, sha256=hashlib.sha256(b"not these bytes").digest())

    monkeypatch.setattr(S3Writer, "_run_part", other_digest)
    provider = make(checksum_mode="sha256")
    gets = sent_headers(provider, "GetObject")
    data = os.urandom(PART + 1)
    info = provider.upload("bad/a.bin", io.BytesIO(data))
    assert info.unverified == ()
    assert [h.get("range") for h in gets] == [None]  # one full read-back
    with provider.open_reader("bad/a.bin") as reader:
        assert reader.read() == data
    assert "composite SHA-256" in caplog.text and "the bytes read back are the ones streamed" in caplog.text


@pytest.mark.parametrize("mode", ["crc32", "sha256", "md5", "off"])
def test_checksum_modes_round_trip_and_send_only_their_checksums(make: Make, mode: str) -> None:
    provider = make(checksum_mode=mode)
    parts, puts = sent_headers(provider, "UploadPart"), sent_headers(provider, "PutObject")
    for key, data in (("m/small.bin", b"hello"), ("m/big.bin", os.urandom(2 * PART + 1))):
        info = provider.upload(key, io.BytesIO(data))
        assert info.checksums["sha256"] == hashlib.sha256(data).hexdigest()
        with provider.open_reader(key) as reader:
            assert reader.read() == data
    for headers in parts:  # crc32: each part its CRC32, the cheap one; no second SHA-256 pass
        assert ("x-amz-checksum-sha256" in headers) == (mode == "sha256")
        assert ("x-amz-checksum-crc32" in headers) == (mode == "crc32")
    for headers in puts:  # a single request carries the stream's SHA-256, known already
        assert ("x-amz-checksum-sha256" in headers) == (mode in ("sha256", "crc32"))
    for headers in parts + puts:
        assert ("content-md5" in headers) == (mode == "md5")
        # Stores that predate flexible checksums reject these outright, so md5/off must not send any.
        flexible = [h for h in headers if h.startswith(("x-amz-checksum-", "x-amz-sdk-checksum-"))]
        assert mode in ("sha256", "crc32") or not flexible, flexible
        # Over http a body is signed only when no checksum header covers it (no second SHA-256 pass).
        payload = headers["x-amz-content-sha256"]
        signed = (payload.decode() if isinstance(payload, bytes) else payload) != "UNSIGNED-PAYLOAD"
        assert signed == (mode == "off"), payload
    assert len(parts) == 3 and len(puts) == 1


# ---- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "named"), [
    ({"kms_key_id": "k1"}, "'kms_key_id'"),
    ({"kms_key_id": "k1", "sse": "AES256"}, "'kms_key_id'"),
    ({"access_key_id": "AKIA", "secret_access_key": None}, "'access_key_id'"),
    ({"external_id": "x"}, "'external_id'"),
    ({"colour": "blue"}, "'colour'"),
    ({"concurrency": "four"}, "'concurrency'.*int"),
    ({"tags": {"a": 1}}, "'tags'"),
    ({"tags": {"team": "a&b"}}, "'tags'.*letters"),
    ({"checksum_mode": "crc64nvme"}, "'checksum_mode'.*crc32, sha256, md5, off"),
    ({"part_size": "4MiB"}, "'part_size'.*5MiB"),
    ({"part_size": "6GiB"}, "'part_size'.*5GiB"),
    ({"endpoint_url": "localhost:9000"}, "'endpoint_url'"),
], ids=lambda v: "-".join(v) if isinstance(v, dict) else None)
def test_bad_options_are_named(make: Make, options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        make(**options)


def test_secrets_stay_out_of_repr_and_errors(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVER_TEST_TOKEN", "token-from-env-123")
    provider = open_provider(f"s3://{unique_name()}/p", endpoint_url=moto_url, region="us-east-1",
                             access_key_id="AKIAEXAMPLE", secret_access_key="very-secret-key",
                             session_token_env="ARCHIVER_TEST_TOKEN")
    with pytest.raises(ConfigurationError) as excinfo:  # the bucket does not exist
        provider.upload("a.bin", io.BytesIO(b"x"))
    assert "does not exist" in str(excinfo.value)
    for text in (repr(provider), str(excinfo.value)):
        assert "very-secret-key" not in text and "token-from-env-123" not in text
