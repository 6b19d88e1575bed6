"""Verbs about destinations: check (probe), render-path (what key a file would get)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from archiver.cli.app import FOUND_PROBLEMS, OK, settings, state, verb
from archiver.cli.common import ProviderOption, emit, fail
from archiver.settings.destinations import require_secrets
from providers import open_provider


@verb("check", short_help="probe destinations: write, read back, compare, delete",
      help="probe destinations: for each configured destination (or the one named, or a storage URL), "
           "write a small probe object under its prefix, read it back, compare and delete it; exit 1 if "
           "any step fails")
@click.argument("target", required=False)
@click.option("-o", "--option", "options", type=ProviderOption(), multiple=True, metavar="KEY=VALUE",
              help="a provider option when TARGET is a URL, e.g. -o region=eu-west-1 (repeatable)")
def check(target: str | None, options: tuple[tuple[str, Any], ...]) -> int:
    if target and ("://" in target or target.startswith("file:")):
        targets = [(target, open_provider(target, **dict(options)), "")]
        targets[0][1].resolve_secrets()
    else:
        current = settings()
        chosen = [d for d in current.destinations if target in (None, d.name)]
        if not chosen:
            return fail(f"no destination {target!r} (configured: {', '.join(d.name for d in current.destinations)})")
        require_secrets(chosen)  # exit 2 naming each unset variable, before any probe is written
        # Probe where copies go: under the literal start of the key template ("videosdk/" of
        # s3://b/videosdk/{meetingId}/), so a policy limited to that prefix passes as copies do.
        targets = [(d.name, d.open(), d.template.fixed_prefix) for d in chosen]
    rows: list[dict[str, Any]] = []
    for name, provider, under in targets:
        report = provider.check(under)
        rows += [{"destination": name, "url": report.url, "step": s.name, "result": "pass" if s.ok else "FAIL",
                  "message": s.message} for s in report.steps]
    emit(rows, rows, ("destination", "step", "result", "message"))
    return OK if all(r["result"] == "pass" for r in rows) else FOUND_PROBLEMS


@verb("render-path", short_help="print the object key each file of a saved webhook would get",
      help="render a destination's key template for every file of EVENT.json, using the current "
           "time for the date parts; exit 1 if a key cannot be made")
@click.option("--dest", metavar="NAME", help="destination name from the config (needed when there are several)")
@click.argument("event", metavar="EVENT.json")
def render_path(dest: str | None, event: str) -> int:
    from archiver.intake.events import EventValidationError, parse_event
    from archiver.intake.record import plan_jobs
    from archiver.ledger.store import utcnow

    current = settings()
    names = ", ".join(d.name for d in current.destinations)
    if dest is None and len(current.destinations) != 1:
        return fail(f"--dest NAME is needed: {len(current.destinations)} destinations are configured ({names})")
    try:
        destination = current.destination(dest) if dest else current.destinations[0]
    except KeyError:
        return fail(f"no destination {dest!r} (configured: {names})")
    try:
        parsed = parse_event(Path(event).read_bytes())
    except (OSError, EventValidationError) as exc:
        return fail(f"{event}: {exc}")
    if not parsed.files:
        emit({"webhook_type": parsed.webhook_type, "keys": []}, summary=f"{parsed.webhook_type}: no file to archive")
        return OK
    failed, keys = 0, []
    for file in parsed.files:
        jobs = plan_jobs(file, [destination], received_at=utcnow())
        if not jobs:
            line, key, error = f"{file.file_path}: not archived to {destination.name} (its events filter)", None, None
        elif jobs[0].error:
            failed += 1
            line, key, error = f"{file.file_path}: {jobs[0].error}", None, jobs[0].error
        else:
            key, error = jobs[0].object_key, None
            line = f"{destination.provider_url.rstrip('/')}/{key}"
        keys.append({"file_path": file.file_path, "destination": destination.name, "key": key, "error": error})
        if not state().json:
            print(line)
    if state().json:
        emit({"webhook_type": parsed.webhook_type, "keys": keys})
    return FOUND_PROBLEMS if failed else OK


def register(group: click.Group) -> None:
    group.add_command(check)
    group.add_command(render_path)
