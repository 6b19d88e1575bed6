"""A commit whose answer is lost: the service committed, the SDK gave up waiting. The writer must not
leave that object visible behind a TransientError: it recognises its own object by digest and
reports the commit, and when nothing was committed the error stands and nothing is left behind.

The proxy forwards the commit request and drops every answer to it (botocore's own retries too).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator

import pytest

from providers import StorageProvider, TransientError, open_provider
from tests.backends import billed_leftovers, create_gcs_bucket, create_s3_bucket, s3_options, unique_name, visible_keys
from tests.http_proxy import Answer, Proxy, Seen

PART = 5 << 20
GCS_CHUNK = 256 << 10


def s3_commit(seen: Seen) -> bool:
    q = seen.query
    return (seen.method == "POST" and "uploadId" in q) or (
        seen.method == "PUT" and seen.path.count("/") >= 2 and "uploadId" not in q and "partNumber" not in q)


def gcs_commit(seen: Seen) -> bool:
    return seen.is_final_chunk or (seen.method == "POST" and seen.query.get("uploadType") == ["multipart"])


def drop_answers_to(commit: Callable[[Seen], bool]) -> Callable[[Seen, Answer], Answer | None]:
    return lambda seen, answer: None if commit(seen) else answer


@pytest.fixture
def s3_store(moto_url: str) -> Iterator[tuple[Proxy, StorageProvider, StorageProvider]]:
    """(proxy, provider through it, provider straight to moto), on a fresh bucket."""
    bucket = unique_name()
    create_s3_bucket(moto_url, bucket)
    proxy = Proxy(moto_url)
    yield (proxy, open_provider(f"s3://{bucket}/pre", **s3_options(proxy.url), part_size=PART),
           open_provider(f"s3://{bucket}/pre", **s3_options(moto_url)))
    proxy.close()


@pytest.fixture
def gcs_store(gcs_emulator_url: str) -> Iterator[tuple[Proxy, StorageProvider, StorageProvider]]:
    bucket = unique_name()
    create_gcs_bucket(gcs_emulator_url, bucket)
    proxy = Proxy(gcs_emulator_url)
    yield (proxy, open_provider(f"gs://{bucket}/pre", endpoint=proxy.url, part_size=GCS_CHUNK),
           open_provider(f"gs://{bucket}/pre", endpoint=gcs_emulator_url))
    proxy.close()


def read(provider: StorageProvider, key: str) -> bytes:
    with provider.open_reader(key) as reader:
        return reader.read()


@pytest.mark.parametrize("size", [100, 2 * PART + 1], ids=["single-put", "multipart"])
@pytest.mark.parametrize("mode", ["crc32", "sha256", "md5"])
def test_s3_recognises_its_commit_when_the_answer_is_lost(s3_store: tuple[Proxy, StorageProvider, StorageProvider],
                                                         size: int, mode: str) -> None:
    proxy, _, direct = s3_store
    proxy.on_response = drop_answers_to(s3_commit)
    provider = open_provider(direct.url.rstrip("/"), **{**s3_options(proxy.url), "part_size": PART,
                                                        "checksum_mode": mode})
    data = os.urandom(size)
    info = provider.upload("lost/a.bin", io.BytesIO(data))
    assert (info.size, info.unverified) == (size, ())
    assert len([s for s in proxy.seen if s3_commit(s)]) > 1  # botocore tried again, and gave up
    assert read(direct, "lost/a.bin") == data
    assert billed_leftovers(direct) == []


def test_s3_a_commit_that_never_happened_stays_an_error(s3_store: tuple[Proxy, StorageProvider,
                                                                        StorageProvider]) -> None:
    proxy, provider, direct = s3_store
    proxy.rule = lambda seen: (503, {}, b"") if s3_commit(seen) else None  # never reaches moto
    with pytest.raises(TransientError):
        provider.upload("lost/b.bin", io.BytesIO(os.urandom(PART + 1)))
    assert visible_keys(direct) == [] and billed_leftovers(direct) == []


@pytest.mark.parametrize("size", [100, 2 * GCS_CHUNK + 1], ids=["single-request", "resumable"])
def test_gcs_recognises_its_commit_when_the_answer_is_lost(gcs_store: tuple[Proxy, StorageProvider,
                                                                            StorageProvider], size: int) -> None:
    proxy, provider, direct = gcs_store
    proxy.on_response = drop_answers_to(gcs_commit)
    data = os.urandom(size)
    info = provider.upload("lost/c.bin", io.BytesIO(data))
    assert (info.size, info.unverified) == (size, ())
    assert read(direct, "lost/c.bin") == data


def test_gcs_an_object_that_is_not_ours_is_not_taken_for_our_commit(gcs_store: tuple[Proxy, StorageProvider,
                                                                                      StorageProvider]) -> None:
    proxy, provider, direct = gcs_store

    def someone_else_wins(seen: Seen) -> Answer | None:
        if gcs_commit(seen):  # our commit never arrives; another writer's object is there instead
            direct.upload("lost/d.bin", io.BytesIO(b"someone else's"), if_absent=False)
            return 503, {}, b""
        return None

    proxy.rule = someone_else_wins
    with pytest.raises(TransientError):
        provider.upload("lost/d.bin", io.BytesIO(os.urandom(2 * GCS_CHUNK + 1)))
    assert read(direct, "lost/d.bin") == b"someone else's"
