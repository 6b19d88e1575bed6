"""Adapts an SDK's chunk iterator into a streaming binary file object, translating errors on the way."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import BinaryIO

from providers.errors import StorageError


class ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes], translate: Callable[[Exception], StorageError],
                 on_close: Callable[[], None] | None = None) -> None:
        self._chunks = chunks
        self._translate = translate
        self._on_close = on_close
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not len(self._pending):
            try:
                chunk = next(self._chunks, None)
            except StorageError:
                raise
            except Exception as exc:
                raise self._translate(exc) from exc
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed and self._on_close is not None:
            self._on_close()
        super().close()


def chunk_reader(chunks: Iterator[bytes], translate: Callable[[Exception], StorageError],
                 on_close: Callable[[], None] | None = None, buffer_size: int = 1 << 20) -> BinaryIO:
    return io.BufferedReader(ChunkStream(chunks, translate, on_close), buffer_size)
