"""Part buffers come from one pool and go back to it, whatever happens; a known-length object that
fits in the writer's slots is written with one create-only request (issue 16), on every emulator."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest

from providers import ObjectExists, StorageProvider, TransientError
from providers.pool import Chain, pool_for
from providers.writer import ObjectWriter
from tests.backends import KINDS, ProviderFactory, provider_factory

PART = 5 << 20


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> ProviderFactory:
    return provider_factory(request.param, request, tmp_path)


def one_request(provider: StorageProvider, key: str) -> bool:
    """Whether the service stored ``key`` from one request (not a multipart/block/session upload)."""
    full = provider.full_key(key)
    if provider.scheme == "s3":
        return "-" not in (provider.client.head_object(Bucket=provider.location, Key=full)["ETag"])
    if provider.scheme == "az":
        blob = provider.client.get_blob_client(full)
        return blob.get_block_list("committed")[0] == []  # Put Blob leaves no committed block list
    return True  # gs: see the writer's own record


@pytest.mark.parametrize("kind", ["s3", "az", "gs"])  # a local file has no requests to save
def test_a_known_length_object_of_several_parts_is_one_create_only_request(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    provider = provider_factory(kind, request, tmp_path)(part_size=PART, concurrency=3)
    data = os.urandom(2 * PART + 12345)
    with provider.open_writer("one/req.bin", size_hint=len(data)) as writer:
        writer.write(data)
        info = writer.commit()
    assert writer._began is False  # no multipart upload, block list or resumable session was started
    assert one_request(provider, "one/req.bin")
    assert info.size == len(data) and info.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    with provider.open_reader("one/req.bin") as reader:
        assert reader.read() == data
    with pytest.raises(ObjectExists):  # create-only, like the multipart commit it replaces
        provider.upload("one/req.bin", io.BytesIO(data), size_hint=len(data))


@pytest.mark.parametrize("declared", [PART, 4 * PART])
def test_a_source_that_sends_more_or_less_than_declared_still_lands_whole(make: ProviderFactory,
                                                                        declared: int) -> None:
    provider = make(part_size=PART, concurrency=4)
    data = os.urandom(3 * PART + 7)
    info = provider.upload("hint/wrong.bin", io.BytesIO(data), size_hint=declared)
    assert info.size == len(data)
    with provider.open_reader("hint/wrong.bin") as reader:
        assert hashlib.sha256(reader.read()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_objects_larger_than_the_slots_hold_stay_multipart(make: ProviderFactory) -> None:
    provider = make(part_size=PART, concurrency=2)  # 2 slots: at most 10 MiB held, whatever the option says
    data = os.urandom(3 * PART)
    with provider.open_writer("multi/big.bin", size_hint=len(data)) as writer:
        assert writer.request.single_request_max == 2 * PART
        writer.write(data)
        writer.commit()
    assert writer._began is True


def test_buffers_are_reused_across_parts_and_objects(make: ProviderFactory) -> None:
    provider = make(part_size=PART, concurrency=2)
    pool = pool_for(provider.open_writer("probe").request.part_size)
    provider.upload("reuse/a.bin", io.BytesIO(os.urandom(4 * PART + 1)))
    created = pool.created
    provider.upload("reuse/b.bin", io.BytesIO(os.urandom(6 * PART + 1)))  # 7 parts, no new buffer
    assert pool.created == created


class FailingSecondPart:
    """Makes the writer's second part fail as a lost connection would, after the first was sent."""

    def __init__(self, writer: ObjectWriter) -> None:
        self.send = writer._send_part

    def __call__(self, number: int, data: bytearray, sha256: bytes) -> Any:
        if number == 2:
            raise TransientError("connection reset while sending part 2", code="connection")
        return self.send(number, data, sha256)


def test_a_failed_part_gives_every_buffer_and_slot_back(make: ProviderFactory) -> None:
    provider = make(part_size=PART, concurrency=3)
    pool = pool_for(provider.open_writer("probe").request.part_size)
    provider.upload("warm/a.bin", io.BytesIO(os.urandom(3 * PART + 1)))  # the pool holds its buffers now
    free, created = pool.free, pool.created
    writer = provider.open_writer("fail/a.bin")
    writer._send_part = FailingSecondPart(writer)  # type: ignore[method-assign]
    with pytest.raises(TransientError), writer:
        for _ in range(6):
            writer.write(os.urandom(PART))
        writer.commit()
    assert pool.free == free and pool.created == created  # every buffer back, none lost or added
    assert writer._slots._value == writer.request.concurrency  # and every slot
    with pytest.raises(Exception):  # noqa: B017 - nothing was published at the key
        provider.stat("fail/a.bin")


def test_chain_reads_its_buffers_as_one_stream() -> None:
    parts = [b"abc", b"", b"defgh", b"ij"]
    chain = Chain([memoryview(p) for p in parts])
    assert len(chain) == 10 and chain.read(4) == b"abcd" and chain.tell() == 4
    assert chain.read() == b"efghij" and chain.read() == b""
    chain.seek(2)
    out = bytearray(5)
    assert chain.readinto(out) == 5 and bytes(out) == b"cdefg"
    assert [bytes(v) for v in chain] == parts
