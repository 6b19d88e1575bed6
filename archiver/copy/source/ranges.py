"""Parallel ranged download: a large file fetched as several ranges at once, fed to the writer in order.

Why: a CDN throttles each connection (20-40 MB/s across the Internet), far below what the machine and
the bucket take; N connections fetch N times as fast.

How: the file is cut into the writer's parts (``part_size`` bytes). Part 0 comes from the first,
unranged answer (already open, its first bytes already read); every other part is one
``Range: bytes=a-b`` request with ``If-Range`` naming the first answer's validator. ``ranges`` threads
take the parts in order, each into a buffer of the process's pool, and may run at most ``ranges`` parts
ahead of the oldest part not yet handed on (the reordering window). The caller's thread hands the parts
to the writer strictly in order, which hashes them (so the recorded SHA-256 is the plain SHA-256 of the
whole file, exactly as for one stream, and ``verify --deep`` checks the same) and uploads them with its
own concurrency (S3 parts and Azure blocks complete in any order; a GCS session takes them in order).
Payload memory: each buffer being filled holds one of the writer's slots, as a part being sent does,
so at most the writer's ``concurrency`` x part_size is alive, as for one stream (the issue's bound of
(ranges + parts in flight) x part_size, made tighter): uploads that keep up leave the slots to the
ranges; uploads that lag take them, and fetching further ahead would not help then.

Integrity, per range: each 206 must name exactly the bytes asked for, the total the first answer
declared and the same validators; a 200 (If-Range failed: another version), a 416 or changed
validators raise SourceChanged, and the copy starts again from byte 0 (as a changed source always
does). A transport fault within a range resumes that range where it stopped, with the same checks, up
to ``policy.max_resumes`` times per range.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Protocol

import httpx

from archiver.copy.source import ssrf
from archiver.copy.source.resume import Validators
from archiver.copy.source.status import SourceChanged, SourceError, TransientSourceError, status_error, transport_error
from archiver.copy.source.stream import SourceStream

log = logging.getLogger("archiver.source")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_IGNORES_RANGES: set[str] = set()  # hosts that answered a Range with the whole file


class PartSink(Protocol):
    """The writer side (providers.ObjectWriter): a slot for each buffer being filled (``reserve``), then
    the pool buffer holding the next bytes, in order, with its slot (``take_part``)."""

    def reserve(self, timeout: float) -> bool: ...
    def unreserve(self) -> None: ...
    def take_part(self, buffer: bytearray, length: int) -> None: ...


def range_count(stream: object, size: int | None, part_size: int, ranges: int, single_max: int) -> int:
    """How many ranges to fetch ``stream`` with: 0 (one stream) unless it is a SourceStream that may be
    ranged (``SourceStream.ranges_ok``), ``ranges`` > 1, and the file is more than one request would
    carry and at least two parts."""
    if ranges < 2 or size is None or not isinstance(stream, SourceStream) or not stream.ranges_ok:
        return 0
    if httpx.URL(stream.url).host in _IGNORES_RANGES:
        return 0
    if size <= single_max or size < 2 * part_size:
        return 0
    return min(ranges, -(-size // part_size))


def fill_range(stream: SourceStream, start: int, out: memoryview) -> None:
    """Fill ``out`` with the file's bytes [start, start + len(out)) of the version ``stream`` is reading,
    resuming within the range after a transport fault. Raises SourceChanged or SourceError."""
    got, resumes, end = 0, 0, start + out.nbytes
    error: SourceError | None = None
    policy = stream.policy
    while got < out.nbytes:
        if error is not None:
            if resumes >= policy.max_resumes:
                raise TransientSourceError(f"{error}; bytes {start}-{end - 1}: {resumes} resumes used",
                                           code="resume_exhausted" if policy.max_resumes else error.code)
            resumes += 1
            time.sleep(min(policy.resume_backoff * 2 ** (resumes - 1), 5.0))
            log.info("resuming range %d-%d at byte %d (%s)", start, end - 1, start + got, error.code)
        try:
            response, final = stream.get_range(start + got, end)
        except TransientSourceError as exc:
            error = exc
            continue
        where = ssrf.redact(final)
        try:
            error = _check(stream, response, final, start + got, end)
            if error is not None:
                continue
            for chunk in response.iter_raw():
                if got + len(chunk) > out.nbytes:
                    raise TransientSourceError(f"{where}: a 206 for bytes {start + got}-{end - 1} sent more",
                                               code="length_mismatch")
                out[got:got + len(chunk)] = chunk
                got += len(chunk)
            if got < out.nbytes:
                error = TransientSourceError(f"{where}: the range ended at byte {start + got}", code="connection")
        except httpx.TransportError as exc:
            error = transport_error(where, exc)
        finally:
            response.close()


def _check(stream: SourceStream, response: httpx.Response, final: httpx.URL, start: int,
           end: int) -> SourceError | None:
    """None when ``response`` is the 206 for bytes [start, end) of the same version; an error worth
    another try; or raises (SourceChanged, a final SourceError)."""
    where, status = ssrf.redact(final), response.status_code
    if status == 206:
        raw = response.headers.get("content-range", "").strip()
        match = _CONTENT_RANGE.fullmatch(raw)
        if match is None or (int(match[1]), int(match[2]) + 1) != (start, end):
            raise TransientSourceError(f"{where}: asked for bytes {start}-{end - 1} and got Content-Range "
                                       f"{raw or 'none'}", code="bad_range")
        if int(match[3]) != stream.size:
            raise SourceChanged(f"{where}: the file is now {match[3]} bytes (Content-Range {raw}), it was "
                                f"{stream.size}")
        if change := stream.validators.change(Validators.of(response)):
            raise SourceChanged(f"{where}: range {start}-{end - 1}: {change}")
        return None
    if status == 200 and not stream.validators.change(Validators.of(response)):
        # The same version, whole: this server ignores Range despite its Accept-Ranges. Start again, in
        # one stream this time (the host is remembered for the life of the process).
        _IGNORES_RANGES.add(httpx.URL(stream.url).host)
        raise SourceChanged(f"{where}: a Range was answered with the whole file (200) although the server said "
                            "Accept-Ranges: bytes; reading it in one stream instead")
    if status in (200, 416):
        raise SourceChanged(f"{where}: range {start}-{end - 1} answered HTTP {status}: the file changed since the "
                            "first answer (If-Range no longer matched)")
    error = status_error(status, final, httpx.URL(stream.url), announced_at=stream.announced_at,
                         grace=stream.policy.not_found_grace)
    if error.retryable:
        return error
    raise error


def _read_first(stream: SourceStream, out: memoryview) -> None:
    """Fill ``out`` from the first answer's body (it resumes on its own), then stop that body."""
    got = 0
    while got < out.nbytes:
        n = stream.readinto(out[got:])
        if n == 0:
            raise TransientSourceError(f"{stream.url}: the body ended after {stream.bytes_read} bytes of "
                                       f"{stream.size}", code="length_mismatch")
        got += n
    stream.stop_body()


class RangedCopy:
    """One file, fetched in ``ranges`` parallel ranges of ``part_size`` bytes, handed to ``sink`` in order."""

    def __init__(self, stream: SourceStream, part_size: int, ranges: int, take: Callable[[], bytearray],
                 give: Callable[[bytearray], None]) -> None:
        assert stream.size is not None
        self.stream, self.part_size, self.ranges = stream, part_size, ranges
        self.size = stream.size
        self.count = -(-self.size // part_size)
        self._take, self._give = take, give
        self._cond = threading.Condition()
        self._next_take = 0
        self._next_hand = 0  # parts before this one are the writer's
        self._done: dict[int, bytearray] = {}
        self._failure: BaseException | None = None
        self._stop = False

    def run(self, sink: PartSink, head: bytes, after_part: Callable[[int], None]) -> None:
        """Copy the file into ``sink``; ``head`` is what was already read from the first answer.
        ``after_part(bytes handed so far)`` runs in the caller's thread after each part (lease, progress)."""
        self._head, self._sink = head, sink
        threads = [threading.Thread(target=self._worker, name=f"archiver-range-{i}", daemon=True)
                   for i in range(min(self.ranges, self.count))]
        for thread in threads:
            thread.start()
        try:
            for number in range(self.count):
                buffer = self._wait_for(number)
                length = min(self.part_size, self.size - number * self.part_size)
                sink.take_part(buffer, length)  # the writer owns the buffer now, and gives it back
                with self._cond:
                    self._next_hand = number + 1
                    self._cond.notify_all()
                after_part(number * self.part_size + length)
        finally:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
                done, self._done = self._done, {}
            for buffer in done.values():  # fetched, never handed over: buffer and slot go back
                self._give(buffer)
                sink.unreserve()
            for thread in threads:
                thread.join()
        self.stream.size_proven = True
        self.stream.size_note = (f"{self.size} bytes, as Content-Length said; fetched as {self.count} parts over "
                                 f"{len(threads)} parallel ranges, each 206 naming that total and the same "
                                 "validators")

    def _wait_for(self, number: int) -> bytearray:
        with self._cond:
            self._cond.wait_for(lambda: number in self._done or self._failure is not None)
            if number not in self._done:
                assert self._failure is not None
                raise self._failure
            return self._done.pop(number)

    def _worker(self) -> None:
        while self._reserve():
            with self._cond:
                self._cond.wait_for(lambda: self._stopped or self._next_take >= self.count
                                    or self._next_take < self._next_hand + self.ranges)
                if self._stopped or self._next_take >= self.count:
                    self._sink.unreserve()
                    return
                number, self._next_take = self._next_take, self._next_take + 1
            buffer = self._take()
            try:
                start = number * self.part_size
                view = memoryview(buffer)[:min(self.part_size, self.size - start)]
                if number == 0:
                    view[:len(self._head)] = self._head
                    _read_first(self.stream, view[len(self._head):])
                else:
                    fill_range(self.stream, start, view)
            except BaseException as exc:
                self._give(buffer)
                self._sink.unreserve()
                self._fail(exc)
                return
            with self._cond:
                if not self._stop:
                    self._done[number] = buffer
                    self._cond.notify_all()
                    continue
            self._give(buffer)
            self._sink.unreserve()
            return

    @property
    def _stopped(self) -> bool:
        return self._stop or self._failure is not None

    def _reserve(self) -> bool:
        """A writer slot for the next part; False when the copy is over (or failed) meanwhile."""
        while True:
            with self._cond:
                if self._stopped or self._next_take >= self.count:
                    return False
            try:
                if self._sink.reserve(timeout=0.2):
                    return True
            except BaseException as exc:  # a part upload failed: the copy fails with its error
                self._fail(exc)
                return False

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self._failure = self._failure or exc
            self._cond.notify_all()
