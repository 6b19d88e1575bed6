"""S3 integrity never deletes a good object: stores whose ETags are not MD5s of the body (R2, MinIO
with SSE, SSE-KMS, SSE-C) keep every copy, verified by reading back; a body that really differs is
still caught and removed (only that version). moto sits behind tests/s3_stores.py's proxy.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from providers import IntegrityError, StorageProvider, open_provider
from tests.backends import create_s3_bucket, s3_options, unique_name
from tests.http_proxy import Proxy, Seen
from tests.s3_stores import OtherEtags, opaque, scrambled

MiB = 1 << 20
PART = 5 * MiB
SIZES = {"single-put": 100_000, "multipart": 2 * PART + 1}
KMS = {"x-amz-server-side-encryption": "aws:kms"}
SSE_C = {"x-amz-server-side-encryption-customer-algorithm": "AES256"}


@pytest.fixture
def bucket(moto_url: str) -> str:
    name = unique_name()
    create_s3_bucket(moto_url, name)
    return name


@pytest.fixture
def direct(moto_url: str) -> Any:
    """moto itself, bypassing the proxy: what is really stored."""
    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


@pytest.fixture
def store(moto_url: str) -> Iterator[Proxy]:
    proxy = Proxy(moto_url)
    yield proxy
    proxy.close()


def through(proxy: Proxy, bucket: str, **options: Any) -> StorageProvider:
    return open_provider(f"s3://{bucket}/pre", **{**s3_options(proxy.url), "part_size": PART, **options})


def ranged_gets(proxy: Proxy) -> list[str]:
    return [s.header("Range") or "whole" for s in proxy.requests("GET", "/pre/")]


def stored(direct: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(direct.get_object(Bucket=bucket, Key=f"pre/{key}")["Body"].read())
    except direct.exceptions.NoSuchKey:
        return None


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize(("fake", "headers"), [(scrambled, {}), (opaque, {}), (scrambled, KMS), (scrambled, SSE_C)],
                         ids=["md5-shaped", "not-hex", "sse-kms", "sse-c"])
def test_md5_mode_keeps_an_object_whose_etag_is_not_an_md5(store: Proxy, bucket: str, direct: Any, size: int,
                                                            fake: Callable[[str], str],
                                                            headers: dict[str, str]) -> None:
    OtherEtags(store, fake, headers)
    provider = through(store, bucket, checksum_mode="md5")
    data = os.urandom(size)
    info = provider.upload("r/a.bin", io.BytesIO(data))
    assert (info.size, info.unverified) == (size, ())
    assert stored(direct, bucket, "r/a.bin") == data
    assert not store.requests("DELETE")
    # Verified by ranged reads compared with the streamed part MD5s: first, middle and last part.
    expected = ([f"bytes=0-{PART - 1}", f"bytes={PART}-{2 * PART - 1}", f"bytes={2 * PART}-{2 * PART}"]
                if size > PART else [f"bytes=0-{size - 1}"])
    assert ranged_gets(store) == expected


def test_readback_full_reads_the_whole_object_once(store: Proxy, bucket: str) -> None:
    OtherEtags(store)
    provider = through(store, bucket, checksum_mode="md5", readback="full")
    provider.upload("r/full.bin", io.BytesIO(os.urandom(2 * PART + 1)))
    assert ranged_gets(store) == ["whole"]


def test_an_md5_etag_that_matches_needs_no_readback(store: Proxy, bucket: str) -> None:
    provider = through(store, bucket, checksum_mode="md5")  # moto's ETags are AWS's: MD5s
    provider.upload("r/plain.bin", io.BytesIO(os.urandom(100)))
    provider.upload("r/plain-mp.bin", io.BytesIO(os.urandom(PART + 1)))
    assert ranged_gets(store) == []


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("mode", ["md5", "sha256", "crc32"])
def test_bytes_that_read_back_different_are_caught_and_removed(store: Proxy, bucket: str, direct: Any,
                                                               size: int, mode: str) -> None:
    etags = OtherEtags(store)
    etags.strip_checksums = True  # in sha256 and crc32 modes: a store that keeps no checksum
    etags.corrupt_reads = True
    provider = through(store, bucket, checksum_mode=mode)
    with pytest.raises(IntegrityError, match=r"part 1 \(bytes 0-.*\) read back with .*the object was deleted") as exc:
        provider.upload("r/bad.bin", io.BytesIO(os.urandom(size)))
    assert exc.value.left_visible is None
    assert stored(direct, bucket, "r/bad.bin") is None


@pytest.mark.parametrize("mode", ["md5", "sha256", "crc32"])
def test_a_stored_object_that_differs_is_caught(store: Proxy, bucket: str, direct: Any, mode: str) -> None:
    # The store answers the commit, but what it keeps is other bytes of the same length.
    etags = OtherEtags(store)
    size = 2 * PART + 1

    def replace_stored(seen: Seen) -> None:
        if seen.method == "POST":
            direct.put_object(Bucket=bucket, Key="pre/r/replaced.bin", Body=os.urandom(size))

    etags.after_commit = replace_stored
    provider = through(store, bucket, checksum_mode=mode)
    with pytest.raises(IntegrityError, match="read back") as exc:
        provider.upload("r/replaced.bin", io.BytesIO(os.urandom(size)))
    assert exc.value.left_visible is None
    assert stored(direct, bucket, "r/replaced.bin") is None


def test_the_removal_spares_an_object_another_writer_put_there_meanwhile(store: Proxy, bucket: str,
                                                                        direct: Any) -> None:
    etags = OtherEtags(store)
    etags.corrupt_reads = True
    original = store.on_response

    def replaced_while_reading(seen: Seen, answer: Any) -> Any:
        answer = original(seen, answer)
        if seen.method == "GET" and seen.header("Range"):  # after HEAD, before the removal
            direct.put_object(Bucket=bucket, Key="pre/r/raced.bin", Body=b"someone else's")
        return answer

    store.on_response = replaced_while_reading
    provider = through(store, bucket, checksum_mode="md5")
    with pytest.raises(IntegrityError):
        provider.upload("r/raced.bin", io.BytesIO(os.urandom(1000)), if_absent=False)
    assert stored(direct, bucket, "r/raced.bin") == b"someone else's"


def test_in_a_versioned_bucket_only_the_bad_version_is_removed(store: Proxy, bucket: str, direct: Any) -> None:
    direct.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    direct.put_object(Bucket=bucket, Key="pre/r/v.bin", Body=b"the previous version")
    etags = OtherEtags(store)
    etags.corrupt_reads = True
    provider = through(store, bucket, checksum_mode="md5")
    with pytest.raises(IntegrityError):
        provider.upload("r/v.bin", io.BytesIO(os.urandom(PART + 1)), if_absent=False)
    assert stored(direct, bucket, "r/v.bin") == b"the previous version"  # current again; no delete marker
    versions = direct.list_object_versions(Bucket=bucket, Prefix="pre/r/v.bin")
    assert len(versions.get("Versions", [])) == 1 and not versions.get("DeleteMarkers")
    assert all("versionId" in s.query for s in store.requests("GET", "/pre/"))


@pytest.mark.parametrize("mode", ["crc32", "sha256"])
def test_without_a_stored_checksum_ranges_are_read_back(store: Proxy, bucket: str, direct: Any, mode: str) -> None:
    # The ranges are compared with the part digests streamed: the CRC32s sent, or the SHA-256s.
    etags = OtherEtags(store)
    etags.strip_checksums = True
    provider = through(store, bucket, checksum_mode=mode)
    data = os.urandom(3 * PART)
    provider.upload("r/nosum.bin", io.BytesIO(data))
    assert stored(direct, bucket, "r/nosum.bin") == data
    assert ranged_gets(store) == [f"bytes=0-{PART - 1}", f"bytes={PART}-{2 * PART - 1}",
                                  f"bytes={2 * PART}-{3 * PART - 1}"]


def test_checksum_mode_off_reads_back_only_when_asked(store: Proxy, bucket: str) -> None:
    OtherEtags(store)
    through(store, bucket, checksum_mode="off").upload("r/off.bin", io.BytesIO(os.urandom(PART + 1)))
    assert ranged_gets(store) == []
    through(store, bucket, checksum_mode="off", readback="full").upload("r/off2.bin", io.BytesIO(b"x" * 10))
    assert ranged_gets(store) == ["whole"]


def test_a_part_corrupted_on_the_way_is_refused(store: Proxy, bucket: str, direct: Any) -> None:
    # One byte of part 2 flipped after its CRC32 was computed (the default checksum_mode): S3 refuses
    # such a part (BadDigest); moto keeps it, and the composite CRC32 of what it kept, then the bytes
    # read back, differ from the stream. Either way nothing stays stored.
    def flip(seen: Seen) -> Seen | None:
        if seen.method == "PUT" and seen.query.get("partNumber") == ["2"]:
            return dataclasses.replace(seen, body=bytes([seen.body[0] ^ 0xFF]) + seen.body[1:])
        return None

    store.rule = flip
    provider = through(store, bucket)
    with pytest.raises(IntegrityError, match=r"composite CRC32 .* streamed.*read back") as exc:
        provider.upload("r/flipped.bin", io.BytesIO(os.urandom(3 * PART)))
    assert exc.value.left_visible is None
    assert stored(direct, bucket, "r/flipped.bin") is None
    assert [s.header("x-amz-checksum-crc32") is not None for s in store.requests("PUT", "/pre/")] == [True] * 3
