"""Reading a just-committed object back to settle what the service's own report cannot.

Used after a commit when the service reported no digest that proves the bytes (an ETag that is not an
MD5 of the body, a store that keeps no checksum), or reported one that disagrees with the stream:
such a disagreement is not yet proof, and only bytes read back can prove that the object differs.

Two depths:
- "ranges": the first, a middle and the last part, each compared with the digest the writer computed
  for that part while streaming (its SHA-256, or the MD5 or CRC32 it sent with the part). A one-part object
  is read whole. Memory: one read buffer, whatever the part size.
- "full": the whole object, compared with the size and SHA-256 of everything streamed.

Pure: imports no SDK. Errors from `open_range` are the provider's StorageError vocabulary.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from providers.errors import IntegrityError

READ_CHUNK = 1 << 20
RANGES, FULL = "ranges", "full"
DEPTHS = (RANGES, FULL)

# open_range(start, length) -> a binary reader of the committed object's bytes [start, start+length);
# length None means to the end. It must read the version this writer committed, not a newer one.
OpenRange = Callable[[int, int | None], BinaryIO]


def sampled(count: int) -> list[int]:
    """0-based indexes of the parts a "ranges" read-back reads: first, middle and last."""
    return sorted({0, count // 2, count - 1}) if count else []


def read_back_full(open_range: OpenRange, size: int, sha256_hex: str) -> list[str]:
    """Read the whole object; return what differs from `size` bytes with SHA-256 `sha256_hex`."""
    try:
        got_size, got_sha = _digest(open_range, 0, None, "sha256")
    except IntegrityError as exc:
        return [_reader_refused(exc, "the object")]
    if got_size != size:
        return [f"read back {got_size} bytes, {size} streamed"]
    if got_sha.hex() != sha256_hex:
        return [f"read back SHA-256 {got_sha.hex()}, {sha256_hex} streamed"]
    return []


def read_back_ranges(open_range: OpenRange, parts: Sequence[tuple[int, str, bytes]]) -> list[str]:
    """`parts` is every part as (size, algorithm, digest) in order; read back a sample of them."""
    offsets, start = [], 0
    for size, _, _ in parts:
        offsets.append(start)
        start += size
    problems = []
    for index in sampled(len(parts)):
        size, algorithm, expected = parts[index]
        if size == 0:
            continue
        where = f"part {index + 1} (bytes {offsets[index]}-{offsets[index] + size - 1})"
        try:
            got_size, got = _digest(open_range, offsets[index], size, algorithm)
        except IntegrityError as exc:
            problems.append(_reader_refused(exc, where))
            continue
        if got_size != size:
            problems.append(f"{where} read back as {got_size} bytes, {size} streamed")
        elif got != expected:
            problems.append(f"{where} read back with {algorithm.upper()} {got.hex()}, {expected.hex()} streamed")
    return problems


def _digest(open_range: OpenRange, start: int, length: int | None, algorithm: str) -> tuple[int, bytes]:
    return digest_stream(open_range(start, length), algorithm)


class _Crc32:
    """zlib's CRC32 behind hashlib's update/digest (digest: 4 bytes, big-endian, as S3 sends it)."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def digest_stream(stream: BinaryIO, algorithm: str = "sha256") -> tuple[int, bytes]:
    """(size in bytes, raw digest) of everything ``stream`` yields, read in 1 MiB chunks (memory: one
    chunk); the stream is closed. ``algorithm`` is a hashlib name ("sha256", "md5": MD5 only as a
    checksum) or "crc32" (4 bytes, big-endian). The one streaming hash of the code base: errors are
    the stream's own."""
    digest: Any
    if algorithm == "crc32":
        digest = _Crc32()
    else:
        digest = hashlib.new(algorithm, usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
    total = 0
    with stream as reader:
        while chunk := reader.read(READ_CHUNK):
            digest.update(chunk)
            total += len(chunk)
    return total, digest.digest()


def _reader_refused(exc: IntegrityError, what: str) -> str:
    # The reader itself proved the bytes wrong (the service's checksum of the body it sent disagrees
    # with that body): a difference like any other.
    return f"{what} failed the service's own checksum when read back ({exc.code or 'integrity'})"
