"""Verbs about destinations: check (probe), render-path (what key a file would get)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from archiver.cli.common import FOUND_PROBLEMS, OK, USAGE, format_table, provider_option, settings_of
from archiver.settings.destinations import require_secrets
from providers import open_provider


def cmd_check(args: argparse.Namespace) -> int:
    if args.target and ("://" in args.target or args.target.startswith("file:")):
        targets = [(args.target, open_provider(args.target, **dict(args.option)), "")]
        targets[0][1].resolve_secrets()
    else:
        settings = settings_of(args)
        chosen = [d for d in settings.destinations if args.target in (None, d.name)]
        if not chosen:
            print(f"archiver check: no destination {args.target!r}", file=sys.stderr)
            return USAGE
        require_secrets(chosen)  # exit 2 naming each unset variable, before any probe is written
        # Probe where copies go: under the literal start of the key template ("videosdk/" of
        # s3://b/videosdk/{meetingId}/), so a policy limited to that prefix passes as copies do.
        targets = [(d.name, d.open(), d.template.fixed_prefix) for d in chosen]
    rows: list[dict[str, Any]] = []
    for name, provider, under in targets:
        report = provider.check(under)
        rows += [{"destination": name, "url": report.url, "step": s.name, "result": "pass" if s.ok else "FAIL",
                  "message": s.message} for s in report.steps]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, ("destination", "step", "result", "message")))
    return OK if all(r["result"] == "pass" for r in rows) else FOUND_PROBLEMS


def cmd_render_path(args: argparse.Namespace) -> int:
    from archiver.intake.events import EventValidationError, parse_event
    from archiver.intake.record import plan_jobs
    from archiver.ledger.store import utcnow

    settings = settings_of(args)
    try:
        destination = settings.destination(args.dest)
    except KeyError:
        names = ", ".join(d.name for d in settings.destinations)
        print(f"archiver render-path: no destination {args.dest!r} (configured: {names})", file=sys.stderr)
        return USAGE
    try:
        event = parse_event(Path(args.event).read_bytes())
    except (OSError, EventValidationError) as exc:
        print(f"archiver render-path: {args.event}: {exc}", file=sys.stderr)
        return USAGE
    if not event.files:
        print(f"{event.webhook_type}: no file to archive")
        return OK
    failed = 0
    for file in event.files:
        jobs = plan_jobs(file, [destination], received_at=utcnow())
        if not jobs:
            print(f"{file.file_path}: not archived to {destination.name} (its events filter)")
        elif jobs[0].error:
            failed += 1
            print(f"{file.file_path}: {jobs[0].error}")
        else:
            print(f"{destination.provider_url.rstrip('/')}/{jobs[0].object_key}")
    return FOUND_PROBLEMS if failed else OK


def register(verbs: Any) -> None:
    check = verbs.add_parser(
        "check", help="probe destinations: write, read back, compare, delete",
        description="For each configured destination (or the one named, or a storage URL), write a small probe "
                    "object under its prefix, read it back, compare and delete it. Exit 1 if any step fails.")
    check.add_argument("target", nargs="?", help="destination name, or a URL such as s3://bucket/prefix")
    check.add_argument("-o", "--option", type=provider_option, action="append", default=[], metavar="KEY=VALUE",
                       help="a provider option when TARGET is a URL, e.g. -o region=eu-west-1 (repeatable)")
    check.add_argument("--json", action="store_true", help="print the steps as JSON")
    check.set_defaults(func=cmd_check)

    render = verbs.add_parser(
        "render-path", help="print the object key each file of a saved webhook would get",
        description="Render a destination's key template for every file of EVENT.json, using the current time "
                    "for the date parts. Exit 1 if a key cannot be made.")
    render.add_argument("--dest", required=True, help="destination name from the config")
    render.add_argument("event", help="a saved webhook body (JSON file)")
    render.set_defaults(func=cmd_render_path)
