"""Whether a ranged answer continues the bytes already read: validators and Content-Range.

A resume (``Range: bytes=<n>-``) may only be spliced onto the first ``n`` bytes when it is provably
the same version of the file and exactly the bytes asked for. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from archiver.copy.source.status import TransientSourceError

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED = re.compile(r"bytes \*/(\d+)")


@dataclass(frozen=True)
class Validators:
    """The version identifiers an answer carried (header values as sent, or None)."""

    etag: str | None
    last_modified: str | None

    @classmethod
    def of(cls, response: httpx.Response) -> Validators:
        return cls(response.headers.get("etag"), response.headers.get("last-modified"))

    @property
    def if_range(self) -> str | None:
        """What may go into If-Range (RFC 9110 13.1.5): a strong ETag, else the Last-Modified date.

        A weak ETag promises equivalent content, not identical bytes, so it cannot be sent there; it
        is still compared (``change``)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def change(self, answer: Validators, *, missing_ok: bool = False) -> str | None:
        """Why ``answer`` may be another version than the one these validators name, or None.

        Every validator the first answer had is compared, whichever one went into If-Range: a
        server may ignore If-Range. One that ``answer`` lacks counts as a change unless ``missing_ok``
        (a 416 need not repeat them)."""
        for name, ours, theirs in (("ETag", self.etag, answer.etag),
                                   ("Last-Modified", self.last_modified, answer.last_modified)):
            if ours is None:
                continue
            if theirs is None:
                if missing_ok:
                    continue
                return f"the answer has no {name} although the first answer had {ours}"
            if theirs != ours:
                return f"{name} changed from {ours} to {theirs}"
        return None


def partial_span(response: httpx.Response, where: str, start: int, known: int | None,
                 known_what: str) -> tuple[int, int | None]:
    """(end, total) of a 206 answering ``Range: bytes=<start>-``: ``end`` is the offset after its last
    byte, ``total`` the file's length (None for ``*``). ``known`` is the file's length as known so far
    (``known_what`` says from where: "Content-Length", "the size VideoSDK reported", ...).

    Raises TransientSourceError ``bad_range`` when the range is not the one asked for (another start,
    an end short of the end of the file, no Content-Range) and ``length_mismatch`` when the total or
    the 206's own Content-Length disagrees."""
    raw = response.headers.get("content-range", "").strip()
    match = _CONTENT_RANGE.fullmatch(raw)
    if match is None:
        raise TransientSourceError(f"{where}: 206 without a usable Content-Range ({raw or 'none'})", code="bad_range")
    first, last, total = int(match[1]), int(match[2]), None if match[3] == "*" else int(match[3])
    if total is not None and known is not None and total != known:
        raise TransientSourceError(f"{where}: the file is now {total} bytes (Content-Range {raw}) but {known_what} "
                                   f"was {known}", code="length_mismatch")
    end = total if total is not None else known
    if first != start or last < first or (end is not None and last + 1 != end):
        raise TransientSourceError(f"{where}: asked for bytes {start}- and got Content-Range {raw}", code="bad_range")
    declared = response.headers.get("content-length")
    chunked = "chunked" in response.headers.get("transfer-encoding", "").lower()
    if declared is not None and not chunked and int(declared) != last + 1 - first:
        raise TransientSourceError(f"{where}: a 206 for {raw} declares Content-Length {declared}",
                                   code="length_mismatch")
    return last + 1, total


def unsatisfied_total(response: httpx.Response) -> int | None:
    """The length a 416 names (``Content-Range: bytes */<total>``), or None."""
    match = _UNSATISFIED.fullmatch(response.headers.get("content-range", "").strip())
    return int(match[1]) if match else None
