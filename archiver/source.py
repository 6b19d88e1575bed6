"""Stream one recording file from the URL a (untrusted) webhook names.

``open_source`` returns a binary file-like object that the copy job hands to a storage SDK. It
never buffers the whole body, refuses anything that is not plausibly the recording (error pages,
JSON), survives dropped connections by resuming with ``Range``/``If-Range`` and refuses to splice
bytes from two different versions of the file. Every request, including each redirect hop and
each resume, passes the SSRF guard in ``archiver.ssrf`` and is sent to the address that was checked.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from httpcore._sync.http11 import HTTP11Connection

from archiver import ssrf

log = logging.getLogger(__name__)

# httpcore reads a response 64 KiB per socket read, and each read is a trip through httpcore and h11
# in Python. With 256 KiB reads, streaming 1 GiB over loopback http and hashing it took 1.2 s of CPU
# instead of 1.7 s (the stand-in CDN of bench.copy_throughput, 2026-11-24): CPU that otherwise comes
# out of the upload's share on a busy machine.
# A class attribute, so every client in the process gets it; it only sizes a read buffer.
HTTP11Connection.READ_NUM_BYTES = max(HTTP11Connection.READ_NUM_BYTES, 256 << 10)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_EVERYWHERE = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class SourcePolicy:
    allow_hosts: tuple[str, ...] = ("cdn.videosdk.live", "*.videosdk.live")  # exact, or "*.suffix"
    allow_private_addresses: bool = False
    allow_http: bool = False
    max_redirects: int = 3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_resumes: int = 5  # resumptions after dropped connections within one download
    # CIDRs exempt from the non-public address refusal (e.g. ("127.0.0.1/32",) for a local test CDN)
    allowed_networks: tuple[str, ...] = ()
    resume_backoff: float = 0.5  # seconds before the first resume, doubling, capped at 5 s


class SourceError(Exception):
    """``code`` is short and stable (for metrics and the ledger); the message names the URL (never its query).

    Codes: ssrf, bad_url, redirects, not_found, gone, forbidden, http_status, content_type,
    content_encoding (permanent); timeout, connection, tls, dns, http_status (429/5xx),
    length_mismatch, bad_range, resume_exhausted, source_changed (transient).
    """

    retryable = False
    default_code = "source"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code


class PermanentSourceError(SourceError):
    retryable = False


class TransientSourceError(SourceError):
    retryable = True


class SourceChanged(TransientSourceError):
    """The bytes already read cannot be continued: restart the destination upload from byte 0."""

    default_code = "source_changed"


def check_url(url: str | httpx.URL, policy: SourcePolicy) -> None:
    """Scheme, credentials and host policy only (no DNS); raises PermanentSourceError "ssrf" (or "bad_url")."""
    _checked_url(url, policy)


def _checked_url(url: str | httpx.URL, policy: SourcePolicy) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise PermanentSourceError(f"{ssrf.redact(url)}: not a valid URL ({exc})", code="bad_url") from None
    try:
        ssrf.check_target(parsed, policy.allow_hosts, policy.allow_http)
    except ssrf.Refused as exc:
        raise PermanentSourceError(f"{ssrf.redact(parsed)}: refused: {exc}", code="ssrf") from None
    return parsed


def _transport_error(where: str, exc: Exception) -> TransientSourceError:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        return TransientSourceError(f"{where}: TLS failed: {cause}", code="tls")
    if isinstance(exc, httpx.TimeoutException):
        return TransientSourceError(f"{where}: timed out ({type(exc).__name__})", code="timeout")
    return TransientSourceError(f"{where}: connection failed: {str(exc) or type(exc).__name__}", code="connection")


def _raise_for_status(response: httpx.Response, where: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status in (404, 410):
        raise PermanentSourceError(f"{where}: HTTP {status}", code="not_found" if status == 404 else "gone")
    if status in (401, 403):
        raise PermanentSourceError(f"{where}: HTTP {status}", code="forbidden")
    if status == 429 or status >= 500:
        raise TransientSourceError(f"{where}: HTTP {status}", code="http_status")
    raise PermanentSourceError(f"{where}: unexpected HTTP {status}", code="http_status")


def _check_body(response: httpx.Response, where: str) -> None:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    # A broken or expired link answers 200 with an error page; archiving that as the recording
    # would be worse than failing.
    if media in ("text/html", "application/xhtml+xml", "application/json") or media.endswith("+json"):
        raise PermanentSourceError(f"{where}: Content-Type {media} is not a recording", code="content_type")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # we ask for identity; an encoded body would be archived encoded and its length/ranges
        # would refer to the encoded form
        raise PermanentSourceError(f"{where}: Content-Encoding {encoding} was not asked for",
                                   code="content_encoding")


def _guarded_get(guard: ssrf.GuardedClient, url: httpx.URL,
                 headers: Mapping[str, str]) -> tuple[httpx.Response, httpx.URL]:
    """The guarded GET (archiver.ssrf) with its failures translated into SourceErrors."""
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
        raise _transport_error(str(exc), exc.__cause__) from None


class SourceStream(io.RawIOBase):
    """Binary, read-only, non-seekable stream over the body; resumes transparently."""

    def __init__(self, url: str, policy: SourcePolicy, guard: ssrf.GuardedClient, response: httpx.Response,
                 final: httpx.URL, owns_client: bool) -> None:
        super().__init__()
        self.url = url
        self.final_url = str(final)
        self.size: int | None = int(response.headers["content-length"]) if "content-length" in response.headers \
            else None
        self.content_type: str | None = response.headers.get("content-type")
        self.etag: str | None = response.headers.get("etag")
        self.last_modified: str | None = response.headers.get("last-modified")
        self.bytes_read = 0
        self.resumes = 0
        self._final = final
        self._policy, self._guard = policy, guard
        self._owns_client = owns_client
        self._pending = memoryview(b"")
        self._eof = False
        self._failed: SourceError | None = None
        self._attach(response)

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

    def _attach(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.iter_raw()  # raw: bytes exactly as sent, no decoding

    @property
    def _where(self) -> str:
        return ssrf.redact(self._final)

    def _fill(self) -> None:
        try:
            chunk = next(self._chunks, None)
        except httpx.TransportError as exc:  # reset, timeout, "peer closed" mid-body
            self._resume(exc)
            return
        if chunk is None:
            self._response.close()
            if self.size is not None and self.bytes_read != self.size:
                raise TransientSourceError(f"{self._where}: body ended after {self.bytes_read} bytes but "
                                           f"Content-Length is {self.size}", code="length_mismatch")
            self._eof = True
        elif self.size is not None and self.bytes_read + len(chunk) > self.size:
            raise TransientSourceError(f"{self._where}: server sent more than the {self.size} bytes of its "
                                       "Content-Length", code="length_mismatch")
        else:
            self._pending = memoryview(chunk)

    def _validator(self) -> str | None:
        # If-Range needs a strong validator; a weak ETag cannot promise byte-identical ranges
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def _resume(self, exc: Exception) -> None:
        self._response.close()
        policy = self._policy
        error = _transport_error(self._where, exc)
        while True:
            if self.resumes >= policy.max_resumes:
                code = "resume_exhausted" if policy.max_resumes else error.code
                raise TransientSourceError(f"{error} after {self.bytes_read} bytes; {self.resumes} resumes used",
                                           code=code) from exc
            validator = self._validator()
            if validator is None:
                # resuming blind could splice two different files together
                raise SourceChanged(f"{error} after {self.bytes_read} bytes and the "
                                    "server sent no ETag/Last-Modified to resume against") from exc
            self.resumes += 1
            time.sleep(min(policy.resume_backoff * 2 ** (self.resumes - 1), 5.0))
            log.info("resuming %s at byte %d (%s)", self._where, self.bytes_read, error.code)
            headers = {"Range": f"bytes={self.bytes_read}-", "If-Range": validator}
            try:
                response, final = _guarded_get(self._guard, self._final, headers)
            except TransientSourceError as retry_error:
                error = retry_error
                continue
            try:
                self._check_partial(response, ssrf.redact(final))
            except BaseException:
                response.close()
                raise
            self._final, self.final_url = final, str(final)
            self._attach(response)
            return

    def _check_partial(self, response: httpx.Response, where: str) -> None:
        status, n = response.status_code, self.bytes_read
        if status == 200:
            raise SourceChanged(f"{where}: resume at byte {n} answered with the whole "
                                "file (Range ignored or the file changed)")
        if status == 416:
            raise TransientSourceError(f"{where}: byte {n} is past the end although Content-Length was "
                                       f"{self.size} ({response.headers.get('content-range')})",
                                       code="length_mismatch")
        if status != 206:
            _raise_for_status(response, where)
            raise PermanentSourceError(f"{where}: unexpected HTTP {status} to a resume", code="http_status")
        etag = response.headers.get("etag")
        if self.etag and etag and etag != self.etag:
            raise SourceChanged(f"{where}: ETag changed from {self.etag} to {etag}")
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if match is None:
            raise TransientSourceError(f"{where}: 206 without a usable Content-Range", code="bad_range")
        start, end, total = int(match[1]), int(match[2]), match[3]
        if total != "*" and self.size is not None and int(total) != self.size:
            raise TransientSourceError(f"{where}: the file is now {total} bytes but Content-Length was "
                                       f"{self.size}", code="length_mismatch")
        if start != n or (self.size is not None and end != self.size - 1):
            raise TransientSourceError(f"{where}: asked for bytes {n}- and got {start}-{end}", code="bad_range")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying context per process: building one (loading the CA bundle) costs ~20 ms, which
    httpx.Client() otherwise pays for every copy, even over plain http. SSLContext is thread-safe."""
    return httpx.create_ssl_context()


def open_source(url: str, policy: SourcePolicy, *, client: httpx.Client | None = None,
                resolver: ssrf.Resolver | None = None) -> SourceStream:
    """Open ``url`` for streaming; ``resolver`` (host, port) -> IPs defaults to getaddrinfo."""
    parsed = _checked_url(url, policy)
    owns_client = client is None
    if client is None:
        # trust_env=False: a proxy from the environment would connect on our behalf and make the
        # address pinning meaningless
        client = httpx.Client(trust_env=False, follow_redirects=False, verify=_tls_context())
    try:
        nets = _EVERYWHERE if policy.allow_private_addresses else policy.allowed_networks
        guard = ssrf.GuardedClient(
            client, allow_hosts=policy.allow_hosts, allow_http=policy.allow_http,
            networks=ssrf.parse_networks(nets), resolver=resolver or ssrf.system_resolver,
            max_redirects=policy.max_redirects,
            timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout))
        response, final = _guarded_get(guard, parsed, {})
        try:
            _raise_for_status(response, ssrf.redact(final))
            _check_body(response, ssrf.redact(final))
            return SourceStream(str(url), policy, guard, response, final, owns_client)
        except BaseException:
            response.close()
            raise
    except BaseException:
        if owns_client:
            client.close()
        raise
