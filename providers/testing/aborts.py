"""The abort paths of the one contract: whatever ends a write early (the caller's exception, an
explicit abort(), a part the service refused, a commit it refused) leaves nothing visible and nothing
billed behind, and a writer cannot be used after it. Cases only: see providers.testing."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from providers import ObjectExists, StorageError, StorageProvider, TransientError
from providers.testing.streams import PART, Unsized, unsized

LONG_NAMES = {"255-ascii": "n" * 251 + ".mp4", "255-utf8": "é" * 125 + "x.mp4"}


class AbortCases:
    """Needs the fixture ``provider`` (ContractCases makes it from ``make``) and ``listed``."""

    def listed(self, provider: StorageProvider) -> list[str]:
        """Every object a lister sees under the provider's prefix (keys relative to it), sorted."""
        raise NotImplementedError("a conformance class defines listed(provider): the keys a lister sees")

    def leftovers(self, provider: StorageProvider) -> list[str]:
        """What an aborted write could leave that is billed or visible yet is no object (S3 multipart
        uploads, local temp files); a backend without such things keeps this default."""
        return []

    def assert_nothing_left(self, target: StorageProvider, *expected: str) -> None:
        assert self.listed(target) == sorted(expected)
        assert self.leftovers(target) == []

    @pytest.mark.parametrize("size", [100, 2 * PART + 5], ids=["one-part", "parts-sent"])
    def test_the_callers_exception_aborts(self, provider: StorageProvider, size: int) -> None:
        with pytest.raises(RuntimeError, match="source died"), provider.open_writer("ab/a.bin") as writer:
            writer.write(os.urandom(size))
            raise RuntimeError("source died")
        self.assert_nothing_left(provider)

    def test_an_explicit_abort_is_final_and_may_be_repeated(self, provider: StorageProvider) -> None:
        writer = provider.open_writer("ab/b.bin")
        writer.write(os.urandom(2 * PART + 5))
        writer.abort()
        writer.abort()
        with pytest.raises(StorageError, match="already aborted"):
            writer.commit()
        with pytest.raises(StorageError, match="already aborted"):
            writer.write(b"more")
        self.assert_nothing_left(provider)

    def test_aborting_a_writer_that_wrote_nothing(self, provider: StorageProvider) -> None:
        with provider.open_writer("ab/c.bin") as writer:
            writer.abort()
        self.assert_nothing_left(provider)

    def test_a_part_the_service_refused_aborts_the_rest(self, provider: StorageProvider,
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
        self.assert_nothing_left(provider)

    @pytest.mark.parametrize("size", [100, 2 * PART + 5], ids=["one-part", "parts-sent"])
    def test_a_refused_commit_leaves_only_the_object_that_was_there(self, provider: StorageProvider,
                                                                    size: int) -> None:
        provider.upload("ab/e.bin", io.BytesIO(b"first"))
        with pytest.raises(ObjectExists):
            provider.upload("ab/e.bin", unsized(size))
        self.assert_nothing_left(provider, "ab/e.bin")
        with provider.open_reader("ab/e.bin") as reader:
            assert reader.read() == b"first"

    @pytest.mark.parametrize("name", LONG_NAMES.values(), ids=LONG_NAMES.keys())
    @pytest.mark.parametrize("size", [100, PART + 1], ids=["one-part", "parts"])
    def test_a_255_byte_name_round_trips(self, provider: StorageProvider, name: str, size: int) -> None:
        data = os.urandom(size)
        provider.upload(f"long/{name}", io.BytesIO(data))
        with provider.open_reader(f"long/{name}") as reader:
            assert reader.read() == data
        self.assert_nothing_left(provider, f"long/{name}")
