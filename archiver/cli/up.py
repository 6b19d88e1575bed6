"""`archiver up`: serve, worker and beat as child processes of one supervisor (what `make run` does).

On embedded defaults (no archiver.toml) the broker and the ledger are SQLite files under .archiver/ and
copies go to ./archive/. Stopping is bounded: `up` exits at most up_bound(--stop-grace) after SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import cast

import click

from archiver.cli.app import OK, settings, state, verb
from archiver.cli.common import Seconds
from archiver.cli.service import ABORT_SECONDS, STOP_GRACE, UP_MARGIN, describe, preflight, up_bound, warn
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.observability.redaction import mask_url
from archiver.preflight import check_ledger, check_port
from archiver.private_files import private_dir


@verb("up", help="run receiver, worker and scheduler together (what `make run` does): on embedded defaults "
                 "(no archiver.toml) the broker and the ledger are SQLite files under .archiver/ and copies "
                 "go to ./archive/")
@click.option("--host", help="receiver address (default 127.0.0.1)")
@click.option("--port", type=int, help="receiver port (default 8000)")
@click.option("--concurrency", type=int, default=2, show_default=True, help="worker pool processes")
@click.option("--stop-grace", type=Seconds(), default=STOP_GRACE, show_default=True,
              help=f"the worker's --stop-grace; `up` exits at most {ABORT_SECONDS + UP_MARGIN:g} s after it")
def up(host: str | None, port: int | None, concurrency: int, stop_grace: float) -> int:
    current = settings()
    host, port = host or current.receiver.host, port or current.receiver.port
    check_port(host, port)  # before any child starts: a busy port is not buried among worker banners
    if current.database_url.startswith("sqlite"):
        check_ledger(current, require_current=False)  # one line if the file cannot be opened
        upgrade(create_ledger_engine(current.database_url))  # embedded ledger: created/upgraded on first run
    preflight(current)
    private_dir(".archiver")
    if state().json:
        print(json.dumps({"receiver": f"http://{host}:{port}{current.receiver.path}",
                          "broker": mask_url(current.broker_url), "ledger": mask_url(current.database_url),
                          "config_file": current.origin,
                          "destinations": {d.name: d.url for d in current.destinations}}), flush=True)
    else:
        print(describe(current, host, port, stop_grace), flush=True)
    warn(current)
    me = [sys.executable, "-m", "archiver.cli"]
    grace = f"{stop_grace:g}"
    children = [_child([*me, "serve", "--host", host, "--port", str(port)]),
                _child([*me, "worker", "--concurrency", str(concurrency), "--stop-grace", grace]),
                _child([*me, "beat"])]
    return _supervise(children, up_bound(stop_grace))


def _verb(child: subprocess.Popen[bytes]) -> str:
    """The verb a child runs (`_child` got [python, -m, archiver.cli, VERB, ...])."""
    return str(cast("list[str]", child.args)[3])


def _child(argv: list[str]) -> subprocess.Popen[bytes]:
    # Its own process group: a terminal's Ctrl-C reaches only `up`, which forwards one SIGTERM, and
    # at the deadline the whole group (the worker's pool too) can be killed.
    return subprocess.Popen(argv, process_group=0, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when `up` dies, even by SIGKILL (Linux prctl)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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


def register(group: click.Group) -> None:
    group.add_command(up)
