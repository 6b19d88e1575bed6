"""After a commit: verify the object, report what could not be verified, or remove it (raising).

The rules, for every provider:
- a stored size that differs from the stream is proof: the object is removed, IntegrityError;
- a service digest that disagrees is not proof (a store may put another kind of value where a digest
  seems to be): the object is read back whole, and only bytes that differ are proof;
- without a digest that proves the bytes, the provider says how much to read back (`_readback_depth`);
- a verification read that is denied (write-only credentials) leaves the object committed and
  reported, with `ObjectInfo.unverified` saying what was not checked; any other failure to verify
  removes the object and raises;
- every removal is of this writer's own version only, and a removal that fails is recorded on the
  raised error (`StorageError.left_visible`): nothing stays visible behind an error unannounced.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, BinaryIO

from providers.errors import (
    AccessDenied,
    AuthenticationError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientError,
)
from providers.readback import FULL, RANGES, read_back_full, read_back_ranges
from providers.types import ObjectInfo, Part

if TYPE_CHECKING:
    import hashlib

    from providers.types import WriteRequest

_log = logging.getLogger(__name__)


class CommittedObjectChecks(ABC):
    """The post-commit half of ObjectWriter; the hooks below are what a provider implements."""

    request: WriteRequest
    describe: str
    _size: int
    _hash: hashlib._Hash
    _state: str

    @abstractmethod
    def _delete_committed(self) -> None:
        """Remove the version this writer committed, and only that one (a newer one someone else wrote
        stays). A missing object or a lost condition is not an error: ours is not visible then."""

    @abstractmethod
    def _open_committed(self, start: int, length: int | None) -> BinaryIO:
        """Read bytes [start, start+length) (to the end when None) of the version this writer committed."""

    def _service_mismatches(self, info: ObjectInfo, parts: list[Part]) -> list[str]:
        """Where the service's report about the committed object disagrees with the stream, in words.

        None of these is proof that the bytes differ (a store may report a value of another kind than
        it seems): the writer reads the object back, and only what it reads decides."""
        return []

    def _readback_depth(self, info: ObjectInfo, parts: list[Part]) -> str | None:
        """When the report showed no disagreement: None if it proves the bytes (a service digest of
        them matched), else "ranges" or "full" (see providers/readback.py)."""
        return None

    def _part_digest(self, part: Part) -> tuple[str, bytes] | None:
        """(hashlib algorithm, digest) of a part as streamed, for a "ranges" read-back; None if unknown."""
        return ("sha256", part.sha256) if part.sha256 else None

    def _find_own_commit(self) -> ObjectInfo | None:
        """After a commit request failed with an unknown outcome (its answer may have been lost after
        the service committed): the object at the key if it is provably the one streamed (same size
        and a digest equal to the stream's), as `_complete` would have returned it; else None."""
        return None

    @property
    def checked_on_arrival(self) -> str:
        """What the service itself checked as the bytes arrived, for `ObjectInfo.unverified` texts."""
        return "the service checked the size of each request"

    def _verify(self, info: ObjectInfo, parts: list[Part]) -> ObjectInfo:
        """Accept, report as unverified, or remove the committed object (raising).

        A stored size that differs is proof; a service digest that differs is not (the object is read
        back, fully, and only different bytes are proof); without a digest that proves the bytes, the
        provider's `_readback_depth` says how much to read back. A read-back that is denied leaves the
        object reported with `unverified`; any other failure to read removes it and raises."""
        if info.size != self._size:
            self._fail([f"size {info.size} stored, {self._size} streamed"])
        doubts = self._service_mismatches(info, parts)
        if info.unverified:  # the provider could not read the object at all (e.g. read denied)
            if doubts:
                info = replace(info, unverified=(*info.unverified, "the write's answer disagrees with the "
                                                 f"stream ({'; '.join(doubts)}) and this was not settled"))
            return info
        depth = FULL if doubts else self._readback_depth(info, parts)
        if depth is None:
            return info
        digests = [self._part_digest(p) for p in parts]
        try:
            if depth == RANGES and all(digests):  # without every part's digest only a full read can tell
                sizes = [(p.size, *d) for p, d in zip(parts, digests, strict=True) if d is not None]
                problems = read_back_ranges(self._open_committed, sizes)
            else:
                problems = read_back_full(self._open_committed, self._size, self._hash.hexdigest())
        except (AccessDenied, AuthenticationError) as exc:
            unsettled = (f"the service's report disagrees with the stream ({'; '.join(doubts)})" if doubts
                         else "the service reported no digest that proves the stored bytes")
            return replace(info, unverified=(f"read denied ({exc.code}): {unsettled}, and the object could "
                                             f"not be read back; {self.checked_on_arrival}",))
        except ObjectNotFound as exc:  # deleted by someone right after the commit: nothing is visible
            raise TransientError(f"the object disappeared right after commit: {exc.message}",
                                 code="vanished") from exc
        except ObjectExists as exc:  # a conditional read failed: another writer replaced ours
            exc.annotate("another object replaced this one right after the commit")
            raise
        except StorageError as exc:
            raise self._unpublish(exc)  # noqa: B904 - the context is chained already
        if problems:
            self._fail(doubts + problems)
        if doubts:
            _log.warning("%s: the service reported %s, but the bytes read back are the ones streamed",
                         self.describe, "; ".join(doubts))
        return info

    def _fail(self, problems: list[str]) -> None:
        error = IntegrityError(f"integrity check failed on {self.describe}: {'; '.join(problems)}",
                               code="integrity")
        raise self._unpublish(error)

    def _unpublish(self, error: StorageError) -> StorageError:
        """Remove the committed object because of `error`; return `error`, saying what became of it."""
        self._state = "aborted"
        try:
            self._delete_committed()
        except StorageError as exc:  # `error` is the news; the failed cleanup is recorded on it
            error.leave_visible(self.request.key, f"the object is still visible at {self.describe} "
                                f"(deleting it failed: {exc.code or type(exc).__name__})")
        else:
            error.annotate("the object was deleted")
        return error
