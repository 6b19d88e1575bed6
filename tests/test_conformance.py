"""One contract, four providers: every case runs against each live emulator (rclone's fstests model)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import pytest

from providers import (
    ConfigurationError,
    ObjectExists,
    ObjectNotFound,
    StorageProvider,
)
from tests.backends import KINDS, ProviderFactory, provider_factory

PART = 5 << 20  # the smallest part S3 accepts, so "one part" cases stay cheap everywhere


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> ProviderFactory:
    return provider_factory(request.param, request, tmp_path)


@pytest.fixture
def provider(make: ProviderFactory) -> StorageProvider:
    return make(part_size=PART, concurrency=3)


class Unsized(io.RawIOBase):
    """A non-seekable stream of unknown length, like an HTTP body without Content-Length."""

    def __init__(self, size: int, seed: bytes = b"x") -> None:
        self.left = size
        self.block = hashlib.sha256(seed).digest() * 2048  # 64 KiB pattern, not all one byte

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left, len(self.block))
        buffer[:n] = self.block[:n]
        self.left -= n
        return n


def pattern_sha256(size: int, seed: bytes = b"x") -> str:
    digest = hashlib.sha256()
    stream = Unsized(size, seed)
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def read_sha256(provider: StorageProvider, key: str) -> str:
    digest = hashlib.sha256()
    with provider.open_reader(key) as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("size", [0, 1, PART, PART + 1], ids=["0B", "1B", "one-part", "one-part+1B"])
def test_round_trip_sizes(provider: StorageProvider, size: int) -> None:
    data = os.urandom(size)
    info = provider.upload(f"sizes/{size}.bin", io.BytesIO(data), size_hint=size)
    assert info.size == size
    assert info.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    with provider.open_reader(f"sizes/{size}.bin") as reader:
        assert reader.read() == data


def test_unknown_length_stream_of_64_mib(provider: StorageProvider) -> None:
    size = 64 << 20
    info = provider.upload("big/stream.bin", Unsized(size))
    expected = pattern_sha256(size)
    assert (info.size, info.checksums["sha256"]) == (size, expected)
    assert read_sha256(provider, "big/stream.bin") == expected
    assert provider.stat("big/stream.bin").size == size


def test_stat_reports_what_was_written(provider: StorageProvider) -> None:
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


def test_if_absent_refuses_an_existing_object(provider: StorageProvider) -> None:
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


def test_if_absent_also_holds_for_a_multipart_write(provider: StorageProvider) -> None:
    provider.upload("dup/big.bin", io.BytesIO(b"x"))
    with pytest.raises(ObjectExists):
        provider.upload("dup/big.bin", Unsized(2 * PART + 7))
    assert provider.stat("dup/big.bin").size == 1


def test_abort_leaves_nothing_behind(provider: StorageProvider) -> None:
    with pytest.raises(RuntimeError, match="source died"), provider.open_writer("abort/a.bin") as writer:
        writer.write(os.urandom(2 * PART + 5))  # two parts already sent
        raise RuntimeError("source died")
    with pytest.raises(ObjectNotFound):
        provider.stat("abort/a.bin")
    assert not provider.exists("abort/a.bin")


def test_leaving_the_block_without_commit_publishes_nothing(provider: StorageProvider) -> None:
    with provider.open_writer("abort/b.bin") as writer:
        writer.write(b"half a recording")
    assert not provider.exists("abort/b.bin")


def test_nothing_is_visible_before_commit(provider: StorageProvider) -> None:
    with provider.open_writer("vis/a.bin") as writer:
        writer.write(os.urandom(PART + 1))
        assert not provider.exists("vis/a.bin")
        writer.commit()
    assert provider.exists("vis/a.bin")


def test_delete_of_a_missing_key_is_not_an_error(provider: StorageProvider) -> None:
    provider.delete("never/written.bin")
    provider.upload("del/a.bin", io.BytesIO(b"x"))
    provider.delete("del/a.bin")
    assert not provider.exists("del/a.bin")


def test_missing_object_is_typed(provider: StorageProvider) -> None:
    with pytest.raises(ObjectNotFound) as excinfo:
        provider.stat("missing/x.bin")
    assert isinstance(excinfo.value, FileNotFoundError)
    assert "missing/x.bin" in str(excinfo.value)
    with pytest.raises(ObjectNotFound):
        provider.open_reader("missing/x.bin").read()


def test_prefix_is_prepended(make: ProviderFactory) -> None:
    outer = make(prefix="")
    inner = make(prefix="videosdk/archive/")
    inner.upload("a.bin", io.BytesIO(b"a"))
    assert outer.exists("videosdk/archive/a.bin")


def test_check_passes_on_a_good_destination(provider: StorageProvider) -> None:
    report = provider.check()
    assert report.ok, str(report)
    assert [s.name for s in report.steps] == ["write", "stat", "read", "compare", "delete"]


def test_unknown_and_wrong_typed_options_are_named(make: ProviderFactory) -> None:
    with pytest.raises(ConfigurationError, match="'colour'"):
        make(colour="blue")
    with pytest.raises(ConfigurationError, match=r"'concurrency'.*int"):
        make(concurrency="four")


def test_a_provider_survives_pickle_and_fork(provider: StorageProvider) -> None:
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


def test_repr_shows_no_secret(provider: StorageProvider) -> None:
    text = repr(provider) + repr(pickle.loads(pickle.dumps(provider)))
    for secret in ("moto-secret-key", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq"):
        assert secret not in text


def test_a_secret_from_the_environment_is_not_pickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      moto_url: str) -> None:
    from providers import open_provider
    from tests.backends import create_s3_bucket, unique_name

    bucket = unique_name()
    create_s3_bucket(moto_url, bucket)
    monkeypatch.setenv("PICKLE_TEST_SECRET", "env-only-secret-value")
    provider = open_provider(f"s3://{bucket}", endpoint_url=moto_url, region="us-east-1", access_key_id="testing",
                             secret_access_key_env="PICKLE_TEST_SECRET", addressing_style="path")
    data = pickle.dumps(provider)
    assert b"env-only-secret-value" not in data
    clone = pickle.loads(data)
    clone.upload("a.bin", io.BytesIO(b"a"))
    assert provider.exists("a.bin")
