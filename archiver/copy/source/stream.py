"""The download stream ``archiver.copy.source.opener.open_source`` returns: reading, resuming, proving the length.

A body ends in one of three ways: at its Content-Length, at a chunked body's last chunk, or when the
connection closes (no framing at all, so an early close looks like the end). A transport fault or a
body that is provably cut short is resumed from the ORIGINAL URL with ``Range``/``If-Range``; a body
whose end nothing proves is probed (``Range: bytes=<n>-``) instead of being trusted.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from archiver.copy.source import ssrf
from archiver.copy.source.resume import Validators, partial_span, unsatisfied_total
from archiver.copy.source.status import (
    PermanentSourceError,
    SourceChanged,
    SourceError,
    TransientSourceError,
    status_error,
    transport_error,
)
from archiver.retry import Backoff

if TYPE_CHECKING:
    from archiver.copy.source.opener import SourcePolicy

log = logging.getLogger("archiver.source")
REPORTED = "the size VideoSDK reported"  # where an expected_size comes from, in messages
RESUME_BACKOFF_CAP = 5.0  # seconds: the longest wait before a resume (the first waits resume_backoff)


def guarded_get(guard: ssrf.GuardedClient, url: httpx.URL,
                headers: Mapping[str, str]) -> tuple[httpx.Response, httpx.URL]:
    """The guarded GET (archiver.copy.source.ssrf) with its failures translated into SourceErrors."""
    try:
        return guard.get(url, headers)
    except ssrf.Refused as exc:
        raise PermanentSourceError(str(exc), code="ssrf") from None
    except ssrf.Unresolvable as exc:
        raise TransientSourceError(str(exc), code="dns") from None
    except ssrf.RedirectError as exc:
        raise PermanentSourceError(str(exc), code=exc.code) from None
    except ssrf.Unreachable as exc:
        assert isinstance(exc.__cause__, httpx.TransportError)
        raise transport_error(str(exc), exc.__cause__) from None


def framing(response: httpx.Response) -> str:
    """How the body's end is marked: "chunked" (a last chunk), "length" (Content-Length) or "close"
    (nothing: the connection closing ends it, so an early close looks like the end)."""
    if "chunked" in response.headers.get("transfer-encoding", "").lower():
        return "chunked"
    return "length" if "content-length" in response.headers else "close"


class SourceStream(io.RawIOBase):
    """Binary, read-only, non-seekable stream over the body; resumes transparently.

    ``size``: the length the first answer declared (Content-Length), else the caller's
    ``expected_size``, else None. Once a read has returned end of file, ``size_proven`` says whether
    the bytes handed out are proven to be the whole file: by the first answer's Content-Length, a
    chunked body's last chunk, a Content-Range total, the caller's ``expected_size``, or a probe at
    the end of a body that had none of these (``Range: bytes=<n>-`` answered 416 ``bytes */<n>``).
    ``size_note`` says how it was proven or why it could not be; an unproven length is not an error
    (the caller records the copy as unproven). SourceErrors are sticky: a read after one raises it again.
    """

    expected_sha256: str | None = None  # an HTTP source vouches for no digest (VideoSDK's CDN sends none)

    def __init__(self, original: httpx.URL, policy: SourcePolicy, guard: ssrf.GuardedClient,
                 response: httpx.Response, final: httpx.URL, owns_client: bool, *,
                 expected_size: int | None, announced_at: datetime | None) -> None:
        super().__init__()
        self.url, self.final_url = str(original), str(final)
        self._length = int(response.headers["content-length"]) if framing(response) == "length" else None
        self._length_how = "Content-Length"
        self.size: int | None = self._length if self._length is not None else expected_size
        self.content_type: str | None = response.headers.get("content-type")
        self._validators = Validators.of(response)
        self._accepts_ranges = response.headers.get("accept-ranges", "").strip().lower() == "bytes"
        self.etag, self.last_modified = self._validators.etag, self._validators.last_modified
        self.bytes_read = 0
        self.resumes = 0
        self.size_proven = False
        self.size_note: str | None = None
        self._original, self._final = original, final
        self._expected, self._announced_at = expected_size, announced_at
        self._policy, self._guard = policy, guard
        self.policy, self.validators, self.announced_at = policy, self._validators, announced_at  # for ranges
        self._owns_client = owns_client
        self._pending = memoryview(b"")
        self._eof = False
        self._failed: SourceError | None = None
        self._attach(response, end=self._length)

    @property
    def ranges_ok(self) -> bool:
        """Whether the rest of the file may be fetched as ranges beside this body (archiver.copy.source.ranges):
        its length is the first answer's Content-Length, the server said ``Accept-Ranges: bytes``, and it
        named a validator that If-Range can carry, so every range is provably from the same version."""
        return self._length is not None and self._accepts_ranges and self._validators.if_range is not None

    def get_range(self, start: int, end: int) -> tuple[httpx.Response, httpx.URL]:
        """GET bytes [start, end) of the ORIGINAL URL with If-Range (the SSRF guard applies as to every
        request); the caller checks and closes the answer. Raises SourceError as ``guarded_get``."""
        assert self._validators.if_range is not None
        return guarded_get(self._guard, self._original,
                           {"Range": f"bytes={start}-{end - 1}", "If-Range": self._validators.if_range})

    def stop_body(self) -> None:
        """Stop reading the first answer's body (the rest comes as ranges): its connection closes."""
        self._response.close()

    def readable(self) -> bool:
        return True  # io.RawIOBase.read(n) and read() (readall) are built on readinto

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("I/O operation on closed SourceStream")
        if self._failed is not None:
            raise self._failed  # sticky: a retried read must never look like a clean end of file
        out = memoryview(buffer).cast("B")
        while not self._pending and out.nbytes:
            if self._eof:
                return 0
            try:
                self._fill()
            except SourceError as exc:
                self._failed = exc
                raise
        n = min(out.nbytes, self._pending.nbytes)
        out[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.bytes_read += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            if self._owns_client:
                self._guard.client.close()
        super().close()

    def _attach(self, response: httpx.Response, end: int | None) -> None:
        """Read on from ``response``, whose body should end at file offset ``end`` (None: unknown)."""
        self._response, self._end = response, end
        self._framing, self._ranged = framing(response), response.status_code == 206
        self._chunks = response.iter_raw()  # raw: bytes exactly as sent, no decoding

    @property
    def _where(self) -> str:
        return ssrf.redact(self._final)

    def _known(self) -> tuple[int | None, str]:
        """The file's length as known so far, and from where."""
        if self._length is not None:
            return self._length, self._length_how
        return self._expected, REPORTED

    def _fill(self) -> None:
        try:
            chunk = next(self._chunks, None)
        except httpx.TransportError as exc:  # reset, timeout, "peer closed" mid-body, an unfinished chunked body
            self._continue(transport_error(self._where, exc))
            return
        if chunk is None:
            self._response.close()
            self._at_end()
            return
        limit, what = (self._end, "Content-Length/Content-Range") if self._end is not None else self._known()
        if limit is not None and self.bytes_read + len(chunk) > limit:
            raise TransientSourceError(f"{self._where}: the server sent at least {self.bytes_read + len(chunk)} "
                                       f"bytes, more than the {limit} of {what}", code="length_mismatch")
        self._pending = memoryview(chunk)

    def _at_end(self) -> None:
        """The current answer's body ended cleanly at byte n: finished, cut short, or not provable."""
        n, where = self.bytes_read, self._where
        cut = TransientSourceError(f"{where}: the connection closed after byte {n} of a body without "
                                   "Content-Length", code="connection")
        if self._end is not None and n != self._end:
            if self._framing == "close":
                return self._continue(cut)
            raise TransientSourceError(f"{where}: the body ended after byte {n} but its Content-Range ends at "
                                       f"{self._end}", code="length_mismatch")
        if self._length is not None:  # == n: the answer's own framing or Content-Range says so
            return self._settle(True, f"{n} bytes, as {self._length_how} said")
        if self._expected is not None:
            if n == self._expected:
                return self._settle(True, f"{n} bytes, {REPORTED}")
            if n < self._expected and self._end is None and self._framing == "close":
                return self._continue(cut)
            raise TransientSourceError(f"{where}: the body ended after {n} bytes but {REPORTED} is "
                                       f"{self._expected}", code="length_mismatch")
        if self._framing == "chunked" and not self._ranged:
            return self._settle(True, f"{n} bytes, ended by the chunked body's last chunk")
        self._continue(None)  # nothing says where the file ends: ask the server

    def _settle(self, proven: bool, note: str) -> None:
        self.size_proven, self.size_note, self._eof = proven, note, True
        if not proven:
            log.warning("%s: %d bytes read; the length is not proven: %s", self._where, self.bytes_read, note)

    def _continue(self, error: SourceError | None) -> None:
        """Ask the ORIGINAL URL (a redirect's signed target may have expired) for bytes n- with If-Range.

        ``error`` is why the body stopped early (a transport fault, a cut-short body): resumes are
        counted and retried up to ``max_resumes``. None means a probe at the end of a body whose
        length nothing proves: a 416 ``bytes */<n>`` proves it, a 206 means the body was cut short
        (a resume), and anything else settles as unproven instead of raising."""
        self._response.close()
        probe, n = error is None, self.bytes_read
        validator = self._validators.if_range
        if validator is None and not probe:
            raise SourceChanged(f"{error} after {n} bytes and {self._no_validator()} to resume against")
        # A probe needs no validator: a 416 "bytes */n" proves that the body just read was a whole
        # version of the file (even if the file changed meanwhile, what we hold is one complete
        # version); a 206 means it was cut short, and without a validator that restarts from byte 0.
        headers = {"Range": f"bytes={n}-", **({"If-Range": validator} if validator is not None else {})}
        while True:
            if not probe:
                self._count_resume(error)
                time.sleep(Backoff(self._policy.resume_backoff, RESUME_BACKOFF_CAP, jitter=False).seconds(self.resumes))
                log.info("resuming %s at byte %d (%s)", self._where, n, error.code if error else "-")
            try:
                response, final = guarded_get(self._guard, self._original, headers)
            except TransientSourceError as retry_error:
                if probe:
                    return self._settle(False, f"asking for the bytes from {n} on failed ({retry_error.code})")
                error = retry_error
                continue
            try:
                retry = self._answer(response, final, probe)
            except BaseException:
                response.close()
                raise
            if retry is None:
                return
            response.close()
            if probe:
                return self._settle(False, f"a Range from byte {n} was answered HTTP {response.status_code}")
            error = retry

    def _no_validator(self) -> str:
        return "the server sent no strong ETag or Last-Modified" + (
            " (a weak ETag cannot promise identical bytes)" if self._validators.etag else "")

    def _count_resume(self, error: SourceError | None) -> None:
        if self.resumes >= self._policy.max_resumes:
            code = "resume_exhausted" if self._policy.max_resumes else (error.code if error else "connection")
            raise TransientSourceError(f"{error or self._where + ': the body was cut short'} after "
                                       f"{self.bytes_read} bytes; {self.resumes} resumes used", code=code)
        self.resumes += 1

    def _answer(self, response: httpx.Response, final: httpx.URL, probe: bool) -> SourceError | None:
        """Take the answer to a Range from byte n: read on from it, or settle the length (None), or
        return an error worth another resume (a probe: any error, which settles as unproven), or raise."""
        status, n, where = response.status_code, self.bytes_read, ssrf.redact(final)
        if status == 206:
            end, total = partial_span(response, where, n, *self._known())
            change = self._validators.change(Validators.of(response))
            if change:
                raise SourceChanged(f"{where}: resuming at byte {n}: {change}")
            if self._validators.if_range is None:
                raise SourceChanged(f"{where}: the body was cut short at byte {n} and {self._no_validator()} to "
                                    "resume against")
            if probe:
                self._count_resume(None)  # the probe found more bytes: the body was cut short
            if total is not None and self._length is None:
                self._length, self._length_how = total, "Content-Range"
            self._final, self.final_url = final, str(final)
            self._attach(response, end)
            return None
        if status == 416:
            total, change = unsatisfied_total(response), self._validators.change(Validators.of(response),
                                                                                 missing_ok=True)
            known, what = self._known()
            found = f"416 with Content-Range {response.headers.get('content-range')!r}"
            if change or (probe and total != n):
                if probe:
                    response.close()
                    self._settle(False, f"a Range from byte {n} was answered {found}" + (
                        f"; {change}" if change else ""))
                    return None
                raise SourceChanged(f"{where}: resuming at byte {n}: {change}")
            if total != n or (known is not None and known != n):
                raise TransientSourceError(f"{where}: a Range from byte {n} was answered {found}" + (
                    f" but {what} is {known}" if known is not None else ""), code="length_mismatch")
            response.close()
            self._settle(True, f"{n} bytes: a Range from byte {n} was answered 416 (bytes */{n})")
            return None
        if status == 200:
            if probe:
                response.close()
                self._settle(False, f"a Range from byte {n} was answered with the whole file (200)")
                return None
            raise SourceChanged(f"{where}: resume at byte {n} answered with the whole file (Range ignored or "
                                "the file changed)")
        error = status_error(status, final, self._original, announced_at=self._announced_at,
                             grace=self._policy.not_found_grace)
        if probe or error.retryable:
            return error
        raise error
