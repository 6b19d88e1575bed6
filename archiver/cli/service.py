"""Verbs that run the service: serve (receiver), worker, beat (`up` is in archiver.cli.up, db in archiver.cli.db).

Every process either works or exits. At start each one creates what the defaults need (the folder of
a SQLite broker or ledger, an empty embedded ledger's schema) and checks its broker and ledger; one
it cannot use ends it at once with one line on stderr and exit 2 (archiver.preflight). Stopping is
bounded: SIGTERM ends serve and beat at once, the worker within --stop-grace + 20 s
(archiver.worker.lifecycle), and `up` within that plus UP_MARGIN.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from archiver.cli.app import OK, settings, state, verb
from archiver.cli.common import Seconds
from archiver.cli.configuration import whereabouts
from archiver.ledger.database import create_ledger_engine
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


def _banner(data: dict[str, object], text: str) -> None:
    """What a service prints once it is about to serve: a JSON object under --json, else the text."""
    if state().json:
        print(json.dumps(data), flush=True)
    else:  # a log line, not print(): off a terminal everything a service writes is a JSON line
        log.info("%s", text)


def warn(settings: Settings) -> None:
    """The configuration's warnings (e.g. a misspelt ARCHIVER_* variable, which is otherwise ignored), as
    log lines: off a terminal everything a service writes is a JSON line."""
    for line in settings.warnings:
        log.warning("warning: %s", line)


def _processes(_ctx: object, _param: object, value: int) -> int:
    if not 1 <= value <= 64:
        raise click.BadParameter(f"must be a whole number from 1 to 64, not {value}")
    return value


@verb("serve", help="run the webhook receiver (HTTP): POST [receiver] path for VideoSDK webhooks, "
                             "plus /healthz, /readyz, /metrics and /openapi.json")
@click.option("--host", help="address to listen on (default: [receiver] host, 127.0.0.1)")
@click.option("--port", type=int, help="port (default: [receiver] port, 8000)")
@click.option("--processes", type=int, default=1, show_default=True, callback=_processes, metavar="N",
              help="receiver processes sharing the port (about one per core)")
def serve(host: str | None, port: int | None, processes: int) -> int:
    if processes > 1:
        from archiver.intake.processes import prepare_metrics_folder

        prepare_metrics_folder()  # before prometheus_client is imported below
    from archiver.intake.overload import check_descriptors
    from archiver.intake.receiver import create_receiver
    from archiver.intake.server import serve_receiver
    from archiver.worker.app import Publisher, create_app

    current = settings()
    host, port = host or current.receiver.host, port or current.receiver.port
    check_port(host, port)  # a busy port is the first thing said, in one line
    preflight(current)
    verified = current.videosdk.verify_signatures
    warn(current)
    where = whereabouts(current)
    _banner({"receiver": f"http://{host}:{port}{current.receiver.path}", "signatures_verified": verified,
             "processes": processes, "config_file": current.origin, "ledger": where[1].split(": ", 1)[1]},
            f"archiver receiver: POST http://{host}:{port}{current.receiver.path} "
            f"(signatures {'verified' if verified else 'NOT verified'}"
            f"{f', {processes} processes' if processes > 1 else ''}); " + "; ".join(where))
    if warning := check_descriptors(current.receiver.max_connections):
        log.warning("%s", warning)
    if processes > 1:
        from archiver.intake.processes import serve_processes

        def make_app() -> Any:  # in each child, after the fork: its own ledger pool and broker connection
            runtime = Runtime.create(current)
            return create_receiver(current, runtime.ledger, publisher=Publisher(create_app(current)),
                                   shared_metrics=True)

        return serve_processes(make_app, current.receiver, host, port, processes=processes,
                               stop_seconds=SERVE_STOP_SECONDS)
    runtime = Runtime.create(current)
    app = create_receiver(current, runtime.ledger, publisher=Publisher(create_app(current)))
    # uvicorn stops on SIGTERM/SIGINT; without a timeout it would wait for every open request.
    serve_receiver(app, current.receiver, host, port, stop_seconds=SERVE_STOP_SECONDS)
    return OK


@verb("worker", help="run a Celery worker that copies recordings: consume the events, archive and "
                              "maintenance queues; run as many as you like, on as many machines as you like")
@click.option("--concurrency", type=int, help="pool processes (default: number of CPUs)")
@click.option("--queues", default=QUEUES, show_default=True, help="comma-separated queues")
@click.option("--metrics-port", type=int,
              help="serve Prometheus metrics of all pool processes, and the ledger's backlog, here")
@click.option("--stop-grace", type=Seconds(), default=STOP_GRACE, show_default=True,
              help=f"after SIGTERM, copies in flight get this long to finish before they are interrupted and go "
                   f"back to the queue; the process is gone at most {ABORT_SECONDS:g} s later")
@click.option("--broker-timeout", type=Seconds(), default=BROKER_TIMEOUT, show_default=True,
              help="exit 1 when the broker has been unreachable this long, so a supervisor restarts the worker")
@click.option("--name", help="Celery node name, unique per worker (default archiver-<pid>@<host>)")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="address the metrics listen on (0.0.0.0 for a scraper on another host or container)")
def worker(concurrency: int | None, queues: str, metrics_port: int | None, stop_grace: float,
           broker_timeout: float, name: str | None, metrics_host: str) -> int:
    current = settings()
    require_secrets(current.destinations)  # the worker opens every destination: refuse to start without them
    preflight(current)
    log.info("archiver worker: %s", "; ".join(whereabouts(current)))
    warn(current)
    Runtime.create(current)  # the allocator setting the pool processes inherit
    if metrics_port:
        # Must be set before prometheus_client is imported, so every pool process writes its own
        # files and the main process serves their sum.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="archiver-metrics-"))
        from archiver.ledger.backlog import read_backlog
        from archiver.observability.ledger_gauges import LedgerGauges
        from archiver.observability.metrics import serve_worker_metrics

        # Unpooled: the pool processes are forked after this, and must not inherit an open connection.
        engine = create_ledger_engine(current.database_url, pooled=False)
        names = [d.name for d in current.destinations]
        serve_worker_metrics(metrics_port, metrics_host, LedgerGauges(lambda: read_backlog(engine, names)))
    from archiver.worker import lifecycle as worker_signals
    from archiver.worker.app import app

    worker_signals.configure(stop_grace=stop_grace, broker_timeout=broker_timeout)
    # Celery's own cold path (SIGQUIT, a second Ctrl-C) waits this long before it cancels tasks.
    app.conf.worker_soft_shutdown_timeout = stop_grace
    # A node name of its own: two workers named celery@<host> (Celery's default) collide on RabbitMQ's
    # exclusive control queue, and the second dies at start with ResourceLocked.
    node = name or f"archiver-{os.getpid()}@%h"
    argv = ["worker", "-Q", queues, "-l", "INFO", "--without-gossip", "--without-mingle", "-n", node]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)
    return worker_signals.exit_code()  # worker_main drops it: 1 after a lost broker


@verb("beat", help="run the scheduler (reconcile, retention, stale-job sweep); exactly one per "
                            "deployment")
@click.option("--schedule", metavar="FILE", help="schedule state file (default .archiver/celerybeat-schedule)")
def beat(schedule: str | None) -> int:
    current = settings()
    preflight(current)
    log.info("archiver beat: %s", "; ".join(whereabouts(current)))
    warn(current)
    path = Path(schedule or ".archiver/celerybeat-schedule")
    try:
        private_dir(path.parent)
    except OSError as exc:
        raise StartupError(f"beat schedule {path}: cannot create the folder {path.parent}: "
                           f"{exc.strerror or exc}; pass --schedule FILE in a writable folder") from None
    from archiver.worker.app import app

    os.umask(0o077)  # the schedule (shelve files, names chosen by dbm) is created owner-only
    quiet = json_wanted()  # off a terminal, one log line instead of Celery's banner (print()s)
    if quiet:
        log.info("beat starting: schedule %s, broker %s", path, mask_url(str(app.conf.broker_url)))
    # Celery beat turns SIGTERM/SIGINT into SystemExit at once (celery/apps/beat.py install_sync_handler).
    app.Beat(schedule=str(path), loglevel="INFO", quiet=quiet).run()
    return OK


def _embedded(settings: Settings) -> bool:
    return settings.database_url.startswith("sqlite") and settings.broker_url.startswith("sqla+sqlite")


def describe(settings: Settings, host: str, port: int, stop_grace: float = STOP_GRACE) -> str:
    """The `archiver up` banner: receiver URL, broker and ledger (passwords hidden), destinations."""
    dests = "\n".join(f"    {d.name}: {d.url}" for d in settings.destinations)
    mode = ("embedded (SQLite broker and ledger: one machine only)" if _embedded(settings)
            else "external broker/ledger")
    return (f"archiver up ({mode})\n"
            f"  receiver  POST http://{host}:{port}{settings.receiver.path}  (/healthz /readyz /metrics)\n"
            f"  broker    {mask_url(settings.broker_url)}\n  ledger    {mask_url(settings.database_url)}\n"
            f"  config    {settings.origin if settings.origin != 'defaults' else 'none (built-in defaults)'}\n"
            f"  copies go to:\n{dests}\n"
            f"  signatures {'verified' if settings.videosdk.verify_signatures else 'NOT verified'}; "
            f"Ctrl-C stops everything within {up_bound(stop_grace):g} s; a copy still running after "
            f"{stop_grace:g} s goes back to the queue")


def up_bound(stop_grace: float) -> float:
    return stop_grace + ABORT_SECONDS + UP_MARGIN


def register(group: click.Group) -> None:
    for command in (serve, worker, beat):
        group.add_command(command)
