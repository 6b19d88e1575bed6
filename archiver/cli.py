"""The `archiver` command: runbook verbs for operators. Exit codes: 0 ok, 1 failures found, 2 usage/config."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archiver.config import ConfigError, Settings, load_settings
from archiver.ledger.database import LedgerError, create_ledger_engine, upgrade
from archiver.logs import configure_logging
from archiver.runtime import Runtime
from providers import ConfigurationError, open_provider

DEFAULT_DESTINATION = "file:./archive/"


def _option(text: str) -> tuple[str, Any]:
    """`-o key=value`; the value is read as a TOML value when it is one (8, true, "x"), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def cmd_check(args: argparse.Namespace) -> int:
    try:
        provider = open_provider(args.url, **dict(args.option))
    except ConfigurationError as exc:
        print(f"archiver check: {exc}", file=sys.stderr)
        return 2
    report = provider.check()
    if args.json:
        print(json.dumps({"url": report.url, "ok": report.ok,
                          "steps": [step.__dict__ for step in report.steps]}, indent=2))
    else:
        print(report)
    return 0 if report.ok else 1


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    before, after = upgrade(create_ledger_engine(settings.database_url))
    print(f"ledger schema: {before or 'empty'} -> {after}")
    return 0


STATUS_COLUMNS = ("job_id", "destination", "meeting_id", "participant_id", "state", "attempts", "bytes",
                  "object_key", "error")


def cmd_status(args: argparse.Namespace) -> int:
    runtime = Runtime.create(_settings(args))
    rows = [r.to_json() for r in runtime.ledger.jobs(state=args.state, meeting_id=args.meeting)]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(format_table(rows, STATUS_COLUMNS))
    return 1 if any(r["state"] == "failed" for r in rows) else 0


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from archiver.celery_app import Publisher, create_app
    from archiver.receiver import create_receiver

    settings = _settings(args)
    runtime = Runtime.create(settings)
    app = create_receiver(settings, runtime.ledger, publisher=Publisher(create_app(settings)))
    host, port = args.host or settings.receiver.host, args.port or settings.receiver.port
    print(f"archiver receiver: POST http://{host}:{port}{settings.receiver.path} "
          f"(signatures {'verified' if settings.videosdk.verify_signatures else 'NOT verified'}); "
          f"ledger {runtime.ledger.engine.url.render_as_string(hide_password=True)}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    return 0


def cmd_render_path(args: argparse.Namespace) -> int:
    from archiver.events import EventValidationError, parse_event
    from archiver.intake import plan_jobs
    from archiver.ledger.store import utcnow

    settings = _settings(args)
    try:
        destination = settings.destination(args.dest)
    except KeyError:
        names = ", ".join(d.name for d in settings.destinations)
        print(f"archiver render-path: no destination {args.dest!r} (configured: {names})", file=sys.stderr)
        return 2
    try:
        event = parse_event(Path(args.event).read_bytes())
    except (OSError, EventValidationError) as exc:
        print(f"archiver render-path: {args.event}: {exc}", file=sys.stderr)
        return 2
    if not event.files:
        print(f"{event.webhook_type}: no file to archive")
        return 0
    failed = 0
    for file in event.files:
        [job] = plan_jobs(file, [destination], received_at=utcnow()) or [None]
        if job is None:
            print(f"{file.file_path}: not archived to {destination.name} (events filter)")
        elif job.error:
            failed += 1
            print(f"{file.file_path}: {job.error}")
        else:
            print(f"{destination.provider_url.rstrip('/')}/{job.object_key}")
    return 1 if failed else 0


def cmd_up(args: argparse.Namespace) -> int:
    # The receiver, worker and scheduler arrive with the pipeline and intake work; until then `up`
    # proves the embedded default destination is writable, which is what they will write to.
    print(f"archiver {__import__('archiver').__version__}: embedded defaults, destination {DEFAULT_DESTINATION}")
    report = open_provider(DEFAULT_DESTINATION).check()
    print(report)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archiver", description=__doc__)
    parser.add_argument("--config", help="path of archiver.toml (default: $ARCHIVER_CONFIG or ./archiver.toml)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    status = verbs.add_parser("status", help="the copy jobs in the ledger, as a table or JSON",
                              description="List copy jobs. Exit 1 when any listed job has failed.")
    status.add_argument("--state", choices=("pending", "running", "succeeded", "failed"))
    status.add_argument("--meeting", help="only this meeting (room) id")
    status.add_argument("--json", action="store_true", help="print a JSON array")
    status.set_defaults(func=cmd_status)

    serve = verbs.add_parser("serve", help="run the webhook receiver (HTTP)",
                             description="Serve POST [receiver] path for VideoSDK webhooks, plus /healthz, "
                                         "/readyz, /metrics and /openapi.json.")
    serve.add_argument("--host", help="address to listen on (default: [receiver] host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: [receiver] port, 8000)")
    serve.set_defaults(func=cmd_serve)

    render = verbs.add_parser("render-path", help="print the object key each file of a saved webhook would get",
                              description="Render a destination's key template for every file of EVENT.json, "
                                          "using the current time for the date parts. Exit 1 if a key "
                                          "cannot be made.")
    render.add_argument("--dest", required=True, help="destination name from the config")
    render.add_argument("event", help="a saved webhook body (JSON file)")
    render.set_defaults(func=cmd_render_path)

    db = verbs.add_parser("db", help="ledger database maintenance")
    db_verbs = db.add_subparsers(dest="db_verb", required=True, metavar="DB_VERB")
    db_upgrade = db_verbs.add_parser("upgrade", help="create or migrate the ledger schema to this version")
    db_upgrade.set_defaults(func=cmd_db_upgrade)

    check = verbs.add_parser("check", help="probe a destination: write, read back, compare, delete",
                             description="Write a small probe object under the destination's prefix, read it "
                                         "back, compare and delete it. Exit 1 if any step fails.")
    check.add_argument("url", help="s3://bucket/prefix, az://container/prefix, gs://bucket/prefix, file:dir")
    check.add_argument("-o", "--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                       help="a provider option, e.g. -o region=eu-west-1 (repeatable)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=cmd_check)

    up = verbs.add_parser("up", help="run the service on embedded defaults (what `make run` does)")
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config:  # the worker pool, the Celery app and child processes read the same file
        os.environ["ARCHIVER_CONFIG"] = args.config
    configure_logging()
    try:
        return int(args.func(args))
    except (ConfigError, ConfigurationError, LedgerError) as exc:
        print(f"archiver {args.verb}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
