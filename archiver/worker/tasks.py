"""Celery tasks: thin wrappers around plain functions the CLI and the tests also call."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from celery.utils.log import get_task_logger

from archiver.copy.job import run_copy_job
from archiver.domain.recordings import RecordingKind
from archiver.domain.states import RunResult
from archiver.intake.record import accept_event
from archiver.ledger.store import JobRecord
from archiver.observability.metrics import IN_FLIGHT, RECONCILE_FINDS, observe_copy, progress_counter
from archiver.observability.progress import ProgressMeter
from archiver.runtime import get_runtime
from archiver.videosdk.api import VideoSDKClient
from archiver.videosdk.lookup import run_lookup
from archiver.worker.app import app, publisher

log = get_task_logger(__name__)
# Intake publishes before its transaction commits; a worker can be faster than the commit.
MISSING_RETRIES, MISSING_DELAY = 5, 2.0
PROGRESS_SECONDS = 30.0  # how often a running copy logs a line


class CopyProgress:
    """A running copy seen from outside: a log line every PROGRESS_SECONDS (bytes, rate, ETA) and
    archiver_copy_progress_bytes_total moving as bytes are written, so a long copy is not silent."""

    def __init__(self) -> None:
        self.meter = ProgressMeter(every_seconds=PROGRESS_SECONDS)
        self.advance: Callable[[int], None] | None = None  # made when the destination is known

    def __call__(self, job: JobRecord, done: int, total: int | None) -> None:
        if self.advance is None:
            self.advance = progress_counter(job.destination)
        self.advance(done)
        if line := self.meter.update(done, total):
            # "job N copying", not "job N: ...": "job N: STATE" lines are the job's outcome (bench.e2e_measure)
            log.info("job %s copying %s to %s: %s", job.job_id, job.file_path, job.destination, line)


# Every kind's reconcile-finds series exists at 0 from the start: the alert's increase() cannot see the
# first find of a series that is born at its first value.
for _kind in RecordingKind:
    RECONCILE_FINDS.labels(kind=_kind.value)


@app.task(name="archiver.copy_file", acks_late=True, reject_on_worker_lost=True)
def copy_file(job_id: int, missing_retries: int = 0) -> str:
    started = time.monotonic()
    progress = CopyProgress()
    with IN_FLIGHT.track_inprogress():
        outcome = run_copy_job(get_runtime(), job_id, progress)
    if outcome.destination is not None:  # it ran (not skipped, busy or missing)
        observe_copy(outcome.destination, outcome.state, time.monotonic() - started, outcome.bytes,
                     (outcome.error or "").split(":")[0] or None)
    detail = outcome.error or (progress.meter.summary(outcome.bytes) if outcome.state == "succeeded" and outcome.bytes
                               else None)
    log.info("job %s: %s%s", job_id, outcome.state, f" ({detail})" if detail else "")
    if outcome.retry_in is not None:
        publisher.copies([job_id], countdown=outcome.retry_in)
    elif outcome.state == RunResult.MISSING and missing_retries < MISSING_RETRIES:
        publisher.copies([job_id], countdown=MISSING_DELAY, missing_retries=missing_retries + 1)
    if outcome.state in (RunResult.SUCCEEDED, RunResult.FAILED):
        _kick_notifications()
    return outcome.state


def _kick_notifications() -> None:
    """An outcome may have queued notifications: send them now rather than at the next beat run.
    Best effort: a broker hiccup here must not fail the copy (beat's run sends them anyway)."""
    if not get_runtime().settings.notifications:
        return
    try:
        publisher.notifications()
    except Exception as exc:  # the copy is recorded; only the nudge is lost
        log.warning("could not ask for notifications to be sent now (beat sends them): %s", type(exc).__name__)


@app.task(name="archiver.deliver_notifications", acks_late=True, reject_on_worker_lost=True)
def deliver_notifications_task() -> dict[str, int]:
    """POST the notifications due now; retries come due by backoff and beat's run sends them."""
    from archiver.notifications.delivery import deliver_due

    runtime = get_runtime()
    report = deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)
    return {"delivered": len(report.delivered), "retrying": len(report.retrying), "failed": len(report.failed)}


@app.task(name="archiver.accept_event", acks_late=True, reject_on_worker_lost=True)
def accept_event_task(body: str, source: str = "replay", verified: bool = False) -> list[int]:
    """Record a saved webhook body as if it had just arrived (duplicates add nothing)."""
    from archiver.intake.events import parse_event

    runtime = get_runtime()
    event = parse_event(body)
    _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=verified, source=source,
                               event=event, publish=publisher.copies, publish_lookups=publisher.lookups)
    return list(accepted.created)


@app.task(name="archiver.sweep_leases")
def sweep_leases() -> list[int]:
    """Re-enqueue jobs whose worker died or whose message was lost; a job whose message is still
    queued is simply skipped by `claim`, so a double enqueue costs nothing."""
    runtime = get_runtime()
    unchanged = timedelta(seconds=runtime.settings.retry.requeue_after)
    stale = runtime.ledger.stale_jobs(unchanged)
    if runtime.settings.videosdk.storage is not None:
        # The customer's storage is configured as a source now: copies held for it can run.
        stale += runtime.ledger.requeue(held=True)
    publisher.copies(stale)
    publisher.lookups(runtime.ledger.lookups.stale(unchanged))
    return stale


@app.task(name="archiver.run_lookup", acks_late=True, reject_on_worker_lost=True)
def run_lookup_task(lookup_id: int) -> str:
    """Fetch a recording a webhook named only by id and record its files; retried with backoff."""
    runtime = get_runtime()
    with VideoSDKClient.from_settings(runtime.settings) as client:
        outcome = run_lookup(runtime, lookup_id, client, publisher.copies)
    if outcome.retry_in is not None:
        publisher.lookups([lookup_id], countdown=outcome.retry_in)
    log.info("lookup %s: %s%s", lookup_id, outcome.state, f" ({outcome.error})" if outcome.error else "")
    return outcome.state


@app.task(name="archiver.reconcile")
def reconcile_task() -> dict[str, object]:
    """Beat, every [reconcile] interval_minutes: archive what VideoSDK lists and no webhook announced."""
    from archiver.maintenance.reconcile import reconcile, window

    runtime = get_runtime()
    with VideoSDKClient.from_settings(runtime.settings) as client:
        report = reconcile(runtime.ledger, runtime.settings, client, publisher.copies,
                           since=window(runtime.settings))
    summary = {k: v for k, v in report.to_json().items() if k != "rooms"}
    errors = {f"{r.room} {kind}": error for r in report.rooms for kind, error in r.errors.items()}
    (log.error if report.error else log.warning if report.found_anything else log.info)(
        "reconcile: %s%s", report.summary(), f"; failed listings: {errors}" if errors else "")
    if report.found_anything:
        _kick_notifications()  # recording.discovered, and flags it cleared (recording.archived)
    return summary


@app.task(name="archiver.prune")
def prune_task() -> dict[str, int]:
    """Beat, hourly when [retention] is on: delete recordings from VideoSDK whose copies all verified."""
    from archiver.maintenance.retention import enabled, prune

    runtime = get_runtime()
    if not enabled(runtime.settings):  # scheduled before the setting changed: do nothing
        return {}
    with VideoSDKClient.from_settings(runtime.settings) as client:
        decisions = prune(runtime.ledger, runtime.settings, client)
    counts: dict[str, int] = {}
    for decision in decisions:
        counts[decision.action] = counts.get(decision.action, 0) + 1
    (log.warning if counts.get("failed") else log.info)("prune: %s", counts)
    return counts


@app.task(name="archiver.verify")
def verify_task() -> dict[str, int]:
    """Beat, hourly when [retention] is on: stat each recent copy and record the verdict (prune needs it)."""
    from archiver.copy.verification import problems, verify_copies
    from archiver.maintenance.reconcile import window

    verdicts = verify_copies(get_runtime(), since=window(get_runtime().settings))
    return {"verified": len(verdicts), "problems": problems(verdicts)}
