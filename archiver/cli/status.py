"""`archiver status`: the copy jobs in the ledger, one per row, or `--summary`: counts per state and
destination, running jobs, the oldest pending job and failures by code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from archiver.cli.app import FOUND_PROBLEMS, OK, verb
from archiver.cli.common import Since, emit, open_runtime, show_table, state
from archiver.ledger.records import utcnow
from archiver.notifications.status import describe_backlog, notification_backlog
from archiver.observability.progress import human_bytes as size_text

STATUS_COLUMNS = ("job_id", "destination", "meeting_id", "participant_id", "state", "attempts", "bytes",
                  "object_key", "error")
STATES = ("pending", "running", "succeeded", "failed", "held")


def human_bytes(n: int | None) -> str:
    return "-" if n is None else size_text(n)


def human_age(seconds: float | None) -> str:
    """42s, 5m07s, 3h05m, 2d04h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def copied(done: int | None, size: int | None) -> str:
    """`64.0 MiB of 200.0 MiB (32%)`; `-` before the worker's first report."""
    if done is None:
        return "-" if size is None else f"- of {human_bytes(size)}"
    if not size:
        return human_bytes(done)
    return f"{human_bytes(done)} of {human_bytes(size)} ({done * 100 // size}%)"


def _age(moment: datetime | None) -> float | None:
    return None if moment is None else round((utcnow() - moment).total_seconds(), 1)


@verb("status", help="the copy jobs in the ledger, as a table or JSON; exit 1 if any listed job failed (with "
                     "--state failed: or a listed copy is flagged by verify)")
@click.option("--state", "state_", type=click.Choice(STATES), help="only jobs in this state; `failed` also "
              "lists succeeded copies that verify flagged (missing, different), with the flag")
@click.option("--meeting", help="only this meeting (room) id; adds its recording timeline")
@click.option("--since", type=Since(), help="only jobs changed since, e.g. 24h, 30m, 7d, 2026-11-01")
@click.option("--summary", is_flag=True, help="counts per state x destination, running jobs, the oldest "
              "pending job and failures by code")
def status(state_: str | None, meeting: str | None, since: datetime | None, summary: bool) -> int:
    from archiver.ledger.summary import flagged_job_ids, progress, started_at

    runtime = open_runtime()
    if summary:
        return _summary(runtime)
    ledger = runtime.ledger
    jobs = ledger.jobs(state=state_, meeting_id=meeting, since=since)
    if state_ == "failed":
        flagged = flagged_job_ids(ledger, meeting_id=meeting, since=since)
        jobs = sorted([*jobs, *ledger.jobs(job_ids=flagged)], key=lambda j: j.job_id) if flagged else jobs
    running = [j.job_id for j in jobs if j.state == "running"]
    starts, done = started_at(ledger, running), progress(ledger, running)
    rows = []
    for job in jobs:
        row = job.to_json()
        row["flag"] = job.error_code if job.state == "succeeded" and job.error_code else None
        if job.state == "running":  # how far and how long this attempt has run (as of its last renewal)
            row["age_seconds"] = _age(starts.get(job.job_id) or job.updated_at)
            row["done"] = done.get(job.job_id)
        rows.append(row)
    columns: tuple[str, ...] = STATUS_COLUMNS
    if state_ == "running":
        columns = ("job_id", "destination", "meeting_id", "attempts", "copied", "age", "lease_owner", "object_key")
        for row in rows:
            row["copied"], row["age"] = copied(row["done"], row["size"]), human_age(row["age_seconds"])
    elif any(r["flag"] for r in rows):
        columns = (*STATUS_COLUMNS[:5], "flag", *STATUS_COLUMNS[5:])
    if state().json:
        emit(rows)
    else:
        if rows:
            show_table(rows, columns)
        else:
            print("no jobs")
        if meeting:
            from archiver.cli.timeline import render_timeline

            print("\n" + render_timeline(ledger, meeting))
    backlog = notification_backlog(ledger)
    for line in describe_backlog(backlog):  # stderr with --json: stdout stays one JSON document
        click.echo(line, err=state().json)
    # --state failed lists flagged copies as failures too; otherwise a flag alone is shown, not an error
    failed = any(r["state"] == "failed" or (state_ == "failed" and r["flag"]) for r in rows)
    return FOUND_PROBLEMS if failed or backlog.failed else OK


def _summary(runtime: Any) -> int:
    from archiver.ledger.summary import summarize

    report = summarize(runtime.ledger)
    failed = sum(report.failures.values()) + sum(report.flagged.values())
    if state().json:
        emit(report.to_json())
        return FOUND_PROBLEMS if failed else OK
    if not report.counts:
        print("no jobs")
        return OK
    counts = [{"destination": d, **{s: by_state.get(s, 0) for s in STATES}, "flagged": report.flagged.get(d, 0)}
              for d, by_state in sorted(report.counts.items())]
    show_table(counts, ("destination", *STATES, "flagged"), title="Copies by state")
    if report.running:
        show_table([{**r, "copied": copied(r["done"], r["size"]), "age": human_age(r["age_seconds"])}
                    for r in report.running],
                   ("job_id", "destination", "meeting_id", "attempts", "copied", "age", "lease_owner"),
                   title="Running")
    oldest = report.oldest_pending
    print("oldest pending: " + (f"job {oldest['job_id']} -> {oldest['destination']} (meeting {oldest['meeting_id']})"
                                f", waiting {human_age(oldest['age_seconds'])}" if oldest else "none"))
    if report.failures:
        show_table([{"error_code": c, "jobs": n} for c, n in sorted(report.failures.items(), key=lambda x: -x[1])],
                   ("error_code", "jobs"), title="Failures by code")
    return FOUND_PROBLEMS if failed else OK


def register(group: click.Group) -> None:
    group.add_command(status)
