"""The contract every provider keeps: round trips of every size, create-only writes, stat, check,
typed errors, prefixes, options, pickling and forking. Cases only: see providers.testing."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from collections.abc import Callable

import pytest

from providers import ConfigurationError, ObjectExists, ObjectNotFound, StorageProvider
from providers.readback import digest_stream
from providers.testing.streams import PART, pattern_sha256, unsized

# make(prefix="pre", **options) -> a provider on the backend's fresh, empty bucket for this test
ProviderFactory = Callable[..., StorageProvider]


def _read_sha256(provider: StorageProvider, key: str) -> str:
    return digest_stream(provider.open_reader(key))[1].hex()


class ContractCases:
    """Subclass (through ProviderConformance) and define the fixture ``make``; ``secrets`` lists
    values that must never appear in a provider's repr or pickle."""

    secrets: tuple[str, ...] = ()

    @pytest.fixture
    def make(self) -> ProviderFactory:
        raise NotImplementedError("a conformance class defines the fixture make(prefix='pre', **options) "
                                  "returning a provider on a fresh, empty bucket")

    @pytest.fixture
    def provider(self, make: ProviderFactory) -> StorageProvider:
        return make(part_size=PART, concurrency=3)

    @pytest.mark.parametrize("size", [0, 1, PART, PART + 1], ids=["0B", "1B", "one-part", "one-part+1B"])
    def test_round_trip_sizes(self, provider: StorageProvider, size: int) -> None:
        data = os.urandom(size)
        info = provider.upload(f"sizes/{size}.bin", io.BytesIO(data), size_hint=size)
        assert info.size == size
        assert info.checksums["sha256"] == hashlib.sha256(data).hexdigest()
        with provider.open_reader(f"sizes/{size}.bin") as reader:
            assert reader.read() == data

    def test_unknown_length_stream_of_64_mib(self, provider: StorageProvider) -> None:
        size = 64 << 20
        info = provider.upload("big/stream.bin", unsized(size))
        expected = pattern_sha256(size)
        assert (info.size, info.checksums["sha256"]) == (size, expected)
        assert _read_sha256(provider, "big/stream.bin") == expected
        assert provider.stat("big/stream.bin").size == size

    def test_stat_reports_what_was_written(self, provider: StorageProvider) -> None:
        data = b"recording bytes" * 100
        written = provider.upload("meta/a.mp4", io.BytesIO(data), content_type="video/mp4",
                                  metadata={"meeting": "abc-xyzw-lmno", "source": "videosdk"})
        info = provider.stat("meta/a.mp4")
        assert info.key == "meta/a.mp4"
        assert info.size == len(data)
        assert info.content_type == "video/mp4"
        assert info.metadata["meeting"] == "abc-xyzw-lmno"
        assert info.metadata["source"] == "videosdk"
        assert info.etag
        assert info.last_modified is not None
        # A single-request write knows its SHA-256 before it publishes, so it is stored with the object.
        assert info.checksums["sha256"] == hashlib.sha256(data).hexdigest() == written.checksums["sha256"]

    def test_if_absent_refuses_an_existing_object(self, provider: StorageProvider) -> None:
        provider.upload("dup/a.bin", io.BytesIO(b"first"))
        with pytest.raises(ObjectExists) as excinfo:
            provider.upload("dup/a.bin", io.BytesIO(b"second"))
        assert "dup/a.bin" in str(excinfo.value)
        assert isinstance(excinfo.value, FileExistsError)
        with provider.open_reader("dup/a.bin") as reader:
            assert reader.read() == b"first"
        provider.upload("dup/a.bin", io.BytesIO(b"third"), if_absent=False)
        with provider.open_reader("dup/a.bin") as reader:
            assert reader.read() == b"third"

    def test_if_absent_also_holds_for_a_multipart_write(self, provider: StorageProvider) -> None:
        provider.upload("dup/big.bin", io.BytesIO(b"x"))
        with pytest.raises(ObjectExists):
            provider.upload("dup/big.bin", unsized(2 * PART + 7))
        assert provider.stat("dup/big.bin").size == 1

    def test_abort_leaves_nothing_behind(self, provider: StorageProvider) -> None:
        with pytest.raises(RuntimeError, match="source died"), provider.open_writer("abort/a.bin") as writer:
            writer.write(os.urandom(2 * PART + 5))  # two parts already sent
            raise RuntimeError("source died")
        with pytest.raises(ObjectNotFound):
            provider.stat("abort/a.bin")
        assert not provider.exists("abort/a.bin")

    def test_leaving_the_block_without_commit_publishes_nothing(self, provider: StorageProvider) -> None:
        with provider.open_writer("abort/b.bin") as writer:
            writer.write(b"half a recording")
        assert not provider.exists("abort/b.bin")

    def test_nothing_is_visible_before_commit(self, provider: StorageProvider) -> None:
        with provider.open_writer("vis/a.bin") as writer:
            writer.write(os.urandom(PART + 1))
            assert not provider.exists("vis/a.bin")
            writer.commit()
        assert provider.exists("vis/a.bin")

    def test_delete_of_a_missing_key_is_not_an_error(self, provider: StorageProvider) -> None:
        provider.delete("never/written.bin")
        provider.upload("del/a.bin", io.BytesIO(b"x"))
        provider.delete("del/a.bin")
        assert not provider.exists("del/a.bin")

    def test_missing_object_is_typed(self, provider: StorageProvider) -> None:
        with pytest.raises(ObjectNotFound) as excinfo:
            provider.stat("missing/x.bin")
        assert isinstance(excinfo.value, FileNotFoundError)
        assert "missing/x.bin" in str(excinfo.value)
        with pytest.raises(ObjectNotFound):
            provider.open_reader("missing/x.bin").read()

    def test_prefix_is_prepended(self, make: ProviderFactory) -> None:
        outer = make(prefix="")
        inner = make(prefix="videosdk/archive/")
        inner.upload("a.bin", io.BytesIO(b"a"))
        assert outer.exists("videosdk/archive/a.bin")

    def test_check_passes_on_a_good_destination(self, provider: StorageProvider) -> None:
        report = provider.check()
        assert report.ok, str(report)
        assert [s.name for s in report.steps] == ["write", "stat", "read", "compare", "delete"]

    def test_unknown_and_wrong_typed_options_are_named(self, make: ProviderFactory) -> None:
        with pytest.raises(ConfigurationError, match="'colour'"):
            make(colour="blue")
        with pytest.raises(ConfigurationError, match=r"'concurrency'.*int"):
            make(concurrency="four")

    def test_a_provider_survives_pickle_and_fork(self, provider: StorageProvider) -> None:
        provider.upload("fork/parent.bin", io.BytesIO(b"parent"))  # the parent's client exists now
        clone = pickle.loads(pickle.dumps(provider))
        pid = os.fork()
        if pid == 0:  # child: use both the inherited and the unpickled provider
            code = 1
            try:
                provider.upload("fork/child.bin", io.BytesIO(b"child"))
                with clone.open_reader("fork/parent.bin") as reader:
                    code = 0 if reader.read() == b"parent" else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with provider.open_reader("fork/child.bin") as reader:
            assert reader.read() == b"child"

    def test_repr_shows_no_secret(self, provider: StorageProvider) -> None:
        text = repr(provider) + repr(pickle.loads(pickle.dumps(provider)))
        for secret in self.secrets:
            assert secret not in text
