"""Verbs that run the service: serve (receiver), worker, beat, up (all three), db upgrade.

Every process either works or exits. At start each one creates what the defaults need (the folder of
a SQLite broker or ledger, an empty embedded ledger's schema) and checks its broker and ledger; one
it cannot use ends it at once with one line on stderr and exit 2 (archiver.preflight). Stopping is
bounded: SIGTERM ends serve and beat at once, the worker within --stop-grace + 20 s
(archiver.worker.lifecycle), and `up` within that plus UP_MARGIN.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from archiver.cli.common import OK, settings_of
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.observability.logs import json_wanted
from archiver.observability.redaction import mask_url
from archiver.preflight import StartupError, check_broker, check_ledger, check_port
from archiver.private_files import private_dir
from archiver.runtime import Runtime
from archiver.settings.config import Settings
from archiver.settings.destinations import require_secrets

QUEUES = "events,archive,maintenance"
# The worker's bounds (archiver.worker.lifecycle defines and enforces them; repeated here so that
# `archiver --help` does not import Celery). tests/test_lifecycle.py checks they agree.
STOP_GRACE, ABORT_SECONDS, BROKER_TIMEOUT = 60.0, 20.0, 120.0
SERVE_STOP_SECONDS = 5  # requests still open this long after SIGTERM are cut off
UP_MARGIN = 10.0  # `up` waits for its children the worker's bound plus this, then kills what is left
log = logging.getLogger("archiver.service")


def preflight(settings: Settings) -> None:
    """Create what the defaults need and refuse to start (StartupError, one line) on a broker or ledger
    that cannot be used. An empty embedded (SQLite) ledger is created here; any other must be current."""
    from archiver.worker.app import Publisher, create_app

    check_ledger(settings)
    check_broker(settings.broker_url, Publisher(create_app(settings)).probe)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    check_ledger(settings, create_embedded=False, require_current=False)  # one line if it cannot be opened
    before, after = upgrade(create_ledger_engine(settings.database_url))
    print(f"ledger schema: {before or 'empty'} -> {after}")
    return OK


def cmd_serve(args: argparse.Namespace) -> int:
    from archiver.intake.overload import check_descriptors
    from archiver.intake.receiver import create_receiver
    from archiver.intake.server import serve_receiver
    from archiver.worker.app import Publisher, create_app

    settings = settings_of(args)
    host, port = args.host or settings.receiver.host, args.port or settings.receiver.port
    check_port(host, port)  # a busy port is the first thing said, in one line
    preflight(settings)
    runtime = Runtime.create(settings)
    app = create_receiver(settings, runtime.ledger, publisher=Publisher(create_app(settings)))
    # Log lines, not print(): off a terminal everything the receiver writes is a JSON line.
    log.info("archiver receiver: POST http://%s:%s%s (signatures %s)", host, port, settings.receiver.path,
             "verified" if settings.videosdk.verify_signatures else "NOT verified")
    if warning := check_descriptors(settings.receiver.max_connections):
        log.warning("%s", warning)
    # uvicorn stops on SIGTERM/SIGINT; without a timeout it would wait for every open request.
    serve_receiver(app, settings.receiver, host, port, stop_seconds=SERVE_STOP_SECONDS)
    return OK


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    require_secrets(settings.destinations)  # the worker opens every destination: refuse to start without them
    preflight(settings)
    Runtime.create(settings)  # the allocator setting the pool processes inherit
    if args.metrics_port:
        # Must be set before prometheus_client is imported, so every pool process writes its own
        # files and the main process serves their sum.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="archiver-metrics-"))
        from archiver.observability.metrics import serve_worker_metrics

        serve_worker_metrics(args.metrics_port, args.metrics_host)
    from archiver.worker import lifecycle as worker_signals
    from archiver.worker.app import app

    worker_signals.configure(stop_grace=args.stop_grace, broker_timeout=args.broker_timeout)
    # Celery's own cold path (SIGQUIT, a second Ctrl-C) waits this long before it cancels tasks.
    app.conf.worker_soft_shutdown_timeout = args.stop_grace
    # A node name of its own: two workers named celery@<host> (Celery's default) collide on RabbitMQ's
    # exclusive control queue, and the second dies at start with ResourceLocked.
    name = args.name or f"archiver-{os.getpid()}@%h"
    argv = ["worker", "-Q", args.queues, "-l", "INFO", "--without-gossip", "--without-mingle", "-n", name]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    app.worker_main(argv)
    return worker_signals.exit_code()  # worker_main drops it: 1 after a lost broker


def cmd_beat(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    preflight(settings)
    schedule = Path(args.schedule or ".archiver/celerybeat-schedule")
    try:
        private_dir(schedule.parent)
    except OSError as exc:
        raise StartupError(f"beat schedule {schedule}: cannot create the folder {schedule.parent}: "
                           f"{exc.strerror or exc}; pass --schedule FILE in a writable folder") from None
    from archiver.worker.app import app

    os.umask(0o077)  # the schedule (shelve files, names chosen by dbm) is created owner-only
    quiet = json_wanted()  # off a terminal, one log line instead of Celery's banner (print()s)
    if quiet:
        log.info("beat starting: schedule %s, broker %s", schedule, mask_url(str(app.conf.broker_url)))
    # Celery beat turns SIGTERM/SIGINT into SystemExit at once (celery/apps/beat.py install_sync_handler).
    app.Beat(schedule=str(schedule), loglevel="INFO", quiet=quiet).run()
    return OK


def _embedded(settings: Settings) -> bool:
    return settings.database_url.startswith("sqlite") and settings.broker_url.startswith("sqla+sqlite")


def describe(settings: Settings, host: str, port: int, stop_grace: float = STOP_GRACE) -> str:
    dests = "\n".join(f"    {d.name}: {d.url}" for d in settings.destinations)
    mode = ("embedded (SQLite broker and ledger: one machine only)" if _embedded(settings)
            else "external broker/ledger")
    return (f"archiver up ({mode})\n"
            f"  receiver  POST http://{host}:{port}{settings.receiver.path}  (/healthz /readyz /metrics)\n"
            f"  broker    {_hide(settings.broker_url)}\n  ledger    {_hide(settings.database_url)}\n"
            f"  copies go to:\n{dests}\n"
            f"  signatures {'verified' if settings.videosdk.verify_signatures else 'NOT verified'}; "
            f"Ctrl-C stops everything within {_up_bound(stop_grace):g} s; a copy still running after "
            f"{stop_grace:g} s goes back to the queue")


def _hide(url: str) -> str:
    from archiver.observability.redaction import mask_url

    return mask_url(url)


def _up_bound(stop_grace: float) -> float:
    return stop_grace + ABORT_SECONDS + UP_MARGIN


def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    host, port = args.host or settings.receiver.host, args.port or settings.receiver.port
    check_port(host, port)  # before any child starts: a busy port is not buried among worker banners
    if settings.database_url.startswith("sqlite"):
        check_ledger(settings, require_current=False)  # one line if the file cannot be opened
        upgrade(create_ledger_engine(settings.database_url))  # embedded ledger: created/upgraded on first run
    preflight(settings)
    private_dir(".archiver")
    print(describe(settings, host, port, args.stop_grace), flush=True)
    me = [sys.executable, "-m", "archiver.cli"]
    grace = f"{args.stop_grace:g}"
    children = [_child([*me, "serve", "--host", host, "--port", str(port)]),
                _child([*me, "worker", "--concurrency", str(args.concurrency), "--stop-grace", grace]),
                _child([*me, "beat"])]
    return _supervise(children, _up_bound(args.stop_grace))


def _child(argv: list[str]) -> subprocess.Popen[bytes]:
    # Its own process group: a terminal's Ctrl-C reaches only `up`, which forwards one SIGTERM, and
    # at the deadline the whole group (the worker's pool too) can be killed.
    return subprocess.Popen(argv, process_group=0, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when `up` dies, even by SIGKILL (Linux prctl)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _verb(child: subprocess.Popen[bytes]) -> str:
    """The verb a child runs (`_child` got [python, -m, archiver.cli, VERB, ...])."""
    return str(cast("list[str]", child.args)[3])


def _supervise(children: list[subprocess.Popen[bytes]], bound: float) -> int:
    """Run until a signal or a child's exit; then SIGTERM every child and wait `bound` seconds at
    most, SIGKILLing what is left. 0 after a requested stop, 1 if a child stopped on its own or had
    to be killed."""
    asked: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _: asked.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, _: asked.append(signum))
    while not asked and all(c.poll() is None for c in children):
        time.sleep(0.2)
    died = [c for c in children if c.poll() is not None]
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + bound
    while any(c.poll() is None for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = [c for c in children if c.poll() is None]
    for child in killed:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    if died and not asked:
        names = ", ".join(f"{_verb(c)} (exit {c.returncode})" for c in died)
        print(f"archiver up: {names} stopped unexpectedly; everything was shut down", file=sys.stderr, flush=True)
        return 1
    if killed:
        print(f"archiver up: {', '.join(_verb(c) for c in killed)} still running {bound:g} s after "
              "SIGTERM; killed", file=sys.stderr, flush=True)
        return 1
    print("archiver up: stopped", flush=True)
    return OK


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


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
    worker.add_argument("--stop-grace", type=_seconds, default=STOP_GRACE, metavar="SECONDS",
                        help=f"after SIGTERM, copies in flight get this long to finish before they are "
                             f"interrupted and go back to the queue; the process is gone at most "
                             f"{ABORT_SECONDS:g} s later (default {STOP_GRACE:g})")
    worker.add_argument("--broker-timeout", type=_seconds, default=BROKER_TIMEOUT, metavar="SECONDS",
                        help=f"exit 1 when the broker has been unreachable this long, so a supervisor "
                             f"restarts the worker (default {BROKER_TIMEOUT:g})")
    worker.add_argument("--name", help="Celery node name, unique per worker (default archiver-<pid>@<host>)")
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
    up.add_argument("--stop-grace", type=_seconds, default=STOP_GRACE, metavar="SECONDS",
                    help=f"the worker's --stop-grace (default {STOP_GRACE:g}); `up` exits at most "
                         f"{ABORT_SECONDS + UP_MARGIN:g} s after it")
    up.set_defaults(func=cmd_up)

    db = verbs.add_parser("db", help="ledger database maintenance")
    db_verbs = db.add_subparsers(dest="db_verb", required=True, metavar="DB_VERB")
    db_upgrade = db_verbs.add_parser("upgrade", help="create or migrate the ledger schema to this version")
    db_upgrade.set_defaults(func=cmd_db_upgrade)
