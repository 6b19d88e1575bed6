"""The streaming writer every provider shares: buffer a part, send parts concurrently, commit or abort.

Memory is bounded by design: a part holds one of `concurrency` slots from the moment its buffer
starts filling until the service has acknowledged it, so at most `part_size * concurrency` bytes of
payload are alive whatever the object's size. The bytes are counted and SHA-256 hashed as they
stream; after the provider commits, the object is verified (providers/committed.py): only proof that
its bytes differ from the stream deletes it, and nothing committed is ever left visible behind an
error without the error saying so (`StorageError.left_visible`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from abc import abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from types import TracebackType
from typing import Any

from providers.committed import CommittedObjectChecks
from providers.errors import StorageError, TransientError
from providers.types import ObjectInfo, Part, WriteRequest

__all__ = ["ObjectWriter", "Part", "WriteRequest"]
_log = logging.getLogger(__name__)


class ObjectWriter(CommittedObjectChecks):
    """Context manager: `write()` bytes, then `commit()`; leaving the block on an exception aborts."""

    # A protocol that appends in order (a local file, a GCS resumable session) sends parts from one
    # thread, one after another; the caller still fills the next part while the previous one is sent.
    ordered_parts: bool = False
    # Whether `_send_part` needs each part's SHA-256. A second pass over every byte (about 0.6 s of
    # CPU per GiB here) is paid only by writers that send or compare it (S3 in sha256 mode).
    part_digests: bool = False

    def __init__(self, request: WriteRequest, describe: str) -> None:
        self.request = request
        self.describe = describe  # e.g. "s3://bucket/prefix/key", for messages
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._next_part = 1
        self._pending: list[Future[Part]] = []
        self._slots = threading.BoundedSemaphore(request.concurrency)
        self._holding_slot = False
        self._pool: ThreadPoolExecutor | None = None
        self._began = False
        self._state = "open"
        # What abort() could not discard (e.g. an S3 multipart upload, billed until aborted), in words;
        # a commit() that failed says so in its error too. discard_incomplete(key) retries the cleanup.
        self.left_incomplete: str | None = None

    # ---- what a provider implements -------------------------------------------------------------
    @abstractmethod
    def _begin(self) -> None:
        """Start a multipart/staged/resumable upload; called once, before the first part is sent."""

    @abstractmethod
    def _send_part(self, number: int, data: bytearray, sha256: bytes) -> Any:
        """Upload one part; return the receipt to pass to `_complete`. Runs in a worker thread."""

    @abstractmethod
    def _complete(self, parts: list[Part], sha256_hex: str) -> ObjectInfo:
        """Make the object visible (create-only when if_absent); return what the service reports."""

    @abstractmethod
    def _put_single(self, data: bytearray, sha256_hex: str) -> ObjectInfo:
        """Write a whole object that fits in one part with one request (create-only when if_absent).
        If it fails after the object became visible, it must raise `self._unpublish(error)`, which
        removes the object or records on the error that it could not: abort() calls `_cancel` only
        for uploads that `_begin` started."""

    @abstractmethod
    def _cancel(self) -> None:
        """Discard the upload started by `_begin`; must leave nothing billable or visible behind."""

    # ---- the streaming side ---------------------------------------------------------------------
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
            if not self._holding_slot:
                self._take_slot()
            room = part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) >= part_size:
                self._ship_buffer()
        return len(data)

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
        if not self._began:
            self._begin()
            self._began = True
            workers = 1 if self.ordered_parts else self.request.concurrency
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="archiver-part")
        data, self._buffer = self._buffer, bytearray()
        number, self._next_part = self._next_part, self._next_part + 1
        self._holding_slot = False  # the slot now travels with the part and is released when it is done
        assert self._pool is not None
        self._pending.append(self._pool.submit(self._run_part, number, data))

    def _run_part(self, number: int, data: bytearray) -> Part:
        try:
            digest = hashlib.sha256(data).digest() if self.part_digests else b""
            receipt = self._send_part(number, data, digest)
            return Part(number, len(data), digest, receipt)
        finally:
            self._slots.release()

    # ---- finishing ------------------------------------------------------------------------------
    def commit(self) -> ObjectInfo:
        self._require_open()
        try:
            sha256_hex = self._hash.hexdigest()
            if not self._began:
                info = self._committing(lambda: self._put_single(self._buffer, sha256_hex))
                parts: list[Part] = [Part(1, self._size, self._hash.digest(), None)]
            else:
                if self._buffer:
                    self._ship_buffer()
                parts = [fut.result() for fut in self._pending]
                info = self._committing(lambda: self._complete(parts, sha256_hex))
            self._buffer = bytearray()
            self._state = "committed"
        except BaseException as exc:
            self.abort()
            if isinstance(exc, StorageError) and self.left_incomplete:
                exc.annotate(f"{self.left_incomplete} could not be discarded")
            raise
        finally:
            self._release_pool()
        info = self._verify(info, parts)
        return replace(info, key=self.request.key, checksums={**info.checksums, "sha256": sha256_hex})

    def _committing(self, send: Callable[[], ObjectInfo]) -> ObjectInfo:
        """Send the commit request. A TransientError leaves its outcome unknown (the SDK gave up on an
        answer that may have been lost after the service committed): then the object at the key is
        accepted if it is provably the one streamed, rather than left visible behind the error."""
        try:
            return send()
        except TransientError as exc:
            if self._state != "open":  # raised after the commit was known (and handled) already
                raise
            try:
                found = self._find_own_commit()
            except StorageError:
                found = None
            if found is None:
                raise
            _log.warning("%s: the commit's answer was lost (%s); the object at the key is the one streamed",
                         self.describe, exc.code)
            return found

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        self._buffer = bytearray()
        for fut in self._pending:
            fut.cancel()
        self._release_pool()
        if self._began:
            self._cancel()

    def _release_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _require_open(self) -> None:
        if self._state != "open":
            raise StorageError(f"writer for {self.describe} is already {self._state}")

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            # Leaving the block without commit() is a programming error, not a reason to publish.
            self.abort()
