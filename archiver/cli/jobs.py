"""Verbs about copy jobs: status, retry, replay, archive."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from archiver.cli.common import FOUND_PROBLEMS, OK, USAGE, format_table, settings_of, since
from archiver.domain.states import JobState, RunResult
from archiver.runtime import Runtime
from archiver.settings.destinations import require_secrets

STATUS_COLUMNS = ("job_id", "destination", "meeting_id", "participant_id", "state", "attempts", "bytes",
                  "object_key", "error")


def cmd_status(args: argparse.Namespace) -> int:
    runtime = Runtime.create(settings_of(args))
    rows = [r.to_json() for r in runtime.ledger.jobs(state=args.state, meeting_id=args.meeting, since=args.since)]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(format_table(rows, STATUS_COLUMNS) if rows else "no jobs")
    return FOUND_PROBLEMS if any(r["state"] == JobState.FAILED for r in rows) else OK


def cmd_retry(args: argparse.Namespace) -> int:
    from archiver.worker.app import Publisher, create_app

    if not (args.failed or args.held or args.lookups) and not args.job_ids:
        print("archiver retry: give --failed, --held, --lookups or one or more JOB_IDs", file=sys.stderr)
        return USAGE
    runtime = Runtime.create(settings_of(args))
    publisher = Publisher(create_app(runtime.settings))
    ids: list[int] = []
    if args.failed or args.job_ids:
        ids += runtime.ledger.requeue(None if args.failed else args.job_ids, failed=args.failed)
    if args.held:
        if runtime.settings.videosdk.storage is None:
            print("archiver retry --held: held copies wait for the customer's storage as a source; set "
                  "[videosdk] storage first (see the README, Configuration reference)", file=sys.stderr)
            return USAGE
        ids += runtime.ledger.requeue(held=True)
    if ids:
        publisher.copies(ids)
    if args.lookups:
        lookups = runtime.ledger.lookups.retry()
        publisher.lookups(lookups)
        print(f"re-enqueued {len(lookups)} lookup(s): {', '.join(map(str, lookups)) or '-'}")
    skipped = sorted(set(args.job_ids or []) - set(ids))
    print(f"re-enqueued {len(ids)} job(s): {', '.join(map(str, ids)) or '-'}")
    if skipped:
        print(f"not re-enqueued (unknown, running or already succeeded): {', '.join(map(str, skipped))}")
    return FOUND_PROBLEMS if skipped else OK


def _read_bodies(paths: list[str]) -> list[tuple[str, str]] | None:
    from archiver.intake.events import EventValidationError, parse_event

    bodies, bad = [], False
    for path in paths:
        try:
            text = Path(path).read_text()
            parse_event(text)
            bodies.append((path, text))
        except (OSError, UnicodeDecodeError, EventValidationError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            bad = True
    return None if bad else bodies


def cmd_replay(args: argparse.Namespace) -> int:
    from archiver.worker.app import Publisher, create_app

    bodies = _read_bodies(args.events)
    if bodies is None:
        return USAGE
    settings = settings_of(args)
    publisher = Publisher(create_app(settings))
    for path, text in bodies:
        publisher.event(text, source="replay")
        print(f"{path}: enqueued")
    return OK


def cmd_archive(args: argparse.Namespace) -> int:
    from archiver.copy.job import run_copy_job
    from archiver.intake.record import accept_event

    bodies = _read_bodies(args.events)
    if bodies is None:
        return USAGE
    settings = settings_of(args)
    unknown = sorted(set(args.dest) - {d.name for d in settings.destinations})
    if unknown:
        print(f"archiver archive: no destination {', '.join(unknown)}", file=sys.stderr)
        return USAGE
    require_secrets(d for d in settings.destinations if not args.dest or d.name in args.dest)
    runtime = Runtime.create(settings)
    failed = 0
    for path, text in bodies:
        _, accepted = accept_event(runtime.ledger, settings, text, verified=False, source="cli")
        for job in runtime.ledger.jobs(job_ids=list(accepted.job_ids)):
            if args.dest and job.destination not in args.dest:
                continue
            if job.state != JobState.PENDING:
                print(f"{path}: job {job.job_id} -> {job.destination}: already {job.state}")
                failed += job.state == JobState.FAILED
                continue
            with _progress(job.destination, job.file_path) as progress:
                outcome = run_copy_job(runtime, job.job_id, progress)
            print(f"{path}: job {job.job_id} -> {job.destination}: {outcome.state}"
                  f"{' (' + outcome.error + ')' if outcome.error else ''}")
            failed += outcome.state != RunResult.SUCCEEDED
    return FOUND_PROBLEMS if failed else OK


class _progress:
    """A progress bar (bytes, rate, ETA) on a terminal; a log line every 64 MiB otherwise."""

    def __init__(self, destination: str, file_path: str) -> None:
        self.label = f"{destination}: {Path(file_path).name}"
        self.bar: Any = None
        self.logged = 0

    def __enter__(self) -> _progress:
        return self

    def __call__(self, _job: Any, done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self.label)
            self.bar.update(done - self.bar.n)
        elif done - self.logged >= 64 << 20:
            self.logged = done
            print(f"{self.label}: {done >> 20} MiB" + (f" of {total >> 20} MiB" if total else ""), flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def register(verbs: Any) -> None:
    status = verbs.add_parser("status", help="the copy jobs in the ledger, as a table or JSON",
                              description="List copy jobs. Exit 1 when any listed job has failed.")
    status.add_argument("--state", choices=[s.value for s in JobState])
    status.add_argument("--meeting", help="only this meeting (room) id")
    status.add_argument("--since", type=since, help="only jobs changed since, e.g. 24h, 30m, 7d, 2026-11-01")
    status.add_argument("--json", action="store_true", help="print a JSON array")
    status.set_defaults(func=cmd_status)

    retry = verbs.add_parser("retry", help="re-enqueue failed jobs, or the given ones",
                             description="Put jobs back to pending with a fresh attempt budget and enqueue them. "
                                         "Succeeded and running jobs are never re-run.")
    retry.add_argument("job_ids", nargs="*", type=int, metavar="JOB_ID")
    retry.add_argument("--failed", action="store_true", help="every failed job")
    retry.add_argument("--held", action="store_true",
                       help="every copy held for the customer's storage (once [videosdk] storage is set)")
    retry.add_argument("--lookups", action="store_true",
                       help="every failed lookup (merge, transcript, composite recordings fetched by id)")
    retry.set_defaults(func=cmd_retry)

    replay = verbs.add_parser("replay", help="enqueue saved webhook bodies as if they had just arrived",
                              description="Validate each EVENT.json and put it on the events queue; a worker "
                                          "records it (duplicates add nothing) and enqueues its copies.")
    replay.add_argument("events", nargs="+", metavar="EVENT.json")
    replay.set_defaults(func=cmd_replay)

    archive = verbs.add_parser("archive", help="archive saved webhook bodies now, in this process",
                               description="Record each EVENT.json and run its copy jobs here, with a progress "
                                           "bar on a terminal. Exit 1 if any copy failed.")
    archive.add_argument("events", nargs="+", metavar="EVENT.json")
    archive.add_argument("--dest", action="append", default=[], metavar="NAME",
                         help="only these destinations (repeatable; default all)")
    archive.set_defaults(func=cmd_archive)
