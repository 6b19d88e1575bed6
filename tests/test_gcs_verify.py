"""GCS after a commit: a missing or disagreeing CRC32C is settled by reading the object back, never by
deleting it; credentials that may not read or delete are reported, not failed, and `check()` names
what they lack. fake-gcs-server behind tests/http_proxy.py plays what it does not do itself.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import replace

import pytest

from providers import IntegrityError, open_provider
from providers.gcs.provider import GCSProvider
from tests.backends import create_gcs_bucket, unique_name
from tests.http_proxy import Answer, Proxy, Seen

CHUNK = 256 << 10
SIZES = {"single-request": 100, "resumable": 2 * CHUNK + 100}


def forbidden() -> Answer:
    body = {"error": {"code": 403, "message": "no access", "errors": [{"reason": "forbidden", "message": "no"}]}}
    return 403, {"Content-Type": "application/json"}, json.dumps(body).encode()


def reads_object(seen: Seen) -> bool:
    return seen.method == "GET" and "/o/" in seen.path


def deletes_object(seen: Seen) -> bool:
    return seen.method == "DELETE" and "/o/" in seen.path and "upload_id" not in seen.query


def commits(seen: Seen) -> bool:
    return seen.is_final_chunk or (seen.method == "POST" and seen.query.get("uploadType") == ["multipart"])


def without_crc32c(seen: Seen, answer: Answer) -> Answer:
    """A store (or a front) that reports no CRC32C for the object it just finalized."""
    status, headers, body = answer
    if commits(seen) and status == 200:
        resource = json.loads(body)
        resource.pop("crc32c", None)
        return status, headers, json.dumps(resource).encode()
    return answer


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


def provider(endpoint: str, bucket: str) -> GCSProvider:
    made = open_provider(f"gs://{bucket}/pre", endpoint=endpoint, project="test", part_size=CHUNK)
    assert isinstance(made, GCSProvider)
    return made


def stored(gcs_emulator_url: str, bucket: str, key: str) -> bytes | None:
    direct = provider(gcs_emulator_url, bucket)
    if not direct.exists(key):
        return None
    with direct.open_reader(key) as reader:
        return reader.read()


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_no_crc32c_in_the_answer_is_settled_by_reading_back(proxy: Proxy, bucket: str, gcs_emulator_url: str,
                                                            size: int) -> None:
    proxy.on_response = without_crc32c
    data = os.urandom(size)
    info = provider(proxy.url, bucket).upload("v/a.bin", io.BytesIO(data))
    assert (info.size, info.unverified) == (size, ())
    assert [s.path.startswith("/download/") for s in proxy.seen if reads_object(s)][-1:] == [True]
    assert stored(gcs_emulator_url, bucket, "v/a.bin") == data


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_when_it_cannot_be_read_back_the_object_is_reported_unverified(proxy: Proxy, bucket: str,
                                                                       gcs_emulator_url: str, size: int) -> None:
    proxy.on_response = without_crc32c
    proxy.rule = lambda seen: forbidden() if reads_object(seen) else None
    data = os.urandom(size)
    info = provider(proxy.url, bucket).upload("v/b.bin", io.BytesIO(data))
    assert info.unverified == ("read denied (forbidden): the service's report disagrees with the stream (the "
                               "service reported no crc32c), and the object could not be read back; Google checked "
                               "the CRC32C of the whole object when it was finalized",)
    assert stored(gcs_emulator_url, bucket, "v/b.bin") == data


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_corrupt_bytes_that_cannot_be_deleted_are_named(proxy: Proxy, bucket: str, gcs_emulator_url: str,
                                                        size: int) -> None:
    data = os.urandom(size)
    tail = data[-50:]

    def flip_and_forbid_delete(seen: Seen) -> Answer | Seen | None:
        if deletes_object(seen):
            return forbidden()
        if seen.method in ("POST", "PUT") and tail in seen.body:
            return replace(seen, body=seen.body.replace(tail, bytes([tail[0] ^ 1]) + tail[1:]))
        return None

    proxy.rule = flip_and_forbid_delete
    with pytest.raises(IntegrityError, match=r"crc32c .* stored, .* streamed; read back SHA-256") as excinfo:
        provider(proxy.url, bucket).upload("v/c.bin", io.BytesIO(data))
    assert excinfo.value.left_visible == "v/c.bin"
    assert str(excinfo.value).endswith(f"the object is still visible at gs://{bucket}/pre/v/c.bin (deleting it "
                                       "failed: forbidden)")
    assert stored(gcs_emulator_url, bucket, "v/c.bin") not in (None, data)


def test_write_only_credentials_can_write_resumable_uploads(proxy: Proxy, bucket: str,
                                                           gcs_emulator_url: str) -> None:
    # Against the emulator the writer looks for an existing object before finalizing; a credential
    # without storage.objects.get must not turn that look into a failed write.
    proxy.rule = lambda seen: forbidden() if reads_object(seen) else None
    data = os.urandom(2 * CHUNK + 1)
    info = provider(proxy.url, bucket).upload("v/d.bin", io.BytesIO(data))
    assert info.unverified == ()  # the finalize answer's CRC32C is the service's own: it proves the bytes
    assert stored(gcs_emulator_url, bucket, "v/d.bin") == data


def test_check_names_read_and_delete_and_the_probe_it_left(proxy: Proxy, bucket: str,
                                                           gcs_emulator_url: str) -> None:
    proxy.rule = lambda seen: forbidden() if reads_object(seen) or deletes_object(seen) else None
    report = provider(proxy.url, bucket).check()
    where = f"gs://{bucket}/pre/ (endpoint {proxy.url})"
    assert [(s.name, s.ok, s.message) for s in report.steps][1:3] == [
        ("stat", False, f"stat denied: forbidden on {where} (missing the read permission: storage.objects.get)"),
        ("read", False, f"read denied: forbidden on {where} (missing the read permission: storage.objects.get)")]
    write, delete = report.steps[0], report.steps[-1]
    assert (write.name, write.ok, write.message) == ("write", True, "write ok")
    left = [b.name for b in provider(gcs_emulator_url, bucket).bucket.list_blobs()]
    assert len(left) == 1
    assert (delete.name, delete.ok) == ("delete", False)
    assert delete.message == (f"delete denied: forbidden on {where} (missing the delete permission: "
                              f"storage.objects.delete); remove gs://{bucket}/{left[0]} by hand")
