"""Verbs that run the service: serve (receiver), worker, beat, up (all three), db upgrade."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from archiver.cli.common import OK, settings_of
from archiver.config import Settings
from archiver.destinations import require_secrets
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.private_files import private_dir
from archiver.runtime import Runtime

QUEUES = "events,archive,maintenance"


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    before, after = upgrade(create_ledger_engine(settings_of(args).database_url))
    print(f"ledger schema: {before or 'empty'} -> {after}")
    return OK


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from archiver.celery_app import Publisher, create_app
    from archiver.receiver import create_receiver

    settings = settings_of(args)
    runtime = Runtime.create(settings)
    app = create_receiver(settings, runtime.ledger, publisher=Publisher(create_app(settings)))
    host, port = args.host or settings.receiver.host, args.port or settings.receiver.port
    print(f"archiver receiver: POST http://{host}:{port}{settings.receiver.path} "
          f"(signatures {'verified' if settings.videosdk.verify_signatures else 'NOT verified'})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return OK


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    require_secrets(settings.destinations)  # the worker opens every destination: refuse to start without them
    Runtime.create(settings)  # refuse to start against a schema that is behind
    if args.metrics_port:
        # Must be set before prometheus_client is imported, so every pool process writes its own
        # files and the main process serves their sum.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="archiver-metrics-"))
        from archiver.metrics import serve_worker_metrics

        serve_worker_metrics(args.metrics_port, args.metrics_host)
    from archiver.celery_app import app

    argv = ["worker", "-Q", args.queues, "-l", "INFO", "--without-gossip", "--without-mingle"]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    app.worker_main(argv)
    return OK


def cmd_beat(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    Runtime.create(settings)
    from archiver.celery_app import app

    schedule = Path(args.schedule or ".archiver/celerybeat-schedule")
    private_dir(schedule.parent)
    os.umask(0o077)  # the schedule (shelve files, names chosen by dbm) is created owner-only
    app.Beat(schedule=str(schedule), loglevel="INFO").run()
    return OK


def _embedded(settings: Settings) -> bool:
    return settings.database_url.startswith("sqlite") and settings.broker_url.startswith("sqla+sqlite")


def describe(settings: Settings, host: str, port: int) -> str:
    dests = "\n".join(f"    {d.name}: {d.url}" for d in settings.destinations)
    mode = ("embedded (SQLite broker and ledger: one machine only)" if _embedded(settings)
            else "external broker/ledger")
    return (f"archiver up ({mode})\n"
            f"  receiver  POST http://{host}:{port}{settings.receiver.path}  (/healthz /readyz /metrics)\n"
            f"  broker    {_hide(settings.broker_url)}\n  ledger    {_hide(settings.database_url)}\n"
            f"  copies go to:\n{dests}\n"
            f"  signatures {'verified' if settings.videosdk.verify_signatures else 'NOT verified'}; "
            "Ctrl-C stops everything; jobs in flight finish or go back to the queue")


def _hide(url: str) -> str:
    from archiver.redaction import mask_url

    return mask_url(url)


def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if settings.database_url.startswith("sqlite"):
        upgrade(create_ledger_engine(settings.database_url))  # embedded ledger: created on first run
    Runtime.create(settings)
    private_dir(".archiver")
    host, port = args.host or settings.receiver.host, args.port or settings.receiver.port
    print(describe(settings, host, port), flush=True)
    me = [sys.executable, "-m", "archiver.cli"]
    children = [
        subprocess.Popen([*me, "serve", "--host", host, "--port", str(port)]),
        subprocess.Popen([*me, "worker", "--concurrency", str(args.concurrency)]),
        subprocess.Popen([*me, "beat"]),
    ]
    return _supervise(children)


def _supervise(children: list[subprocess.Popen[bytes]]) -> int:
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    for child in children:  # SIGTERM: the worker finishes or re-queues its task (warm shutdown)
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=90)
        except subprocess.TimeoutExpired:
            child.kill()
    failed = [c.args[3] for c in children if c.returncode not in (0, -signal.SIGTERM, 130)]
    if failed and not stopping:
        print(f"archiver up: {', '.join(failed)} stopped unexpectedly; everything was shut down", file=sys.stderr)
        return 1
    print("archiver up: stopped", flush=True)
    return OK


def register(verbs: Any) -> None:
    serve = verbs.add_parser("serve", help="run the webhook receiver (HTTP)",
                             description="Serve POST [receiver] path for VideoSDK webhooks, plus /healthz, "
                                         "/readyz, /metrics and /openapi.json.")
    serve.add_argument("--host", help="address to listen on (default: [receiver] host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: [receiver] port, 8000)")
    serve.set_defaults(func=cmd_serve)

    worker = verbs.add_parser("worker", help="run a Celery worker that copies recordings",
                              description="Consume the events, archive and maintenance queues. Run as many as "
                                          "you like, on as many machines as you like.")
    worker.add_argument("--concurrency", type=int, help="pool processes (default: number of CPUs)")
    worker.add_argument("--queues", default=QUEUES, help=f"comma-separated queues (default {QUEUES})")
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus metrics of all pool processes here")
    worker.add_argument("--metrics-host", default="127.0.0.1",
                        help="address the metrics listen on (default 127.0.0.1; 0.0.0.0 for a scraper on "
                             "another host or container)")
    worker.set_defaults(func=cmd_worker)

    beat = verbs.add_parser("beat", help="run the scheduler (reconcile, retention, stale-job sweep)",
                            description="Run exactly one beat per deployment.")
    beat.add_argument("--schedule", help="schedule state file (default .archiver/celerybeat-schedule)")
    beat.set_defaults(func=cmd_beat)

    up = verbs.add_parser("up", help="run receiver, worker and scheduler together (what `make run` does)",
                          description="Start serve, worker and beat as child processes and supervise them. "
                                      "On embedded defaults (no archiver.toml) the broker and the ledger are "
                                      "SQLite files under .archiver/ and copies go to ./archive/.")
    up.add_argument("--host", help="receiver address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="receiver port (default 8000)")
    up.add_argument("--concurrency", type=int, default=2, help="worker pool processes (default 2)")
    up.set_defaults(func=cmd_up)

    db = verbs.add_parser("db", help="ledger database maintenance")
    db_verbs = db.add_subparsers(dest="db_verb", required=True, metavar="DB_VERB")
    db_upgrade = db_verbs.add_parser("upgrade", help="create or migrate the ledger schema to this version")
    db_upgrade.set_defaults(func=cmd_db_upgrade)
