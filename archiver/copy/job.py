"""Run one copy job: recording file -> one destination, exactly once, verified.

The order of steps is what makes retries, duplicate deliveries and crashes safe:
claim the job (lease) -> look at the destination first -> stream source into a create-only writer ->
record the commit intent (size, sha256) -> commit (the provider verifies) -> manifest -> mark succeeded.
An HLS recording (``archiver.copy.playlist``) runs the same steps, with its pieces copied (and each
recorded) before its playlist, the job's own object, is written.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from archiver.copy.encryption import encryption_role, unusable_note
from archiver.copy.errors import LeaseLost, classify
from archiver.copy.lease import LeaseKeeper
from archiver.copy.manifests import write_manifest
from archiver.copy.object import (
    Copied,
    CopyTask,
    Progress,
    adopt_or_conflict,
    existing,
    hash_stream,
    put,
    refuse_if_too_large,
)
from archiver.copy.playlist import copy_playlist
from archiver.copy.source.opener import SourceChanged
from archiver.copy.sources import Download, NoSource, Origin, origin_for
from archiver.domain.formats import Family, Format, declared_format, looks_like_playlist, object_content_type
from archiver.domain.states import Flag, JobState, RunResult
from archiver.domain.templates import RenderError
from archiver.intake.account import confirm, needs_confirmation
from archiver.intake.record import render_job_key, template_failure
from archiver.ledger.origins import first_event_body
from archiver.ledger.store import JobRecord, utcnow
from archiver.retry import Backoff
from archiver.runtime import Runtime
from archiver.settings.config import Destination
from providers import ObjectInfo, StorageError

log = logging.getLogger("archiver.copy")

__all__ = ["JobOutcome", "LeaseKeeper", "Progress", "run_copy_job"]

WINDOWED_CODES = frozenset({"source_not_found_yet", "not_in_account_yet"})
MAX_SOURCE_RESTARTS = 3
SNIFF_BYTES = 16  # enough to see "#EXTM3U" after a byte order mark
# A first attempt still looks before writing a file larger than this (or of unknown length): an object
# already at the key is then found before its upload, not after it. For a small file the look would
# cost more than the upload it might save.
LOOK_FIRST_BYTES = 64 << 20


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    state: str  # a RunResult
    retry_in: float | None = None
    error: str | None = None
    uploaded: bool = False  # False when an identical object was already there
    destination: str | None = None
    bytes: int | None = None  # bytes this attempt wrote (for HLS: every piece and the playlist)
    # size_proven hook: for a streamed copy, whether the source's length was proven and how / why not
    # (SourceStream.size_proven / size_note); None when nothing was streamed (an adopted object)
    size_proven: bool | None = None
    size_note: str | None = None


def run_copy_job(runtime: Runtime, job_id: int, progress: Progress | None = None) -> JobOutcome:
    worker = runtime.worker_id
    prepared = _claim(runtime, job_id, worker)
    if isinstance(prepared, JobOutcome):
        return prepared
    job, destination, first = prepared
    provider = runtime.provider(destination)
    try:
        with LeaseKeeper(runtime, job_id, worker) as lease:
            if needs_confirmation(runtime, job):
                job = confirm(runtime, job)  # only our account's recordings are copied
            refuse_if_too_large(runtime, job.size, "VideoSDK reports")
            task = CopyTask(runtime, job, destination, provider, lease, progress, first=first)
            copied = _copy(task)
            if destination.manifest:
                write_manifest(provider, job, destination, copied.info, copied.manifest)
            _discard_leftovers(task)
    except LeaseLost:
        return JobOutcome(job_id, RunResult.LOST)
    except (SystemExit, KeyboardInterrupt):
        # The worker is stopping (its stop grace ran out): the writer aborted on the way out. Give the
        # job back at once, so the redelivered message finds it pending instead of waiting for the
        # lease to run out. A stop is not the copy's fault: the attempt is given back.
        runtime.ledger.fail(job_id, worker, code="interrupted", retrying=True, refund=True,
                            message="the worker was stopped during the copy; it runs again")
        raise
    except Exception as exc:  # every failure is recorded; classify decides retry vs final
        return _failed(runtime, job, worker, exc)
    info, proof = copied.info, copied.proof
    flag: tuple[str, str] | None = None
    if proof[0] is False:
        # Every byte the source sent is in place, but nothing proved that it sent the whole file:
        # visible in `status` and `verify`, never verified, so retention keeps the recording until
        # reconcile learns VideoSDK's size and it agrees.
        flag = (Flag.SIZE_UNPROVEN, f"{info.size} bytes copied, but the source's length was "
                f"not proven: {proof[1]}; reconcile compares it with VideoSDK's size")
    elif info.unverified:
        # Committed and accounted for, but the destination would not let us read it back (write-only
        # credentials): `archiver verify` with read access confirms it later; until then it is not
        # verified, so retention keeps the recording.
        flag = (Flag.UNVERIFIED, "committed, not read back: " + "; ".join(info.unverified))
    # The flag goes in with the success: the outbox, written in the same transaction, must not take a
    # flagged copy for a verified one (recording.archived).
    if not runtime.ledger.succeed(job_id, worker, size=info.size, sha256=info.checksums["sha256"], etag=info.etag,
                                  flag=flag):
        return JobOutcome(job_id, RunResult.LOST)  # our lease ran out and another worker owns the job now
    return JobOutcome(job_id, RunResult.SUCCEEDED, uploaded=copied.uploaded, destination=job.destination,
                      bytes=task.uploaded_bytes or None, size_proven=proof[0], size_note=proof[1])


def _discard_leftovers(task: CopyTask) -> None:
    """Anything unfinished still at the key now is a leftover this job owns: e.g. a second S3 multipart
    upload that botocore's retry of a CreateMultipartUpload whose answer was lost started. Best effort:
    a cleanup failure must not fail a verified copy (a bucket lifecycle rule is the backstop).
    Nothing to look for when no attempt of the job ever ran before and this one opened no session."""
    if task.first and not task.sessions:
        return
    try:
        if (found := task.provider.discard_incomplete(task.key)):
            log.info("job %s: discarded %d unfinished upload(s) left at %s", task.job.job_id, found,
                     task.provider.describe(task.key))
    except StorageError as exc:
        log.warning("job %s: could not discard unfinished uploads at %s: %s", task.job.job_id,
                    task.provider.describe(task.key), exc.code or type(exc).__name__)


def _claim(runtime: Runtime, job_id: int, worker: str) -> tuple[JobRecord, Destination, bool] | JobOutcome:
    """Take the job and make sure it has a destination and a key; an outcome when it cannot run.
    The flag: this is the job's first attempt ever (``Claim.first``)."""
    claimed = runtime.ledger.take(job_id, worker, runtime.lease)
    if claimed is None:
        current = runtime.ledger.job(job_id)
        if current is not None and current.state == JobState.PENDING:
            # The claim ran before intake's commit became visible and the read after it: claim again.
            claimed = runtime.ledger.take(job_id, worker, runtime.lease)
        if claimed is None:
            return _not_claimed(runtime, job_id, current)
    job = claimed.job
    try:
        destination = runtime.settings.destination(job.destination)
    except KeyError:
        runtime.ledger.fail(job_id, worker, code="unknown_destination", retrying=False,
                            message=f"destination {job.destination!r} is no longer configured")
        return JobOutcome(job_id, RunResult.FAILED, error="unknown_destination")
    if job.object_key is None:
        # Its template could not render at intake; the configuration may have been fixed since.
        try:
            key = render_job_key(job, destination)
        except RenderError as exc:
            message = template_failure(destination, exc)
            runtime.ledger.fail(job_id, worker, code="template", message=message, retrying=False)
            return JobOutcome(job_id, RunResult.FAILED, error=f"template: {message}", destination=job.destination)
        problem = runtime.ledger.set_key(job_id, worker, key, manifest=destination.manifest)
        if problem == RunResult.LOST:
            return JobOutcome(job_id, RunResult.LOST)
        if problem is not None:
            runtime.ledger.fail(job_id, worker, code="key_collision", message=problem, retrying=False)
            return JobOutcome(job_id, RunResult.FAILED, error=f"key_collision: {problem}", destination=job.destination)
        job = dataclasses.replace(job, object_key=key)
    return job, destination, claimed.first


def _not_claimed(runtime: Runtime, job_id: int, current: JobRecord | None) -> JobOutcome:
    """Decide from one read (a second read could see intake's commit land in between)."""
    if current is None or current.state == JobState.PENDING:
        # Not visible yet (intake publishes before it commits) or visible only now: try again soon.
        return JobOutcome(job_id, RunResult.MISSING)
    if current.state == JobState.RUNNING and current.lease_expires_at is not None:
        # Leased by a worker that may be dead (RabbitMQ redelivers at once when a worker dies):
        # come back when the lease would have run out instead of dropping the message.
        wait = (current.lease_expires_at - utcnow()).total_seconds() + 1
        return JobOutcome(job_id, RunResult.BUSY, retry_in=max(1.0, wait))
    return JobOutcome(job_id, RunResult.SKIPPED)  # done, failed for good, or waiting for its own retry


def _failed(runtime: Runtime, job: JobRecord, worker: str, exc: Exception) -> JobOutcome:
    code: str
    if isinstance(exc, NoSource):
        code, message, retrying = Flag.CUSTOMER_STORAGE, str(exc), False
    else:
        failure = classify(exc, attempt=job.attempts)
        code, message = failure.code, failure.message
        # A file not on the CDN yet (or not yet in our account's list) is retried for the whole grace
        # window, and those attempts are given back: the source says so only inside the window, so this
        # cannot loop forever, and a later transient fault still gets the whole attempt budget.
        windowed = failure.code in WINDOWED_CODES
        retrying = failure.retryable and (job.attempts < runtime.settings.retry.max_attempts or windowed)
    role = encryption_role(first_event_body(runtime.ledger.reads, job.job_id), job.source_url)
    if role is not None:
        message += unusable_note(role)
    runtime.ledger.fail(job.job_id, worker, code=code, message=message, retrying=retrying,
                        refund=retrying and windowed)
    retry = runtime.settings.retry
    if retrying and windowed:
        # the attempt count stands still: back off by how long the file has been missing instead
        waited = (utcnow() - job.received_at).total_seconds()
        delay: float | None = Backoff(min(retry.max_delay, max(retry.base_delay, waited / 4)),
                                      retry.max_delay).seconds(1)
    else:
        delay = Backoff(retry.base_delay, retry.max_delay).seconds(job.attempts) if retrying else None
    return JobOutcome(job.job_id, RunResult.PENDING if retrying else RunResult.FAILED, retry_in=delay,
                      error=f"{code}: {message}", destination=job.destination)


def _copy(task: CopyTask) -> Copied:
    """Look first, then stream; a playlist (by name, served type or content) goes the HLS way.
    A job's first attempt skips the look for a small file: no attempt of it ran before, so nothing of it
    is at the key. An object put there by anything else is still never replaced: the create-only commit
    refuses, and `put` adopts it when it holds the same bytes, else it is a conflict, as after a look."""
    if not task.first:
        # We hold the lease: any unfinished upload to this key is a dead attempt's leftover.
        task.provider.discard_incomplete(task.key)
    declared = declared_format(task.job.file_path)
    origin = origin_for(task.runtime, task.job)
    try:
        if declared.family is Family.PLAYLIST:
            return copy_playlist(task, origin)
        if not task.dest.overwrite and not task.first:
            found = existing(task.provider, task.key)
            if found is not None:
                return Copied(_adopt(task, origin, declared, found), False, (None, None))
        last: SourceChanged | None = None
        for _ in range(MAX_SOURCE_RESTARTS):
            try:
                return _stream(task, origin, declared)
            except SourceChanged as exc:
                last = exc  # the writer aborted on the way out; start both sides again from byte 0
        raise SourceChanged(f"the download had to start again {MAX_SOURCE_RESTARTS} times in one attempt; the "
                            f"last time: {last}", code="kept_changing")
    finally:
        origin.close()


def _stream(task: CopyTask, origin: Origin, declared: Format) -> Copied:
    runtime, job = task.runtime, task.job
    with origin.open(origin.root, expected_size=job.size, declared=declared) as download:
        head = _head(download)
        if looks_like_playlist(declared, download.content_type, head):
            return copy_playlist(task, origin, opened=(download, head))
        if task.first and not task.dest.overwrite and (download.size is None or download.size > LOOK_FIRST_BYTES):
            found = existing(task.provider, task.key)
            if found is not None:
                download.close()
                return Copied(_adopt(task, origin, declared, found), False, (None, None))
        info, uploaded = put(task, task.key, download, head=head,
                             content_type=object_content_type(declared, download.content_type),
                             intent=lambda size, sha: runtime.ledger.record_intent(job.job_id, runtime.worker_id,
                                                                                     size, sha))
        return Copied(info, uploaded, (download.size_proven, download.size_note) if uploaded else (None, None))


def _head(download: Download) -> bytes:
    """The first bytes of the body (all of it when shorter), read before anything is written."""
    head, buffer = bytearray(), bytearray(SNIFF_BYTES)
    while len(head) < SNIFF_BYTES and (n := download.readinto(memoryview(buffer)[: SNIFF_BYTES - len(head)])):
        head += buffer[:n]
    return bytes(head)


def _adopt(task: CopyTask, origin: Origin, declared: Format, found: ObjectInfo) -> ObjectInfo:
    """An object is already at the key before we wrote anything: ours from an earlier attempt (same size
    and sha256 as its recorded intent, or as the source) or a conflict."""
    job = task.job
    size, sha = job.bytes, job.sha256  # the commit intent of an earlier attempt
    if sha is None and job.size is not None and job.size != found.size:
        size, sha = job.size, ""  # VideoSDK's size already says it is not ours: no need to download
    elif sha is None or size is None:
        # No attempt of ours got as far as committing: hash the source to learn what belongs here.
        size, sha = hash_stream(origin.open(origin.root, expected_size=job.size, declared=declared))
    return adopt_or_conflict(task.provider, task.key, found, size, sha)
