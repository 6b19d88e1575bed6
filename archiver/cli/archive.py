"""`archiver archive`: record saved webhook bodies and run their copies in this process, with progress."""

from __future__ import annotations

import atexit
import difflib
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from archiver.cli.app import FOUND_PROBLEMS, OK, USAGE, settings, verb
from archiver.cli.common import emit, fail, open_runtime, state
from archiver.cli.jobs import read_bodies
from archiver.cli.status import human_bytes
from archiver.settings.destinations import require_secrets

PROGRESS_EVERY = 64 << 20  # off a terminal, one progress line per this many bytes copied


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """A rich progress bar (bytes, rate, ETA) on a terminal; off one, a line per PROGRESS_EVERY bytes with
    the rate and ETA. Either way one summary line at the end (`summary()`)."""

    def __init__(self, destination: str, file_path: str, quiet: bool = False) -> None:
        self.label = f"{destination}: {Path(file_path).name}"
        self.started = time.monotonic()
        self.done, self.logged = 0, 0
        self.total: int | None = None
        self.quiet = quiet  # --json: stdout carries only the JSON
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Progress:
        return self

    def rate(self) -> float:
        """Bytes per second since the copy started."""
        return self.done / max(time.monotonic() - self.started, 1e-6)

    def __call__(self, _job: Any, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        if sys.stderr.isatty():
            self._bar(done, total)
        elif done - self.logged >= PROGRESS_EVERY:
            self.logged = done
            rate = self.rate()
            line = f"{self.label}: {human_bytes(done)}"
            if total:
                eta = (total - done) / rate if rate > 0 else 0
                line += f" of {human_bytes(total)} ({done * 100 // total}%)"
            line += f", {human_bytes(int(rate))}/s"
            if total:
                line += f", ETA {_duration(eta)}"
            print(line, file=sys.stderr if self.quiet else sys.stdout, flush=True)

    def _bar(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                           TransferSpeedColumn(), TimeRemainingColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def summary(self) -> str:
        """What the copy moved: `200.0 MiB in 12.3 s (16.3 MiB/s)`."""
        elapsed = time.monotonic() - self.started
        return f"{human_bytes(self.done)} in {elapsed:.1f} s ({human_bytes(int(self.rate()))}/s)"

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _not_a_recording(webhook_type: str) -> str:
    from archiver.intake.events import RECORDING_TYPES

    close = difflib.get_close_matches(webhook_type, sorted(RECORDING_TYPES), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"webhookType {webhook_type!r} is not a recording event{hint}; nothing to archive"


@verb("archive", short_help="archive saved webhook bodies now, in this process",
      help="record each saved webhook body and run its pending copy jobs here, with progress "
           "(a bar on a terminal, a line with rate and ETA otherwise); exit 1 if any copy failed")
@click.argument("events", nargs=-1, required=True, metavar="EVENT.json...")
@click.option("--dest", multiple=True, metavar="NAME", help="only these destinations (repeatable; default all)")
def archive(events: tuple[str, ...], dest: tuple[str, ...]) -> int:
    from archiver.copy.job import run_copy_job
    from archiver.intake.events import RECORDING_TYPES
    from archiver.intake.record import accept_event

    # At exit the interpreter's last garbage collections walk every object still alive (about 100,000:
    # SQLAlchemy, botocore's models), about 0.2 s of CPU, a fifth of a small archive's whole process.
    # The process is ending: an exit handler freezes them out of the collector. Objects are still
    # released by reference count, files flushed and connections closed.
    atexit.unregister(gc.freeze)  # once per process, however often the verb runs in it (tests)
    atexit.register(gc.freeze)
    bodies = read_bodies(events)
    if bodies is None:
        return USAGE
    current = settings()
    unknown = sorted(set(dest) - {d.name for d in current.destinations})
    if unknown:
        return fail(f"no destination {', '.join(unknown)} (configured: "
                    f"{', '.join(d.name for d in current.destinations)})")
    as_json = state().json
    say = (lambda _line: None) if as_json else print
    wrong = [(path, json.loads(text).get("webhookType")) for path, text in bodies]
    wrong = [(path, t) for path, t in wrong if t not in RECORDING_TYPES]
    for path, webhook_type in wrong:
        click.echo(f"{path}: {_not_a_recording(str(webhook_type))}", err=True)
    if wrong:
        return USAGE
    require_secrets(d for d in current.destinations if not dest or d.name in dest)
    runtime = open_runtime(current)
    failed, results = 0, []
    for path, text in bodies:
        event, accepted = accept_event(runtime.ledger, current, text, verified=False, source="cli")
        jobs = [j for j in runtime.ledger.jobs(job_ids=list(accepted.job_ids)) if not dest or j.destination in dest]
        if not jobs:
            why = ("it names its files only by id: a worker looks them up (`archiver replay` it)" if event.lookup
                   else "it announces no file")
            say(f"{path}: {event.webhook_type}: nothing to archive here; {why}")
        for job in jobs:
            result = {"event": path, "job_id": job.job_id, "destination": job.destination}
            if job.state != "pending":
                hint = f"; run `archiver retry {job.job_id}` to copy it again" if job.state == "failed" else ""
                error = f" ({job.error_code}: {job.error_message})" if job.state == "failed" else ""
                say(f"{path}: job {job.job_id} -> {job.destination}: already {job.state}{error}{hint}")
                results.append({**result, "state": job.state, "already": True, "error": job.error_code})
                failed += job.state == "failed"
                continue
            with Progress(job.destination, job.file_path, quiet=as_json) as progress:
                outcome = run_copy_job(runtime, job.job_id, progress)
            if outcome.bytes is not None:  # what was written, whether or not progress was reported
                progress.done = outcome.bytes
            say(f"{path}: job {job.job_id} -> {job.destination}: {outcome.state}"
                f"{' (' + outcome.error + ')' if outcome.error else ''}, {progress.summary()}")
            results.append({**result, "state": outcome.state, "bytes": progress.done, "error": outcome.error,
                            "seconds": round(time.monotonic() - progress.started, 3)})
            failed += outcome.state != "succeeded"
    if as_json:
        emit(results)
    return FOUND_PROBLEMS if failed else OK


def register(group: click.Group) -> None:
    group.add_command(archive)
