"""Stream one recording file from the URL a (untrusted) webhook names.

``open_source`` returns a binary file-like object that the copy job hands to a storage SDK. It
never buffers the whole body, refuses anything that is not plausibly the recording (error pages,
JSON), survives dropped connections by resuming with ``Range``/``If-Range`` from the original URL,
refuses to splice bytes from two different versions of the file, and says whether the length it
delivered is proven to be the whole file. Every request, including each redirect hop and each
resume, passes the SSRF guard in ``archiver.copy.source.ssrf`` and is sent to the address that was checked.
What each status means (final or worth another attempt) is decided in ``archiver.copy.source.status``;
whether a ranged answer may be spliced on, in ``archiver.copy.source.resume``.
"""

from __future__ import annotations

import functools
import ssl
from datetime import datetime

import httpx
from httpcore._sync.http11 import HTTP11Connection

from archiver.copy.source import ssrf
from archiver.copy.source.status import (
    MEDIA,
    PermanentSourceError,
    SourceChanged,
    SourceError,
    TransientSourceError,
    check_body,
    status_error,
)
from archiver.copy.source.stream import REPORTED, SourceStream, framing, guarded_get
from archiver.domain.formats import Format
from archiver.domain.source_policy import SourcePolicy

__all__ = ["PermanentSourceError", "SourceChanged", "SourceError", "SourcePolicy", "SourceStream",
           "TransientSourceError", "check_url", "new_client", "open_source"]

# httpcore reads a response 64 KiB per socket read, and each read is a trip through httpcore and h11
# in Python. With 256 KiB reads, streaming 1 GiB over loopback http and hashing it took 1.2 s of CPU
# instead of 1.7 s (the stand-in CDN of bench.copy_throughput, 2026-11-24): CPU that otherwise comes
# out of the upload's share on a busy machine.
# A class attribute, so every client in the process gets it; it only sizes a read buffer.
HTTP11Connection.READ_NUM_BYTES = max(HTTP11Connection.READ_NUM_BYTES, 256 << 10)

_EVERYWHERE = ("0.0.0.0/0", "::/0")


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


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying context per process: building one (loading the CA bundle) costs ~20 ms, which
    httpx.Client() otherwise pays for every copy, even over plain http. SSLContext is thread-safe."""
    return httpx.create_ssl_context()


def new_client() -> httpx.Client:
    """A client for ``open_source(client=...)``: several downloads from one host (an HLS recording's
    pieces) then share connections. The caller closes it."""
    # trust_env=False: a proxy from the environment would connect on our behalf and make the
    # address pinning meaningless
    return httpx.Client(trust_env=False, follow_redirects=False, verify=_tls_context())


def open_source(url: str, policy: SourcePolicy, *, expected_size: int | None = None,
                announced_at: datetime | None = None, client: httpx.Client | None = None,
                resolver: ssrf.Resolver | None = None, declared: Format = MEDIA) -> SourceStream:
    """Open ``url`` for streaming.

    ``expected_size``: the file's length in bytes if known elsewhere (VideoSDK's REST ``file.size``);
    a served length that differs is a ``length_mismatch``. ``announced_at``: when the webhook naming
    the file came (timezone-aware, or naive UTC); within ``policy.not_found_grace`` seconds of it a
    401/403/404/410 is transient (``not_found_yet``). ``resolver`` (host, port) -> IPs defaults to
    getaddrinfo. ``declared``: the file's format by its name (``archiver.domain.formats.declared_format``),
    which decides what a served Content-Type may be (a JSON transcript is JSON; an .mp4 never is).
    Raises SourceError (see ``archiver.copy.source.status``)."""
    parsed = _checked_url(url, policy)
    owns_client = client is None
    if client is None:
        client = new_client()
    try:
        nets = _EVERYWHERE if policy.allow_private_addresses else policy.allowed_networks
        guard = ssrf.GuardedClient(
            client, allow_hosts=policy.allow_hosts, allow_http=policy.allow_http,
            networks=ssrf.parse_networks(nets), resolver=resolver or ssrf.system_resolver,
            max_redirects=policy.max_redirects,
            timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout))
        response, final = guarded_get(guard, parsed, {})
        try:
            _check_first(response, final, parsed, policy, expected_size, announced_at, declared)
            return SourceStream(parsed, policy, guard, response, final, owns_client,
                                expected_size=expected_size, announced_at=announced_at)
        except BaseException:
            response.close()
            raise
    except BaseException:
        if owns_client:
            client.close()
        raise


def _check_first(response: httpx.Response, final: httpx.URL, original: httpx.URL, policy: SourcePolicy,
                 expected_size: int | None, announced_at: datetime | None, declared: Format) -> None:
    """Raise unless the answer to the first, unranged GET is a 200 that may be the recording."""
    where, status = ssrf.redact(final), response.status_code
    if status == 206:  # a part is not the file, and we asked for no part
        raise TransientSourceError(f"{where}: HTTP 206 (Content-Range {response.headers.get('content-range')!r}) "
                                   "to a request without Range", code="bad_range")
    if status != 200:
        raise status_error(status, final, original, announced_at=announced_at, grace=policy.not_found_grace)
    check_body(response, where, declared)
    if expected_size is not None and framing(response) == "length":
        length = int(response.headers["content-length"])
        if length != expected_size:
            raise TransientSourceError(f"{where}: Content-Length is {length} but {REPORTED} is "
                                       f"{expected_size}", code="length_mismatch")
