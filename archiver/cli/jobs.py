"""Verbs that put work back on the queue: retry (jobs, held copies, lookups) and replay (saved bodies)."""

from __future__ import annotations

from pathlib import Path

import click

from archiver.cli.app import FOUND_PROBLEMS, OK, USAGE, settings, verb
from archiver.cli.common import confirm, emit, fail, open_publisher, open_runtime, state


@verb("retry", short_help="re-enqueue failed, held or given jobs, or failed lookups",
      help="put jobs back to pending with a fresh attempt budget and enqueue them: failed ones "
           "(--failed, asks first unless --yes), held ones, failed lookups, or the JOB_IDs given. "
           "Succeeded and running jobs are never re-run.")
@click.argument("job_ids", nargs=-1, type=int, metavar="[JOB_ID]...")
@click.option("--failed", is_flag=True, help="every failed job")
@click.option("--held", is_flag=True, help="every copy held for the customer's storage (once [videosdk] storage "
                                           "is set)")
@click.option("--lookups", is_flag=True, help="every failed lookup (merge, transcript, composite recordings "
                                              "fetched by id)")
@click.option("--dry-run", is_flag=True, help="list what would be re-enqueued; change and enqueue nothing")
@click.option("--yes", "-y", is_flag=True, help="do not ask before re-running every failed job")
def retry(job_ids: tuple[int, ...], failed: bool, held: bool, lookups: bool, dry_run: bool, yes: bool) -> int:
    if not (failed or held or lookups) and not job_ids:
        return fail("give --failed, --held, --lookups or one or more JOB_IDs")
    current = settings()
    runtime = open_runtime(current)
    ledger = runtime.ledger
    if held and current.videosdk.storage is None:
        return fail("--held: held copies wait for the customer's storage as a source; set [videosdk] storage "
                    "first (see the README, Configuration reference)")
    if failed and not dry_run:
        count = len(ledger.requeue(failed=True, dry_run=True))
        if count and (stop := confirm(f"re-run {count} failed job(s)?", yes=yes)) is not None:
            return stop
    publisher = None if dry_run else open_publisher(current)
    ids: list[int] = []
    if failed or job_ids:
        ids += ledger.requeue(None if failed else list(job_ids), failed=failed, dry_run=dry_run)
    if held:
        ids += ledger.requeue(held=True, dry_run=dry_run)
    if ids and publisher is not None:
        publisher.copies(ids)
    retried_lookups: list[int] = []
    if lookups:
        retried_lookups = ([x.lookup_id for x in ledger.lookups.list(state="failed")] if dry_run
                           else ledger.lookups.retry())
        if publisher is not None:
            publisher.lookups(retried_lookups)
    skipped = sorted(set(job_ids) - set(ids))
    verb_ = "would re-enqueue" if dry_run else "re-enqueued"
    if state().json:
        emit({"dry_run": dry_run, "jobs": ids, "lookups": retried_lookups, "not_requeued": skipped})
    else:
        if lookups:
            print(f"{verb_} {len(retried_lookups)} lookup(s): {', '.join(map(str, retried_lookups)) or '-'}")
        print(f"{verb_} {len(ids)} job(s): {', '.join(map(str, ids)) or '-'}"
              + (" (dry run: nothing changed)" if dry_run else ""))
        if skipped:
            print(f"not re-enqueued (unknown, running or already succeeded): {', '.join(map(str, skipped))}")
    return FOUND_PROBLEMS if skipped else OK


def read_bodies(paths: tuple[str, ...]) -> list[tuple[str, str]] | None:
    """Each saved webhook body, validated; None (every problem printed, one line each) if any is bad."""
    from archiver.intake.events import EventValidationError, parse_event

    bodies, bad = [], False
    for path in paths:
        try:
            text = Path(path).read_text()
            parse_event(text)
            bodies.append((path, text))
        except (OSError, UnicodeDecodeError, EventValidationError) as exc:
            click.echo(f"{path}: {exc}", err=True)
            bad = True
    return None if bad else bodies


@verb("replay", short_help="enqueue saved webhook bodies as if they had just arrived",
      help="validate each saved webhook body and put it on the events queue, as if it had just "
           "arrived; a worker records it (duplicates add nothing) and enqueues its copies")
@click.argument("events", nargs=-1, required=True, metavar="EVENT.json...")
def replay(events: tuple[str, ...]) -> int:
    bodies = read_bodies(events)
    if bodies is None:
        return USAGE
    publisher = open_publisher()
    for path, text in bodies:
        publisher.event(text, source="replay")
        if not state().json:
            print(f"{path}: enqueued")
    if state().json:
        emit([{"event": path, "enqueued": True} for path, _ in bodies])
    return OK


def register(group: click.Group) -> None:
    group.add_command(retry)
    group.add_command(replay)
