"""The abort paths of the one contract, against each live emulator: whatever ends a write early (the
caller's exception, an explicit abort(), a part the service refused, a commit it refused) leaves
nothing visible and nothing billed behind, and a writer cannot be used after it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from providers import ObjectExists, StorageError, StorageProvider, TransientError
from tests.backends import KINDS, billed_leftovers, provider_factory, visible_keys
from tests.test_conformance import PART, Unsized


@pytest.fixture(params=KINDS)
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> StorageProvider:
    return provider_factory(request.param, request, tmp_path)(part_size=PART, concurrency=3)


def assert_nothing_left(target: StorageProvider, *expected: str) -> None:
    assert visible_keys(target) == sorted(expected)
    assert billed_leftovers(target) == []


@pytest.mark.parametrize("size", [100, 2 * PART + 5], ids=["one-part", "parts-sent"])
def test_the_callers_exception_aborts(provider: StorageProvider, size: int) -> None:
    with pytest.raises(RuntimeError, match="source died"), provider.open_writer("ab/a.bin") as writer:
        writer.write(os.urandom(size))
        raise RuntimeError("source died")
    assert_nothing_left(provider)


def test_an_explicit_abort_is_final_and_may_be_repeated(provider: StorageProvider) -> None:
    writer = provider.open_writer("ab/b.bin")
    writer.write(os.urandom(2 * PART + 5))
    writer.abort()
    writer.abort()
    with pytest.raises(StorageError, match="already aborted"):
        writer.commit()
    with pytest.raises(StorageError, match="already aborted"):
        writer.write(b"more")
    assert_nothing_left(provider)


def test_aborting_a_writer_that_wrote_nothing(provider: StorageProvider) -> None:
    with provider.open_writer("ab/c.bin") as writer:
        writer.abort()
    assert_nothing_left(provider)


def test_a_part_the_service_refused_aborts_the_rest(provider: StorageProvider,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    writer = provider.open_writer("ab/d.bin")
    send = writer._send_part

    def refuse_the_second(number: int, data: bytearray, sha256: bytes) -> Any:
        if number == 2:
            raise TransientError("temporarily failed: SlowDown on the second part", code="SlowDown")
        return send(number, data, sha256)

    monkeypatch.setattr(writer, "_send_part", refuse_the_second)
    with pytest.raises(TransientError, match="SlowDown"), writer:
        writer.write(Unsized(3 * PART + 1).read())
        writer.commit()
    assert_nothing_left(provider)


@pytest.mark.parametrize("size", [100, 2 * PART + 5], ids=["one-part", "parts-sent"])
def test_a_refused_commit_leaves_only_the_object_that_was_there(provider: StorageProvider, size: int) -> None:
    provider.upload("ab/e.bin", io.BytesIO(b"first"))
    with pytest.raises(ObjectExists):
        provider.upload("ab/e.bin", Unsized(size))
    assert_nothing_left(provider, "ab/e.bin")
    with provider.open_reader("ab/e.bin") as reader:
        assert reader.read() == b"first"


LONG_NAMES = {"255-ascii": "n" * 251 + ".mp4", "255-utf8": "é" * 125 + "x.mp4"}


@pytest.mark.parametrize("name", LONG_NAMES.values(), ids=LONG_NAMES.keys())
@pytest.mark.parametrize("size", [100, PART + 1], ids=["one-part", "parts"])
def test_a_255_byte_name_round_trips(provider: StorageProvider, name: str, size: int) -> None:
    data = os.urandom(size)
    provider.upload(f"long/{name}", io.BytesIO(data))
    with provider.open_reader(f"long/{name}") as reader:
        assert reader.read() == data
    assert_nothing_left(provider, f"long/{name}")
