"""One object into a destination, create-only and verified: the step every copy shares (a recording
file, each piece of an HLS recording, and its playlist, written last).

stream the source into a create-only writer (hashing) -> record the intent (size, sha256) -> commit
(the provider verifies) ; an object already at the key is adopted when it has the same size and
sha256, and is a conflict otherwise.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from archiver.copy.errors import Conflict, FileTooLarge, LeaseLost
from archiver.copy.lease import LeaseKeeper
from archiver.copy.source.opener import SourceChanged
from archiver.copy.source.ranges import RangedCopy, range_count
from archiver.copy.sources import Download
from archiver.ledger.store import JobRecord
from archiver.runtime import Runtime
from archiver.settings.config import Destination
from providers import AccessDenied, ObjectExists, ObjectInfo, ObjectNotFound, StorageProvider, digest_stream
from providers.pool import pool_for

log = logging.getLogger("archiver.copy")

CHUNK = 1 << 20
SizeProof = tuple[bool | None, str | None]  # (Download.size_proven, .size_note); (None, None): nothing streamed
Progress = Callable[[JobRecord, int, int | None], None]  # job, bytes so far, total when known


@dataclass
class CopyTask:
    """What every step of one job's copy needs."""

    runtime: Runtime
    job: JobRecord
    dest: Destination
    provider: StorageProvider
    lease: LeaseKeeper
    progress: Progress | None = None
    uploaded_bytes: int = 0  # bytes committed by this attempt, over every object it wrote
    many: bool = False  # several objects (HLS): progress reports no total
    # No attempt of this job ran before (ledger Claim.first): nothing of it can be at its key yet, so
    # there is no dead attempt's object or unfinished upload to look for before writing.
    first: bool = False
    # This attempt may have started an upload session (multipart) that could outlive it unfinished.
    sessions: bool = False

    @property
    def key(self) -> str:
        assert self.job.object_key is not None
        return self.job.object_key

    @property
    def metadata(self) -> dict[str, str]:
        job = self.job
        # Underscored names: Azure accepts only identifier-like metadata names.
        values = {"meeting_id": job.meeting_id, "session_id": job.session_id,
                  "participant_id": job.participant_id or "", "kind": job.kind or "",
                  "source_path": job.file_path, "webhook_type": job.webhook_type}
        # Object metadata must be ASCII on S3; ids from the webhook may not be.
        return {k: quote(v, safe="/:@-_.~ ") for k, v in values.items() if v}


@dataclass(frozen=True)
class Copied:
    """What a job's copy produced: its own object (for HLS, the playlist), whether this attempt wrote
    it, how its length was proven, and what the manifest should add."""

    info: ObjectInfo
    uploaded: bool
    proof: SizeProof
    manifest: dict[str, Any] = field(default_factory=dict)


def existing(provider: StorageProvider, key: str) -> ObjectInfo | None:
    try:
        return provider.stat(key)
    except ObjectNotFound:
        return None
    except AccessDenied:
        # Write-only credentials cannot look first. The create-only commit still refuses to replace
        # anything; an object found that way cannot be compared, so it ends as a conflict.
        log.info("cannot look at %s before writing (read denied); relying on the create-only commit",
                 provider.describe(key))
        return None


def refuse_if_too_large(runtime: Runtime, size: int | None, what: str) -> None:
    """FileTooLarge when ``size`` (bytes) is over [source] max_file_bytes."""
    cap = runtime.settings.source.max_file_bytes
    if size is not None and size > cap:
        raise FileTooLarge(f"{what} {size} bytes, more than [source] max_file_bytes ({cap}); nothing was copied "
                           "(raise max_file_bytes if such files are expected, then `archiver retry JOB_ID`)")


def put(task: CopyTask, key: str, download: Download, *, content_type: str, head: bytes = b"",
        intent: Callable[[int, str], bool] | None = None) -> tuple[ObjectInfo, bool]:
    """Stream ``head`` then the rest of ``download`` into ``key`` and commit it; (info, uploaded).

    ``intent(size, sha256)`` runs before the commit and returns False when the lease is gone. An object
    the create-only commit finds at the key is adopted when it is ours (same size and sha256: a retried
    PUT whose first answer was lost, or a dead attempt's commit), else Conflict."""
    refuse_if_too_large(task.runtime, download.size, f"{key}: the source declares")
    cap = task.runtime.settings.source.max_file_bytes
    with task.provider.open_writer(key, size_hint=download.size, metadata=task.metadata, content_type=content_type,
                                   if_absent=not task.dest.overwrite) as writer:
        def after(done: int) -> None:
            task.lease.check()
            task.lease.done = task.uploaded_bytes + done
            if task.progress is not None:
                task.progress(task.job, task.lease.done, None if task.many else download.size)

        request = writer.request
        ranges = range_count(download, download.size, request.part_size,
                             task.runtime.settings.source.parallel_ranges, request.single_request_max)
        # The writer sends a known length within single_request_max as one create-only request, which
        # leaves nothing unfinished behind (providers/writer.py); anything else may open a session.
        task.sessions |= bool(ranges) or download.size is None or download.size > request.single_request_max
        if ranges:  # a large file from a server that proves ranges: several connections at once
            pool = pool_for(request.part_size)
            RangedCopy(download, request.part_size, ranges, pool.take, pool.give).run(  # type: ignore[arg-type]
                writer, head, after)
        else:
            if head:
                writer.write(head)
            # The source reads straight into the writer's part buffer: no copy between them.
            while writer.fill(download.readinto):
                if writer.bytes_written > cap:  # a source without a length must not fill the destination
                    refuse_if_too_large(task.runtime, writer.bytes_written, f"{key}: the source sent at least")
                after(writer.bytes_written)
        size, sha256 = writer.bytes_written, writer.sha256_hex
        task.sessions |= download.size is not None and size > download.size  # more than declared: multipart
        if download.expected_sha256 is not None and download.expected_sha256 != sha256:
            raise SourceChanged(f"{key}: read sha256 {sha256}, the source's own digest is {download.expected_sha256}")
        if intent is not None and not intent(size, sha256):
            raise LeaseLost(f"job {task.job.job_id}: lease lost before commit")
        try:
            info = writer.commit()
            task.uploaded_bytes += info.size
            return info, True
        except ObjectExists:
            pass  # the writer aborts on the way out; decide below
    found = existing(task.provider, key)
    if found is None:
        raise ObjectExists(f"already exists: {task.provider.describe(key)} (and gone again)", code="exists")
    return adopt_or_conflict(task.provider, key, found, size, sha256), False


def adopt_or_conflict(provider: StorageProvider, key: str, found: ObjectInfo, size: int, sha256: str) -> ObjectInfo:
    """``found`` is at ``key``: ours if it has ``size`` bytes and ``sha256`` (hashed back when the store
    keeps no sha256 for it, e.g. an S3 multipart object), else Conflict."""
    if found.size == size:
        found_sha = found.checksums.get("sha256") or hash_stream(provider.open_reader(key))[1]
        if found_sha == sha256:
            return ObjectInfo(key=found.key, size=found.size, etag=found.etag,
                              checksums={**found.checksums, "sha256": sha256})
    raise Conflict(f"a different object is already at {provider.describe(found.key)} "
                   f"({found.size} bytes); set overwrite = true to replace it")


def hash_stream(stream: Any) -> tuple[int, str]:
    """(size, sha256 hex) of a readable stream, which is closed."""
    size, digest = digest_stream(stream)
    return size, digest.hex()


class BytesDownload(io.BytesIO):
    """A file already read into memory (a playlist, which had to be parsed) as a Download."""

    expected_sha256: str | None = None

    def __init__(self, data: bytes, content_type: str | None, proof: SizeProof) -> None:
        super().__init__(data)
        self.size: int | None = len(data)
        self.content_type = content_type
        self.size_proven, self.size_note = bool(proof[0]), proof[1]
