"""Part buffers reused across parts, objects and jobs of one process, and a body made of several.

Why: a freshly allocated 8 MiB bytearray is a fresh mmap; filling it costs a page fault every 4 KiB,
0.6-0.7 s of CPU per GiB on the bench machine (issue 16). A buffer handed back to the pool keeps its
pages, so a steady stream of parts faults nothing in.

Bounds: the pool creates a buffer only when none is free, and the writers that take them bound how
many they hold at once (``ObjectWriter``'s slots: ``concurrency`` per writer), so the pool never holds
more than the most buffers ever in use at once; beyond ``keep`` free buffers of one size a returned
buffer is dropped (freed) instead of kept.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence

__all__ = ["BufferPool", "Chain", "pool_for", "views_of"]


class BufferPool:
    """Free ``bytearray`` buffers of exactly ``size`` bytes. Thread-safe."""

    def __init__(self, size: int, keep: int = 16) -> None:
        self.size, self.keep = size, keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()
        self.created = 0  # buffers ever allocated: what tests and the bench read to see reuse

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
            self.created += 1
        return bytearray(self.size)

    def give(self, buffer: bytearray) -> None:
        """Hand ``buffer`` back; one of another length (never from this pool) is ignored."""
        if len(buffer) != self.size:
            return
        with self._lock:
            if len(self._free) < self.keep and all(b is not buffer for b in self._free):
                self._free.append(buffer)

    @property
    def free(self) -> int:
        return len(self._free)


_POOLS: dict[int, BufferPool] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(size: int) -> BufferPool:
    """The process's pool of ``size``-byte buffers (one per part size in use)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(size)
        if pool is None:
            pool = _POOLS[size] = BufferPool(size)
        return pool


class Chain(io.RawIOBase):
    """Several byte buffers read as one seekable stream, without joining them (no copy).

    What an SDK that takes a file-like body needs (``read``/``readinto``/``seek``/``tell``/``len``), and
    iteration over the buffers themselves for HTTP clients that send an iterable body chunk by chunk."""

    def __init__(self, views: Sequence[memoryview]) -> None:
        super().__init__()
        self.views = [memoryview(v).cast("B") for v in views]
        self.total = sum(v.nbytes for v in self.views)
        self._pos = 0

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[memoryview]:  # type: ignore[override]
        return iter(self.views)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        done, pos = 0, self._pos
        start = 0
        for view in self.views:
            end = start + view.nbytes
            if pos < end and done < out.nbytes:
                take = min(end - pos, out.nbytes - done)
                out[done:done + take] = view[pos - start:pos - start + take]
                done, pos = done + take, pos + take
            start = end
        self._pos = pos
        return done

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.total - self._pos
        end_pos = min(self.total, self._pos + max(0, size))
        pieces, start = [], 0
        for view in self.views:
            end = start + view.nbytes
            if self._pos < end and start < end_pos:
                pieces.append(view[max(0, self._pos - start):min(view.nbytes, end_pos - start)])
            start = end
        self._pos = end_pos
        return b"".join(pieces)  # one copy, which a caller asking for bytes cannot avoid


def views_of(data: bytes | bytearray | memoryview | Chain) -> list[memoryview]:
    """The buffers of ``data`` (one for a plain buffer), for hashing or sending piece by piece."""
    return list(data.views) if isinstance(data, Chain) else [memoryview(data).cast("B")]
