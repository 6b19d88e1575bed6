"""The streaming half of the shared writer (providers/writer.py): bytes into part buffers, parts out.

Part buffers come from the process's pool (providers/pool.py) and go back to it once sent or
abandoned, so a stream faults no fresh pages in. A part holds one of `concurrency` slots from the
moment its buffer starts filling (or, for a part filled elsewhere, from `reserve`) until the service
has acknowledged it: at most `part_size * concurrency` bytes of payload are alive. An object whose
length is known and fits within `request.single_request_max` is held (each buffer keeping its slot)
for one request instead of being shipped part by part. Every byte is SHA-256 hashed once, in stream
order, as it enters.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from providers.pool import Chain, pool_for
from providers.types import Part, WriteRequest


class PartStream:
    """State and steps of streaming into parts; `ObjectWriter` adds the provider's protocol and commit."""

    ordered_parts: bool = False
    part_digests: bool = False

    def __init__(self, request: WriteRequest) -> None:
        self.request = request
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffers = pool_for(request.part_size)
        self._buf: bytearray | None = None  # the pool buffer being filled (holds a slot)
        self._fill = 0  # bytes of it filled
        self._held: list[bytearray] = []  # full buffers kept for one whole-object request (each holds a slot)
        self._inflight: dict[int, bytearray] = {}  # part number -> its pool buffer, until sent or abandoned
        self._inflight_lock = threading.Lock()
        self._next_part = 1
        self._pending: list[Future[Part]] = []
        self._slots = threading.BoundedSemaphore(request.concurrency)
        self._holding_slot = False
        self._pool: ThreadPoolExecutor | None = None
        self._began = False
        self._state = "open"

    # what ObjectWriter provides
    def _begin(self) -> None:
        raise NotImplementedError

    def _send_part(self, number: int, data: bytearray, sha256: bytes) -> Any:
        raise NotImplementedError

    def _require_open(self) -> None:
        raise NotImplementedError

    @property
    def bytes_written(self) -> int:
        return self._size

    @property
    def sha256_hex(self) -> str:
        """SHA-256 of everything written so far (known before commit, for a commit intent)."""
        return self._hash.copy().hexdigest()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._require_open()
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self._size += len(view)
        part_size = self.request.part_size
        while len(view):
            buf = self._buf if self._buf is not None else self._take_buffer()
            room = min(part_size - self._fill, len(view))
            buf[self._fill:self._fill + room] = view[:room]
            self._fill += room
            view = view[room:]
            if self._fill == part_size:
                self._part_full()
        return len(data)

    def fill(self, readinto: Callable[[memoryview], int]) -> int:
        """Call ``readinto`` once with the free room of the part being filled (the bytes land in the
        part buffer itself: no copy on the way); returns what it read, 0 at the end of the source."""
        self._require_open()
        buf = self._buf if self._buf is not None else self._take_buffer()
        room = memoryview(buf)[self._fill:]
        n = readinto(room)
        if n:
            self._hash.update(room[:n])
            self._size += n
            self._fill += n
            if self._fill == self.request.part_size:
                self._part_full()
        return n

    def reserve(self, timeout: float) -> bool:
        """Take one of the writer's slots for a part filled elsewhere (a parallel range), so the buffers
        being filled and the parts being sent share the one bound: at most `concurrency` alive. False
        when none came free within ``timeout`` seconds; raises the error of a part that failed. Thread-safe.
        The slot goes with the part to ``take_part``, or back with ``unreserve``."""
        if self._slots.acquire(timeout=timeout):
            return True
        self._raise_failed_part()
        return False

    def unreserve(self) -> None:
        self._slots.release()

    def take_part(self, buffer: bytearray, length: int) -> None:
        """Take ``buffer``, a buffer of this writer's pool (``pool_for(part_size)``) holding the next
        ``length`` bytes of the stream, with the slot ``reserve`` took for it, as a part: it is hashed
        here, in stream order, and sent without a copy; the writer gives it back to the pool. Only the
        last part may be short, and nothing may be written between parts."""
        try:
            self._require_open()
            if self._fill or len(buffer) != self.request.part_size or length > len(buffer):
                raise ValueError(f"take_part: a part of {length} bytes in a {len(buffer)}-byte buffer, "
                                 f"{self._fill} bytes already filled; parts are {self.request.part_size} bytes")
        except BaseException:
            self._buffers.give(buffer)
            self._slots.release()
            raise
        if self._buf is not None:  # taken by an earlier fill() that read nothing: not needed
            self._buffers.give(self._buf)
            self._buf = None
        if self._holding_slot:
            self._slots.release()
        view = memoryview(buffer)[:length]
        self._hash.update(view)
        self._size += length
        self._buf, self._fill, self._holding_slot = buffer, length, True
        if length == self.request.part_size:
            self._part_full()

    def _take_buffer(self) -> bytearray:
        if self._held and self._whole_too_big():
            self._ship_held()  # the source sent more than it declared: no longer one request
        self._take_slot()
        self._buf, self._fill = self._buffers.take(), 0
        return self._buf

    def _whole_too_big(self) -> bool:
        hint = self.request.size_hint
        return hint is None or hint > self.request.single_request_max or self._size > hint

    def _part_full(self) -> None:
        if not self._began and not self._whole_too_big():
            assert self._buf is not None
            self._held.append(self._buf)  # kept, with its slot, for one whole-object request
            self._buf, self._fill, self._holding_slot = None, 0, False
            return
        self._ship_held()
        self._ship_buffer()

    def _ship_held(self) -> None:
        held, self._held = self._held, []
        for buf in held:
            self._ship(buf, buf)

    def _take_slot(self) -> None:
        # Blocks while `concurrency` parts are alive; raises at once if one of them already failed.
        while not self._slots.acquire(timeout=0.5):
            self._raise_failed_part()
        self._holding_slot = True
        self._raise_failed_part()

    def _raise_failed_part(self) -> None:
        for fut in self._pending:
            if fut.done() and fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]

    def _ship_buffer(self) -> None:
        """Send the part being filled: the pool buffer itself when full, else a copy of the short part."""
        buf, fill = self._buf, self._fill
        assert buf is not None
        self._buf, self._fill = None, 0
        if fill == len(buf):
            self._ship(buf, buf)
        else:
            # The short last part: a bytearray of its own (SDKs want the whole object they are given).
            data = bytearray(memoryview(buf)[:fill])
            self._buffers.give(buf)
            self._ship(data, None)

    def _ship(self, data: bytearray, pooled: bytearray | None) -> None:
        if not self._began:
            self._begin()
            self._began = True
            workers = 1 if self.ordered_parts else self.request.concurrency
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="archiver-part")
        number, self._next_part = self._next_part, self._next_part + 1
        self._holding_slot = False  # the slot now travels with the part and is released when it is done
        if pooled is not None:
            with self._inflight_lock:
                self._inflight[number] = pooled
        assert self._pool is not None
        self._pending.append(self._pool.submit(self._run_part, number, data))

    def _give_back(self, number: int) -> None:
        with self._inflight_lock:
            buf = self._inflight.pop(number, None)
        if buf is not None:
            self._buffers.give(buf)

    def _run_part(self, number: int, data: bytearray) -> Part:
        try:
            digest = hashlib.sha256(data).digest() if self.part_digests else b""
            receipt = self._send_part(number, data, digest)
            return Part(number, len(data), digest, receipt)
        finally:
            self._give_back(number)  # sent or failed: the buffer is free for the next part
            self._slots.release()

    def _whole(self) -> bytearray | Chain:
        """The object held for one request: one bytearray when it is a single buffer, else a Chain."""
        views = [memoryview(b) for b in self._held]
        if self._buf is not None and self._fill:
            views.append(memoryview(self._buf)[:self._fill])
        if len(views) == 1 and self._held:
            return self._held[0]  # exactly one full part: the pool buffer as it is
        if len(views) == 1:
            return bytearray(views[0])  # a short object: its own bytearray, as SDKs want
        return Chain(views) if views else bytearray()

    def _release_buffers(self) -> None:
        """Hand every buffer this writer still holds back to the pool (and its slot back)."""
        held, self._held = self._held, []
        for buf in held:  # each held buffer holds a slot
            self._buffers.give(buf)
            self._slots.release()
        if self._buf is not None:
            self._buffers.give(self._buf)
            self._buf, self._fill = None, 0
        if self._holding_slot:  # the part being filled (or about to be: a failure may come right after)
            self._slots.release()
            self._holding_slot = False
        with self._inflight_lock:
            numbers = list(self._inflight)
        for number in numbers:  # parts cancelled before they ran
            self._give_back(number)
