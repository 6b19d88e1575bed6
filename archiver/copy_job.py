"""Run one copy job: recording file -> one destination, exactly once, verified.

The order of steps is what makes retries, duplicate deliveries and crashes safe:
claim the job (lease) -> look at the destination first -> stream source into a create-only writer ->
record the commit intent (size, sha256) -> commit (the provider verifies) -> manifest -> mark succeeded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import mimetypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from archiver.config import Destination
from archiver.failures import Conflict, LeaseLost, backoff_seconds, classify
from archiver.intake import render_job_key, template_failure
from archiver.ledger.records import SIZE_UNPROVEN, UNVERIFIED
from archiver.ledger.store import JobRecord, utcnow
from archiver.runtime import Runtime
from archiver.source import SourceChanged, open_source
from archiver.templates import RenderError
from providers import AccessDenied, ObjectExists, ObjectInfo, ObjectNotFound, StorageProvider

log = logging.getLogger("archiver.copy")
CHUNK = 1 << 20
WINDOWED_CODES = frozenset({"source_not_found_yet"})
MAX_SOURCE_RESTARTS = 3
MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".m4a": "audio/mp4"}


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    state: str  # succeeded | pending (will retry) | failed | skipped | busy | lost | missing
    retry_in: float | None = None
    error: str | None = None
    uploaded: bool = False  # False when an identical object was already there
    destination: str | None = None
    bytes: int | None = None
    # size_proven hook: for a streamed copy, whether the source's length was proven and how / why not
    # (SourceStream.size_proven / size_note); None when nothing was streamed (an adopted object)
    size_proven: bool | None = None
    size_note: str | None = None


class LeaseKeeper:
    """Renews the job's lease while a copy runs; flags `lost` if another worker took it over."""

    def __init__(self, runtime: Runtime, job_id: int, worker: str) -> None:
        self.runtime, self.job_id, self.worker = runtime, job_id, worker
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def _run(self) -> None:
        lease = self.runtime.lease.total_seconds()
        last_renewed = time.monotonic()
        while not self._stop.wait(lease / 3):
            try:
                renewed = self.runtime.ledger.renew(self.job_id, self.worker, self.runtime.lease)
            except Exception:  # a locked or dropped database: keep trying while the lease may still be ours
                log.warning("job %s: lease renewal failed; retrying", self.job_id, exc_info=True,
                            extra={"job_id": self.job_id})
                if time.monotonic() - last_renewed >= lease:
                    self.lost = True
                    return
                continue
            if not renewed:  # another worker took the job over
                self.lost = True
                return
            last_renewed = time.monotonic()

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(f"job {self.job_id}: lease taken over by another worker")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


Progress = Callable[[JobRecord, int, int | None], None]  # job, bytes so far, total when known
SizeProof = tuple[bool | None, str | None]  # size_proven hook: (SourceStream.size_proven, .size_note)


def run_copy_job(runtime: Runtime, job_id: int, progress: Progress | None = None) -> JobOutcome:
    worker = runtime.worker_id
    job = runtime.ledger.claim(job_id, worker, runtime.lease)
    if job is None:
        current = runtime.ledger.job(job_id)
        if current is not None and current.state == "pending":
            # The claim ran before intake's commit became visible and the read after it: claim again.
            job = runtime.ledger.claim(job_id, worker, runtime.lease)
        if job is None:
            return _not_claimed(runtime, job_id, current)
    try:
        destination = runtime.settings.destination(job.destination)
    except KeyError:
        runtime.ledger.fail(job_id, worker, code="unknown_destination", retrying=False,
                            message=f"destination {job.destination!r} is no longer configured")
        return JobOutcome(job_id, "failed", error="unknown_destination")
    if job.object_key is None:
        # Its template could not render at intake; the configuration may have been fixed since.
        try:
            key = render_job_key(job, destination)
        except RenderError as exc:
            message = template_failure(destination, exc)
            runtime.ledger.fail(job_id, worker, code="template", message=message, retrying=False)
            return JobOutcome(job_id, "failed", error=f"template: {message}", destination=job.destination)
        if not runtime.ledger.set_key(job_id, worker, key):
            return JobOutcome(job_id, "lost")
        job = dataclasses.replace(job, object_key=key)
    try:
        with LeaseKeeper(runtime, job_id, worker) as lease:
            info, uploaded, proof = _copy(runtime, job, destination, lease, progress)
            if destination.manifest:
                _write_manifest(runtime.provider(destination), job, destination, info)
    except LeaseLost:
        return JobOutcome(job_id, "lost")
    except (SystemExit, KeyboardInterrupt):
        # The worker is stopping (its stop grace ran out): the writer aborted on the way out. Give the
        # job back at once, so the redelivered message finds it pending instead of waiting for the
        # lease to run out. (It counts as an attempt, like any other interrupted one.)
        runtime.ledger.fail(job_id, worker, code="interrupted", retrying=True,
                            message="the worker was stopped during the copy; it runs again")
        raise
    except Exception as exc:  # every failure is recorded; classify decides retry vs final
        failure = classify(exc, attempt=job.attempts)
        # A file not on the CDN yet is retried for the whole grace window whatever the attempt budget:
        # the source says "not_found_yet" only inside the window, so this cannot loop forever.
        retrying = failure.retryable and (job.attempts < runtime.settings.retry.max_attempts
                                          or failure.code in WINDOWED_CODES)
        runtime.ledger.fail(job_id, worker, code=failure.code, message=failure.message, retrying=retrying)
        delay = backoff_seconds(job.attempts, base=runtime.settings.retry.base_delay,
                                cap=runtime.settings.retry.max_delay) if retrying else None
        return JobOutcome(job_id, "pending" if retrying else "failed", retry_in=delay,
                          error=f"{failure.code}: {failure.message}", destination=job.destination)
    if not runtime.ledger.succeed(job_id, worker, size=info.size, sha256=info.checksums["sha256"], etag=info.etag):
        return JobOutcome(job_id, "lost")  # our lease ran out and another worker owns the job now
    if proof[0] is False:
        # Every byte the source sent is in place, but nothing proved that it sent the whole file:
        # visible in `status` and `verify`, never verified, so retention keeps the recording until
        # reconcile learns VideoSDK's size and it agrees.
        runtime.ledger.flag_copy(job_id, SIZE_UNPROVEN, f"{info.size} bytes copied, but the source's length was "
                                 f"not proven: {proof[1]}; reconcile compares it with VideoSDK's size")
    elif info.unverified:
        # Committed and accounted for, but the destination would not let us read it back (write-only
        # credentials): `archiver verify` with read access confirms it later; until then it is not
        # verified, so retention keeps the recording.
        runtime.ledger.flag_copy(job_id, UNVERIFIED, "committed, not read back: " + "; ".join(info.unverified))
    return JobOutcome(job_id, "succeeded", uploaded=uploaded, destination=job.destination,
                      bytes=info.size if uploaded else None, size_proven=proof[0], size_note=proof[1])


def _not_claimed(runtime: Runtime, job_id: int, current: JobRecord | None) -> JobOutcome:
    """Decide from one read (a second read could see intake's commit land in between)."""
    if current is None or current.state == "pending":
        # Not visible yet (intake publishes before it commits) or visible only now: try again soon.
        return JobOutcome(job_id, "missing")
    if current.state == "running" and current.lease_expires_at is not None:
        # Leased by a worker that may be dead (RabbitMQ redelivers at once when a worker dies):
        # come back when the lease would have run out instead of dropping the message.
        wait = (current.lease_expires_at - utcnow()).total_seconds() + 1
        return JobOutcome(job_id, "busy", retry_in=max(1.0, wait))
    return JobOutcome(job_id, "skipped")  # done, failed for good, or waiting for its own retry


def _copy(runtime: Runtime, job: JobRecord, dest: Destination, lease: LeaseKeeper,
          progress: Progress | None) -> tuple[ObjectInfo, bool, SizeProof]:
    assert job.object_key is not None
    provider = runtime.provider(dest)
    # We hold the lease: any unfinished upload to this key is a dead attempt's leftover.
    provider.discard_incomplete(job.object_key)
    if not dest.overwrite:
        existing = _existing(provider, job.object_key)
        if existing is not None:
            return _adopt_or_conflict(runtime, provider, job, existing), False, (None, None)
    last: SourceChanged | None = None
    for _ in range(MAX_SOURCE_RESTARTS):
        try:
            info, proof = _stream(runtime, provider, job, dest, lease, progress)
            return info, True, proof
        except SourceChanged as exc:
            last = exc  # the writer aborted on the way out; start both sides again from byte 0
        except ObjectExists:
            # The create-only commit found an object: our own (a retried PUT whose first answer was
            # lost) or someone else's. The intent just recorded says which, so decide now.
            existing = _existing(provider, job.object_key)
            current = runtime.ledger.job(job.job_id)
            if existing is None or current is None:
                raise
            return _adopt_or_conflict(runtime, provider, current, existing), False, (None, None)
    raise SourceChanged(f"the download had to start again {MAX_SOURCE_RESTARTS} times in one attempt; the last "
                        f"time: {last}", code="kept_changing")


def _stream(runtime: Runtime, provider: StorageProvider, job: JobRecord, dest: Destination,
            lease: LeaseKeeper, progress: Progress | None) -> tuple[ObjectInfo, SizeProof]:
    assert job.object_key is not None
    with open_source(job.source_url, runtime.source_policy, expected_size=job.size,
                     announced_at=job.received_at) as source:
        # Underscored names: Azure accepts only identifier-like metadata names.
        metadata = {"meeting_id": job.meeting_id, "session_id": job.session_id,
                    "participant_id": job.participant_id or "", "kind": job.kind or "",
                    "source_path": job.file_path, "webhook_type": job.webhook_type}
        # Object metadata must be ASCII on S3; ids from the webhook may not be.
        metadata = {k: quote(v, safe="/:@-_.~ ") for k, v in metadata.items() if v}
        with provider.open_writer(job.object_key, size_hint=source.size, metadata=metadata,
                                  content_type=_content_type(job.file_path, source.content_type),
                                  if_absent=not dest.overwrite) as writer:
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            while n := source.readinto(view):
                writer.write(view[:n])
                lease.check()
                if progress is not None:
                    progress(job, writer.bytes_written, source.size)
            if not runtime.ledger.record_intent(job.job_id, runtime.worker_id, writer.bytes_written,
                                                writer.sha256_hex):
                raise LeaseLost(f"job {job.job_id}: lease lost before commit")
            return writer.commit(), (source.size_proven, source.size_note)


def _existing(provider: StorageProvider, key: str) -> ObjectInfo | None:
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


def _adopt_or_conflict(runtime: Runtime, provider: StorageProvider, job: JobRecord,
                       existing: ObjectInfo) -> ObjectInfo:
    """An object is already at the key: ours from an earlier attempt (same size and sha256) or not."""
    expected_sha, expected_size = job.sha256, job.bytes  # the commit intent of an earlier attempt
    if expected_sha is None and job.size is not None and job.size != existing.size:
        expected_size = job.size  # VideoSDK's size already says it is not ours: no need to download
    elif expected_sha is None:
        # No attempt of ours got as far as committing: hash the source to learn what belongs here.
        expected_size, expected_sha = _hash_stream(open_source(job.source_url, runtime.source_policy,
                                                               expected_size=job.size, announced_at=job.received_at))
    if existing.size == expected_size:
        found_sha = existing.checksums.get("sha256")
        if found_sha is None:  # e.g. an S3 multipart object: the digest is not in its metadata
            found_sha = _hash_stream(provider.open_reader(job.object_key or ""))[1]
        if found_sha == expected_sha:
            return ObjectInfo(key=existing.key, size=existing.size, etag=existing.etag,
                              checksums={**existing.checksums, "sha256": expected_sha})
    raise Conflict(f"a different object is already at {provider.describe(existing.key)} "
                   f"({existing.size} bytes); set overwrite = true to replace it")


def _hash_stream(stream: object) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with stream as reader:  # type: ignore[attr-defined]
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _content_type(file_path: str, served: str | None) -> str:
    if served and served.split(";")[0].strip() not in ("application/octet-stream", "binary/octet-stream", ""):
        return served
    suffix = "." + file_path.rsplit(".", 1)[-1].lower() if "." in file_path else ""
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(file_path)[0] or "application/octet-stream"


def _write_manifest(provider: StorageProvider, job: JobRecord, dest: Destination, info: ObjectInfo) -> None:
    import io

    manifest = {
        "object_key": job.object_key, "destination": dest.name, "size": info.size,
        "sha256": info.checksums.get("sha256"), "source_url": job.source_url.split("?")[0],
        "file_path": job.file_path, "meeting_id": job.meeting_id, "session_id": job.session_id,
        "participant_id": job.participant_id, "kind": job.kind, "webhook_type": job.webhook_type,
        "recording_id": job.recording_id, "received_at": job.received_at.isoformat(),
        "archived_at": utcnow().isoformat(), "job_id": job.job_id,
    }
    body = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    # Rewriting the manifest is harmless, so a re-run after a crash may overwrite it.
    provider.upload(f"{job.object_key}.json", io.BytesIO(body), content_type="application/json",
                    if_absent=False)

