"""S3-specific behaviour, against real moto servers (never a mocked boto3).

Most cases share the session's moto server. Authentication and IAM only exist on a moto started with
INITIAL_NO_AUTH_ACTION_COUNT, a process-wide setting, so those cases get a second server of their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from providers import (
    AccessDenied,
    AuthenticationError,
    ConfigurationError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    StorageProvider,
    open_provider,
)
from providers.s3 import MAX_PARTS
from providers.s3_writer import S3Writer
from tests import emulators
from tests.backends import create_s3_bucket, s3_options, unique_name

MiB = 1 << 20
PART = 5 * MiB
Make = Callable[..., StorageProvider]
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def boto(url: str, service: str = "s3", **keys: str) -> Any:
    keys = keys or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", **keys)


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


def test_stat_reports_service_checksums(make: Make) -> None:
    provider = make()
    small, big = b"abc" * 10, os.urandom(2 * PART + 1)
    provider.upload("c/small.bin", io.BytesIO(small))
    written = provider.upload("c/big.bin", io.BytesIO(big))
    info = provider.stat("c/small.bin")
    assert info.checksums["sha256"] == hashlib.sha256(small).hexdigest()
    assert info.checksums["md5"] == info.etag == hashlib.md5(small).hexdigest()
    assert '"' not in info.etag
    big_info = provider.stat("c/big.bin")
    assert big_info.checksums["sha256-composite"].endswith("-3")
    assert big_info.checksums["sha256-composite"] == written.checksums["sha256-composite"]
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
    info = provider.upload("parts/three.bin", io.BytesIO(os.urandom(2 * PART + 1)), size_hint=2 * PART + 1)
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
    provider = make()
    gets = sent_headers(provider, "GetObject")
    data = os.urandom(PART + 1)
    info = provider.upload("bad/a.bin", io.BytesIO(data))
    assert info.unverified == ()
    assert [h.get("range") for h in gets] == [None]  # one full read-back
    with provider.open_reader("bad/a.bin") as reader:
        assert reader.read() == data
    assert "composite SHA-256" in caplog.text and "the bytes read back are the ones streamed" in caplog.text


@pytest.mark.parametrize("mode", ["sha256", "md5", "off"])
def test_checksum_modes_round_trip_and_send_only_their_checksums(make: Make, mode: str) -> None:
    provider = make(checksum_mode=mode)
    parts, puts = sent_headers(provider, "UploadPart"), sent_headers(provider, "PutObject")
    for key, data in (("m/small.bin", b"hello"), ("m/big.bin", os.urandom(2 * PART + 1))):
        info = provider.upload(key, io.BytesIO(data))
        assert info.checksums["sha256"] == hashlib.sha256(data).hexdigest()
        with provider.open_reader(key) as reader:
            assert reader.read() == data
    for headers in parts + puts:
        assert ("x-amz-checksum-sha256" in headers) == (mode == "sha256")
        assert ("content-md5" in headers) == (mode == "md5")
        # Stores that predate flexible checksums reject these outright, so md5/off must not send any.
        flexible = [h for h in headers if h.startswith(("x-amz-checksum-", "x-amz-sdk-checksum-"))]
        assert mode == "sha256" or not flexible, flexible
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
    ({"checksum_mode": "crc32"}, "'checksum_mode'.*sha256, md5, off"),
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


# ---- identity and permissions, on a moto that enforces IAM -----------------------------------------
@dataclasses.dataclass
class IamMoto:
    url: str
    bucket: str
    admin: dict[str, str]
    reader: dict[str, str]  # may read and list, may not write; may assume `role_arn`
    role_arn: str  # may do anything in S3

    def provider(self, bucket: str | None = None, **options: Any) -> StorageProvider:
        return open_provider(f"s3://{bucket or self.bucket}/pre", endpoint_url=self.url, region="us-east-1",
                             addressing_style="path", **options)


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamMoto]:
    port = emulators.free_port()
    url = f"http://127.0.0.1:{port}"
    # Three unauthenticated actions create an all-powerful user; everything after is signed and checked.
    service = emulators.Process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    proc = service.start()
    try:
        emulators.wait_until(lambda: emulators.http_answers(url + "/moto-api/"), "moto server (IAM)", proc)
        iam = boto(url, "iam")
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all",
                            PolicyDocument=_policy({"Effect": "Allow", "Action": "*", "Resource": "*"}))
        admin = _keys(iam.create_access_key(UserName="admin"))
        iam = boto(url, "iam", **admin)
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=_policy(
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "sts:AssumeRole"],
             "Resource": "*"}))
        role = iam.create_role(RoleName="archiver", AssumeRolePolicyDocument=_policy(
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}))["Role"]
        iam.put_role_policy(RoleName="archiver", PolicyName="s3", PolicyDocument=_policy(
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}))
        bucket = unique_name()
        boto(url, **admin).create_bucket(Bucket=bucket)
        yield IamMoto(url, bucket, admin, _keys(iam.create_access_key(UserName="reader")), role["Arn"])
    finally:
        service.stop()


def _keys(answer: dict[str, Any]) -> dict[str, str]:
    key = answer["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def _options(keys: dict[str, str]) -> dict[str, str]:
    return {"access_key_id": keys["aws_access_key_id"], "secret_access_key": keys["aws_secret_access_key"]}


def test_a_wrong_secret_key_is_an_authentication_error(iam_moto: IamMoto) -> None:
    provider = iam_moto.provider(access_key_id=iam_moto.admin["aws_access_key_id"],
                                 secret_access_key="not-the-secret")
    with pytest.raises(AuthenticationError, match="failed: SignatureDoesNotMatch on s3://") as exc:
        provider.upload("a.bin", io.BytesIO(b"x"))
    assert "not-the-secret" not in str(exc.value)
    unknown = iam_moto.provider(access_key_id="AKIAUNKNOWNUNKNOWN00", secret_access_key="whatever")
    with pytest.raises(AuthenticationError, match="InvalidAccessKeyId"):
        unknown.upload("a.bin", io.BytesIO(b"x"))


def test_a_user_without_put_permission_is_denied(iam_moto: IamMoto) -> None:
    provider = iam_moto.provider(**_options(iam_moto.reader))
    with pytest.raises(AccessDenied) as excinfo:
        provider.upload("meeting/a.mp4", io.BytesIO(b"x"))
    assert str(excinfo.value) == f"denied: AccessDenied on s3://{iam_moto.bucket}/pre/meeting/a.mp4"
    report = provider.check()
    assert not report.ok
    assert report.steps[0].name == "write" and not report.steps[0].ok
    assert report.steps[0].message.startswith(f"write denied: AccessDenied on s3://{iam_moto.bucket}/pre/")
    with pytest.raises(ObjectNotFound):  # reading is allowed, so a missing key is just missing
        provider.stat("meeting/a.mp4")


def test_cleanup_without_the_bucket_level_list_permission_is_skipped(iam_moto: IamMoto) -> None:
    # Policies scoped to bucket/prefix/* cannot grant ListBucketMultipartUploads: copies must not fail.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="AccessDenied"):
        boto(iam_moto.url, **iam_moto.reader).list_multipart_uploads(Bucket=iam_moto.bucket)
    assert iam_moto.provider(**_options(iam_moto.reader)).discard_incomplete("meeting/a.mp4") == 0


def test_a_missing_bucket_is_a_configuration_error(iam_moto: IamMoto) -> None:
    provider = iam_moto.provider(bucket="no-such-bucket-here", **_options(iam_moto.admin))
    with pytest.raises(ConfigurationError, match="bucket 'no-such-bucket-here' does not exist"):
        provider.upload("a.bin", io.BytesIO(b"x"))
    report = provider.check()
    assert [(s.name, s.ok) for s in report.steps] == [("write", False)]
    assert "NoSuchBucket" in report.steps[0].message


def test_role_arn_writes_with_the_assumed_role(iam_moto: IamMoto) -> None:
    # The reader may not write; only the role may, so a successful write proves the role signed it.
    provider = iam_moto.provider(**_options(iam_moto.reader), role_arn=iam_moto.role_arn,
                                 external_id="ext-7e1", role_session_name="archiver-test",
                                 sts_endpoint_url=iam_moto.url)
    data = os.urandom(PART + 1)
    provider.upload("role/a.bin", io.BytesIO(data), content_type="video/mp4")
    with provider.open_reader("role/a.bin") as reader:
        assert reader.read() == data
    with urllib.request.urlopen(iam_moto.url + "/moto-api/data.json") as answer:
        sessions = json.load(answer)["sts"]["AssumedRole"]
    assert any(s["external_id"] == "ext-7e1" and s["session_name"] == "archiver-test"
               and s["role_arn"] == iam_moto.role_arn for s in sessions)


@pytest.fixture
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty ambient chain: no AWS variables, no shared files, no instance metadata lookups."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path / "credentials"


def test_credentials_come_from_the_ambient_chain_or_a_profile(
        iam_moto: IamMoto, no_ambient_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthenticationError, match="NoCredentialsError"):
        iam_moto.provider().upload("amb/a.bin", io.BytesIO(b"x"))
    no_ambient_credentials.write_text(
        "[writer]\naws_access_key_id = {aws_access_key_id}\naws_secret_access_key = {aws_secret_access_key}\n"
        .format(**iam_moto.admin))
    iam_moto.provider(profile="writer").upload("amb/profile.bin", io.BytesIO(b"x"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", iam_moto.reader["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", iam_moto.reader["aws_secret_access_key"])
    with pytest.raises(AccessDenied):  # the environment's reader signed it
        iam_moto.provider().upload("amb/env.bin", io.BytesIO(b"x"))
    # ...and the same ambient reader is a valid source for assuming the role, which may write.
    iam_moto.provider(role_arn=iam_moto.role_arn, sts_endpoint_url=iam_moto.url).upload(
        "amb/role.bin", io.BytesIO(b"x"))
