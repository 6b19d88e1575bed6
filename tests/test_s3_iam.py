"""S3 identity and permissions, on a moto started with INITIAL_NO_AUTH_ACTION_COUNT so that it checks
signatures and IAM policies (a process-wide setting, hence a server of its own for this module).

Write-only credentials are a common archive policy: a commit they cannot read back is reported with
what was not verified, never failed while the object stays visible; `check()` names each missing
permission and the probe it could not remove.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers import (
    AccessDenied,
    AuthenticationError,
    ConfigurationError,
    IntegrityError,
    ObjectNotFound,
    StorageProvider,
    open_provider,
)
from tests import emulators
from tests.backends import boto, create_s3_bucket, s3_options, unique_name
from tests.http_proxy import Proxy, error_answer

MiB = 1 << 20
PART = 5 * MiB


@dataclasses.dataclass
class IamMoto:
    url: str
    bucket: str
    admin: dict[str, str]
    reader: dict[str, str]  # may read and list, may not write; may assume `role_arn`
    role_arn: str  # may do anything in S3
    users: dict[str, dict[str, str]]  # "writer": PutObject; "writer-deleter": + DeleteObject; "no-delete": + Get

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
        users = {}
        for name, actions in (("writer", ["s3:PutObject"]), ("writer-deleter", ["s3:PutObject", "s3:DeleteObject"]),
                              ("no-delete", ["s3:PutObject", "s3:GetObject"])):
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=_policy(
                {"Effect": "Allow", "Action": actions, "Resource": "*"}))
            users[name] = _keys(iam.create_access_key(UserName=name))
        bucket = unique_name()
        boto(url, **admin).create_bucket(Bucket=bucket)
        yield IamMoto(url, bucket, admin, _keys(iam.create_access_key(UserName="reader")), role["Arn"], users)
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


# ---- write-only credentials: nothing visible that the caller is not told about ------------------
def keys_in(iam_moto: IamMoto, prefix: str) -> list[str]:
    listing = boto(iam_moto.url, **iam_moto.admin).list_objects_v2(Bucket=iam_moto.bucket, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.mark.parametrize("size", [100, 2 * PART + 1], ids=["single-put", "multipart"])
@pytest.mark.parametrize("mode", ["crc32", "sha256", "md5"])
def test_write_only_credentials_commit_and_say_what_was_not_verified(iam_moto: IamMoto, size: int,
                                                                    mode: str) -> None:
    provider = iam_moto.provider(**_options(iam_moto.users["writer"]), checksum_mode=mode, part_size=PART)
    data = os.urandom(size)
    key = f"wo/{mode}-{size}.bin"
    info = provider.upload(key, io.BytesIO(data))
    if size <= PART and mode != "md5":
        # The PutObject carried the stream's SHA-256 and S3 echoed it: S3 checked the bytes on arrival,
        # so nothing is left unverified and no read (which these credentials may not do) was needed.
        assert info.unverified == ()
    else:
        checked = {"sha256": "SHA-256 of each part", "md5": "Content-MD5 of each part",
                   "crc32": "CRC32 of each part"}[mode]
        assert info.unverified == (f"read denied (HTTP 403): the stored size and checksums were not read back; "
                                   f"S3 checked the {checked} on arrival",)
    stored = boto(iam_moto.url, **iam_moto.admin).get_object(Bucket=iam_moto.bucket, Key=f"pre/{key}")
    assert stored["Body"].read() == data


def test_check_with_write_only_credentials_names_each_permission_and_the_probe_left(iam_moto: IamMoto) -> None:
    provider = iam_moto.provider(**_options(iam_moto.users["writer"]))
    before = set(keys_in(iam_moto, "pre/.archiver-probe-"))
    report = provider.check()
    assert [(s.name, s.ok) for s in report.steps] == [("write", True), ("stat", False), ("read", False),
                                                      ("delete", False)]
    where = f"s3://{iam_moto.bucket}/pre/ (endpoint {iam_moto.url})"
    # The probe is one PutObject whose SHA-256 S3 checked and echoed: the write itself is verified
    # without reading; the two denied reads are named below.
    assert report.steps[0].message == "write ok"
    assert report.steps[1].message == f"stat denied: HTTP 403 on {where} (missing the read permission: s3:GetObject)"
    assert report.steps[2].message == (f"read denied: AccessDenied on {where} (missing the read permission: "
                                       "s3:GetObject)")
    left = sorted(set(keys_in(iam_moto, "pre/.archiver-probe-")) - before)
    assert len(left) == 1
    assert report.steps[3].message == (f"delete denied: AccessDenied on {where} (missing the delete permission: "
                                       f"s3:DeleteObject); remove s3://{iam_moto.bucket}/{left[0]} by hand")
    boto(iam_moto.url, **iam_moto.admin).delete_object(Bucket=iam_moto.bucket, Key=left[0])


def test_check_removes_a_probe_it_could_write_but_not_read(iam_moto: IamMoto) -> None:
    before = set(keys_in(iam_moto, "pre/.archiver-probe-"))
    report = iam_moto.provider(**_options(iam_moto.users["writer-deleter"])).check()
    assert [(s.name, s.ok) for s in report.steps] == [("write", True), ("stat", False), ("read", False),
                                                      ("delete", True)]
    assert set(keys_in(iam_moto, "pre/.archiver-probe-")) == before


@pytest.mark.parametrize("size", [100, 2 * PART + 1], ids=["single-put", "multipart"])
def test_an_object_that_fails_its_check_and_cannot_be_deleted_is_named(iam_moto: IamMoto, size: int) -> None:
    # md5: a single PutObject is then checked with a HEAD (the faked size below is what it finds); with
    # a SHA-256 that S3 echoes, the answer alone proves the bytes and the HEAD is not sent.
    provider = iam_moto.provider(**_options(iam_moto.users["no-delete"]), part_size=PART, checksum_mode="md5")
    with provider.open_writer(f"nd/{size}.bin") as writer:
        writer.write(os.urandom(size))
        writer._size += 1  # the stored size will differ from the streamed one: proof
        with pytest.raises(IntegrityError) as excinfo:
            writer.commit()
    assert excinfo.value.left_visible == f"nd/{size}.bin"
    assert str(excinfo.value).endswith(f"; the object is still visible at s3://{iam_moto.bucket}/pre/nd/{size}.bin "
                                       "(deleting it failed: AccessDenied)")
    assert keys_in(iam_moto, f"pre/nd/{size}.bin") == [f"pre/nd/{size}.bin"]


def test_check_names_a_missing_tagging_permission(moto_url: str) -> None:
    # moto does not check s3:PutObjectTagging; S3 refuses x-amz-tagging without it, as this proxy does.
    bucket = unique_name()
    create_s3_bucket(moto_url, bucket)
    proxy = Proxy(moto_url)
    proxy.rule = lambda seen: (error_answer(403, "AccessDenied") if seen.header("x-amz-tagging") else None)
    try:
        provider = open_provider(f"s3://{bucket}/pre", **s3_options(proxy.url), tags={"retention": "7y"})
        report = provider.check()
    finally:
        proxy.close()
    assert [(s.name, s.ok) for s in report.steps] == [("write", True), ("tag", False), ("stat", True),
                                                      ("read", True), ("compare", True), ("delete", True)]
    assert report.steps[1].message == (f"write with tags denied: AccessDenied on s3://{bucket}/pre/ (endpoint "
                                       f"{proxy.url}) (missing the tag permission: s3:PutObjectTagging)")
    assert not boto(moto_url).list_objects_v2(Bucket=bucket).get("Contents")


@pytest.mark.usefixtures("restore_root_logging")
def test_check_probes_under_the_destinations_prefix(iam_moto: IamMoto, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The usual least-privilege archive policy: objects under videosdk/* only. Copies work with it, so
    # `archiver check` must pass too: its probe goes under the key template's fixed start, not the root.
    from archiver.cli import main

    iam = boto(iam_moto.url, "iam", **iam_moto.admin)
    iam.create_user(UserName="prefixed")
    iam.put_user_policy(UserName="prefixed", PolicyName="s3", PolicyDocument=_policy(
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{iam_moto.bucket}/videosdk/*"}))
    keys = _keys(iam.create_access_key(UserName="prefixed"))
    root = open_provider(f"s3://{iam_moto.bucket}", endpoint_url=iam_moto.url, region="us-east-1",
                         addressing_style="path", **_options(keys))
    with pytest.raises(AccessDenied):  # the policy is enforced: the bucket root is out of bounds
        root.upload("outside.bin", io.BytesIO(b"x"))
    monkeypatch.setenv("IAM_PREFIXED_SECRET", keys["aws_secret_access_key"])
    config = tmp_path / "archiver.toml"
    config.write_text(f"""
database_url = "sqlite:///{tmp_path}/ledger.db"

[[destinations]]
name = "s3"
url = "s3://{iam_moto.bucket}/videosdk/{{meetingId}}/"
endpoint_url = "{iam_moto.url}"
region = "us-east-1"
addressing_style = "path"
access_key_id = "{keys["aws_access_key_id"]}"
secret_access_key_env = "IAM_PREFIXED_SECRET"
""")
    code = main(["--config", str(config), "check", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0, rows
    assert [r["step"] for r in rows] == ["write", "stat", "read", "compare", "delete"]
    assert {r["url"] for r in rows} == {f"s3://{iam_moto.bucket}/videosdk/"}


def test_check_failures_name_the_endpoint_and_where_credentials_go(iam_moto: IamMoto,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    report = iam_moto.provider().check()  # no credentials anywhere
    write = report.steps[0]
    assert not write.ok
    assert f"(endpoint {iam_moto.url})" in write.message
    assert "credentials: give the destination access_key_id with secret_access_key_env" in write.message
    denied = iam_moto.provider(**_options(iam_moto.reader)).check()
    assert f"(endpoint {iam_moto.url}) (missing the write permission: s3:PutObject)" in denied.steps[0].message
