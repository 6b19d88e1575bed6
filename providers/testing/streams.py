"""Test data of any length without holding it: a non-seekable stream of unknown length."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO, cast

from providers.readback import digest_stream

PART = 5 << 20  # the smallest part S3 accepts, so "one part" cases stay cheap everywhere


class Unsized(io.RawIOBase):
    """``size`` bytes of a 64 KiB pattern derived from ``seed``, non-seekable and of unknown length,
    like an HTTP body without Content-Length."""

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


def unsized(size: int, seed: bytes = b"x") -> BinaryIO:
    """``Unsized(size, seed)`` typed as the binary stream ``upload`` takes."""
    return cast(BinaryIO, Unsized(size, seed))


def pattern_sha256(size: int, seed: bytes = b"x") -> str:
    """The SHA-256 (hex) of ``Unsized(size, seed)``'s bytes."""
    return digest_stream(unsized(size, seed))[1].hex()
