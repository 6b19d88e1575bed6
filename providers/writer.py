"""The streaming writer every provider shares: buffer a part, send parts concurrently, commit or abort.

Memory is bounded by design: at most `part_size * concurrency` bytes of payload are alive whatever
the object's size, in buffers of the process's pool (the streaming half, providers/parts.py). An
object whose length is known and fits within `single_request_max` (at most what the slots hold) is
sent with one create-only request (`_put_single`) instead of a multipart session. The bytes are
counted and SHA-256 hashed once, as they stream; after the provider commits, the object
is verified (providers/committed.py): only proof that its bytes differ from the stream deletes it,
and nothing committed is ever left visible behind an error without the error saying so
(`StorageError.left_visible`).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

from providers.committed import CommittedObjectChecks
from providers.errors import StorageError, TransientError
from providers.parts import PartStream
from providers.pool import Chain
from providers.types import ObjectInfo, Part, WriteRequest

__all__ = ["ObjectWriter", "Part", "WriteRequest"]
_log = logging.getLogger(__name__)


class ObjectWriter(PartStream, CommittedObjectChecks):
    """Context manager: `write()` bytes, then `commit()`; leaving the block on an exception aborts."""

    # A protocol that appends in order (a local file, a GCS resumable session) sends parts from one
    # thread, one after another; the caller still fills the next part while the previous one is sent.
    ordered_parts: bool = False
    # Whether `_send_part` needs each part's SHA-256. A second pass over every byte (about 0.6 s of
    # CPU per GiB here) is paid only by writers that send or compare it (S3 in sha256 mode).
    part_digests: bool = False

    def __init__(self, request: WriteRequest, describe: str) -> None:
        super().__init__(request)
        self.describe = describe  # e.g. "s3://bucket/prefix/key", for messages
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
    def _put_single(self, data: bytearray | Chain, sha256_hex: str) -> ObjectInfo:
        """Write a whole object with one request (create-only when if_absent): a bytearray when it fits
        in one part, else a Chain of part buffers (file-like, iterable, no copy); within
        `request.single_request_max` bytes.
        If it fails after the object became visible, it must raise `self._unpublish(error)`, which
        removes the object or records on the error that it could not: abort() calls `_cancel` only
        for uploads that `_begin` started."""

    @abstractmethod
    def _cancel(self) -> None:
        """Discard the upload started by `_begin`; must leave nothing billable or visible behind."""

    # ---- the streaming side: providers/parts.py ----------------------------------------------------
    # ---- finishing ------------------------------------------------------------------------------
    def commit(self) -> ObjectInfo:
        self._require_open()
        try:
            sha256_hex = self._hash.hexdigest()
            if not self._began and not (self._held and self._whole_too_big()):
                whole = self._whole()
                try:
                    info = self._committing(lambda: self._put_single(whole, sha256_hex))
                finally:
                    self._release_buffers()
                parts: list[Part] = [Part(1, self._size, self._hash.digest(), None)]
            else:
                self._ship_held()
                if self._fill:
                    self._ship_buffer()
                parts = [fut.result() for fut in self._pending]
                info = self._committing(lambda: self._complete(parts, sha256_hex))
            self._release_buffers()
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
        for fut in self._pending:
            fut.cancel()
        self._release_pool()
        self._release_buffers()
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
