"""Where a copy reads a file from: VideoSDK's CDN (HTTP, behind the SSRF guard and the source policy)
or the customer's own bucket (``[videosdk] storage``, through the provider interface's reader).

Both hand out a ``Download``: a binary stream with the file's ``size`` (when known before reading),
the served ``content_type``, and, once read to the end, ``size_proven``/``size_note``. Locations are
URL-shaped for both, so a playlist's relative URIs resolve the same way: a full URL for the CDN, the
percent-encoded key as an absolute path (``/folder/index.m3u8``) for the bucket.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import quote, unquote, urlsplit

from archiver.copy.source.opener import (
    PermanentSourceError,
    SourceChanged,
    SourceError,
    SourcePolicy,
    TransientSourceError,
    new_client,
    open_source,
)
from archiver.copy.source.status import MEDIA, duration
from archiver.domain.formats import Format
from archiver.ledger.store import JobRecord
from archiver.runtime import Runtime
from providers import AccessDenied, AuthenticationError, ObjectInfo, ObjectNotFound, StorageError, StorageProvider


class Download(Protocol):
    size: int | None
    content_type: str | None
    size_proven: bool
    size_note: str | None
    expected_sha256: str | None  # a digest the origin vouches for, to compare with what was streamed

    def readinto(self, buffer: bytearray | memoryview) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None, /) -> None: ...


class Origin(Protocol):
    root: str  # the location of the job's own file

    def open(self, location: str, *, expected_size: int | None = None, declared: Format = MEDIA) -> Download: ...
    def close(self) -> None: ...


class HttpOrigin:
    """Files on VideoSDK's CDN; one connection pool for every piece of a recording."""

    def __init__(self, url: str, policy: SourcePolicy, announced_at: datetime | None) -> None:
        self.root, self.policy, self.announced_at = url, policy, announced_at
        self._client = new_client()

    def open(self, location: str, *, expected_size: int | None = None, declared: Format = MEDIA) -> Download:
        return open_source(location, self.policy, expected_size=expected_size,  # type: ignore[return-value]
                           announced_at=self.announced_at, client=self._client, declared=declared)

    def close(self) -> None:
        self._client.close()


class StorageOrigin:
    """Objects VideoSDK wrote into the customer's bucket; the key is the file's path as VideoSDK wrote
    it, relative to the prefix of ``[videosdk] storage``."""

    def __init__(self, provider: StorageProvider, key: str, announced_at: datetime | None, grace: float) -> None:
        self.provider, self.announced_at, self.grace = provider, announced_at, grace
        self.root = "/" + quote(key.lstrip("/"))

    def open(self, location: str, *, expected_size: int | None = None, declared: Format = MEDIA) -> Download:
        key = unquote(urlsplit(location).path).lstrip("/")
        return StorageDownload(self, key, expected_size)

    def close(self) -> None:
        pass  # the provider is the runtime's, shared by every job of the process

    def error(self, exc: StorageError, key: str) -> SourceError:
        """A provider error on the SOURCE side, as a SourceError: its codes (source_*) and messages then
        say the download failed, not the destination."""
        where = f"the customer's storage (videosdk.storage) at {self.provider.describe(key)}"
        if isinstance(exc, ObjectNotFound):
            age = None if self.announced_at is None else (datetime.now(UTC) - _aware(self.announced_at)).total_seconds()
            if age is not None and age < self.grace:
                return TransientSourceError(f"{where}: no such object {duration(age)} after the webhook, within "
                                            f"the {duration(self.grace)} grace window; will be retried",
                                            code="not_found_yet")
            return PermanentSourceError(f"{where}: no such object; VideoSDK's filePath names it relative to the "
                                        "bucket VideoSDK writes to: check that [videosdk] storage names that bucket "
                                        "(and no extra prefix), then `archiver retry --failed`", code="not_found")
        if isinstance(exc, AccessDenied | AuthenticationError):
            return PermanentSourceError(f"{where}: refused ({exc.message}); give [videosdk] storage credentials that "
                                        "may read it, then `archiver retry --failed`", code="storage_denied")
        error_type = TransientSourceError if exc.retryable else PermanentSourceError
        return error_type(f"{where}: {exc.message}", code="storage")


class StorageDownload(io.RawIOBase):
    """One object of the customer's bucket. Its length is proven by the provider's ``stat`` size; its
    version is pinned by the ETag (or generation) ``stat`` gave: a different size read, or another
    version at the end, raises SourceChanged and the copy starts again from byte 0."""

    def __init__(self, origin: StorageOrigin, key: str, expected_size: int | None) -> None:
        super().__init__()
        self._origin, self._key = origin, key
        self._info = self._call(origin.provider.stat, key)
        if expected_size is not None and self._info.size != expected_size:
            raise TransientSourceError(f"{origin.provider.describe(key)}: the object is {self._info.size} bytes but "
                                       f"the size VideoSDK reported is {expected_size}", code="length_mismatch")
        self.size: int | None = self._info.size
        self.content_type = self._info.content_type
        self.expected_sha256 = self._info.checksums.get("sha256")  # ours, when we wrote it; S3's own
        self.size_proven = False
        self.size_note: str | None = None
        self.bytes_read = 0
        self._reader = self._call(origin.provider.open_reader, key)

    def _call(self, action, *args):  # type: ignore[no-untyped-def]
        try:
            return action(*args)
        except StorageError as exc:
            raise self._origin.error(exc, self._key) from exc

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._call(self._reader.readinto, buffer)
        self.bytes_read += n
        where = self._origin.provider.describe(self._key)
        if self.bytes_read > self._info.size or (n == 0 and self.bytes_read != self._info.size):
            raise SourceChanged(f"{where}: read {self.bytes_read} bytes of an object whose stat said "
                                f"{self._info.size}: it was replaced while being read")
        if n == 0 and not self.size_proven:
            now: ObjectInfo = self._call(self._origin.provider.stat, self._key)
            if _version(now) != _version(self._info):
                raise SourceChanged(f"{where}: the object changed while being read (ETag {self._info.etag} -> "
                                    f"{now.etag})")
            self.size_proven = True
            self.size_note = f"{self.bytes_read} bytes, the size the customer's storage reported"
        return n  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self.closed and hasattr(self, "_reader"):
            self._reader.close()
        super().close()


def _version(info: ObjectInfo) -> tuple[object, ...]:
    return info.etag, info.size, info.last_modified


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class NoSource(Exception):
    """The job's file has no source this process can read (in the customer's storage, none configured)."""


def origin_for(runtime: Runtime, job: JobRecord) -> Origin:
    """The origin of a job's file: the customer's bucket for a file VideoSDK wrote there (fileUrl null or
    on a storage host), else the CDN URL. Raises NoSource when that bucket is not configured."""
    if job.storage == "customer":
        storage = runtime.source_storage()
        if storage is None:
            raise NoSource("the file is in the customer's storage (VideoSDK wrote it to your own bucket) and "
                           "[videosdk] storage is not set; set it (s3://, az:// or gs:// with its options), then "
                           "`archiver retry --failed`")
        return StorageOrigin(storage, job.file_path, job.received_at, runtime.source_policy.not_found_grace)
    if job.source_url is None:
        raise NoSource("the file has no URL to download it from")
    return HttpOrigin(job.source_url, runtime.source_policy, job.received_at)
