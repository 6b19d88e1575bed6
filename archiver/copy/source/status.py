"""What an answer from the source CDN means: the error types of ``archiver.copy.source.opener`` and the
per-status, per-phase decisions (final or worth another attempt), with messages an operator can act on.

Pure: httpx only for its URL and exception types; no I/O here.

Codes are short and stable; ``archiver.retry.classify`` prefixes them with ``source_`` for the
ledger and metrics (``not_found`` -> ``source_not_found``).
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import httpx

from archiver.copy.source import ssrf
from archiver.domain.formats import FORMATS, Format, refusal

MEDIA = FORMATS["mp4"]  # what a file of no stated format is judged as: a recording

# Said in every final "the file is not there / not ours to read" message: what the operator can do.
_WHAT_TO_DO = ("check the recording in VideoSDK's dashboard (or `archiver reconcile --room ROOM`); "
               "once it is there, `archiver retry --failed`")


class SourceError(Exception):
    """``code`` is short and stable (for metrics and the ledger); the message names the URL (never its query).

    Final (PermanentSourceError): ssrf, bad_url, redirects, not_found, gone, forbidden, http_status
    (other 4xx), content_type, content_encoding.
    Worth another attempt (TransientSourceError): timeout, connection, tls, dns, http_status (429/5xx),
    not_found_yet (401/403/404/410 within the grace window after the webhook), redirect_expired
    (401/403/410 from a redirect's target), length_mismatch, bad_range, resume_exhausted, and
    changed (SourceChanged: restart from byte 0).
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

    default_code = "changed"


def transport_error(where: str, exc: Exception) -> TransientSourceError:
    """A connection-level failure (reset, timeout, TLS, a body cut short) as a transient error."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        return TransientSourceError(f"{where}: TLS failed: {cause}", code="tls")
    if isinstance(exc, httpx.TimeoutException):
        return TransientSourceError(f"{where}: timed out ({type(exc).__name__})", code="timeout")
    return TransientSourceError(f"{where}: connection failed: {str(exc) or type(exc).__name__}", code="connection")


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h``, ``3 d``: rounded down, for messages."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def status_error(status: int, url: httpx.URL, original: httpx.URL, *, announced_at: datetime | None,
                 grace: float, now: datetime | None = None) -> SourceError:
    """The error for a non-success ``status`` that ``url`` answered (``original`` is the webhook's URL).

    * 401/403/410 from a redirect's target (``url != original``): transient ``redirect_expired``,
      a signed link that expired; the next request starts again from ``original``.
    * 404 and 410 (and 401/403: a CDN in front of a bucket answers 403 for a key that does not exist
      yet) within ``grace`` seconds of ``announced_at`` (when the webhook came): transient
      ``not_found_yet``, files can reach the CDN after their webhook. Later, or with no
      ``announced_at``: final ``not_found``, ``gone``, ``forbidden``.
    * 429 and 5xx: transient ``http_status``. Anything else: final ``http_status``.
    """
    where, host = ssrf.redact(url), ssrf.host_name(url)
    if url != original and status in (401, 403, 410):
        return TransientSourceError(
            f"{where}: HTTP {status} from host {host}, the target of a redirect from host "
            f"{ssrf.host_name(original)}: a signed link that expired, probably; the next request starts again "
            "from the original URL", code="redirect_expired")
    if status in (401, 403, 404, 410):
        now = now or datetime.now(UTC)
        age = None if announced_at is None else (now - _aware(announced_at)).total_seconds()
        if age is not None and age < grace:
            return TransientSourceError(
                f"{where}: HTTP {status} from host {host} {duration(age)} after the webhook, within the "
                f"{duration(grace)} grace window for files that reach the CDN after their webhook; "
                "will be retried", code="not_found_yet")
        when = "(the webhook's time is not known)" if age is None else f"{duration(age)} after the webhook"
        code, meaning = {404: ("not_found", "the recording is not there"),
                         410: ("gone", "the recording was removed from the CDN")}.get(
            status, ("forbidden", "the CDN refuses to serve it"))
        return PermanentSourceError(f"{where}: HTTP {status} from host {host} {when}: {meaning}; {_WHAT_TO_DO}",
                                    code=code)
    if status == 429 or status >= 500:
        return TransientSourceError(f"{where}: HTTP {status} from host {host} (busy or failing); will be retried",
                                    code="http_status")
    return PermanentSourceError(f"{where}: unexpected HTTP {status} from host {host}: not a file download; "
                                "check the webhook's fileUrl", code="http_status")


def check_body(response: httpx.Response, where: str, declared: Format = MEDIA) -> None:
    """Refuse a 200 that is plausibly not the file: an error page or document (judged by the file's
    ``declared`` format, see ``archiver.domain.formats.refusal``), an encoded body."""
    # A broken or expired link answers 200 with an error page; archiving that as the recording
    # would be worse than failing.
    refused = refusal(declared, response.headers.get("content-type"))
    if refused is not None:
        raise PermanentSourceError(f"{where}: {refused}", code="content_type")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # we ask for identity; an encoded body would be archived encoded and its length/ranges
        # would refer to the encoded form
        raise PermanentSourceError(f"{where}: Content-Encoding {encoding} was not asked for",
                                   code="content_encoding")


def _aware(moment: datetime) -> datetime:
    # the ledger on SQLite hands back naive datetimes; they were stored as UTC
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
