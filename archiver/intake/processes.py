"""Several receiver processes on one port (`archiver serve --processes N`).

One Python process answers webhooks on one core; intake past that needs more processes. The parent
binds the port once (a busy port fails here, before any child starts) and forks N children, each of
which builds its own app (its own ledger pool and broker connection: nothing is shared across a
fork) and serves the inherited socket; the kernel spreads accepted connections between them.

The parent supervises: a child that dies is replaced, but more than MAX_RESTARTS within
RESTART_WINDOW seconds means something is wrong with every child (a bad ledger, a broken broker), and
the parent stops the others and exits 1 rather than restart forever. SIGTERM or SIGINT is passed on
to every child, which finishes its open requests for up to `stop_seconds`; a child still running
STOP_MARGIN seconds after that is killed. Metrics: the children write prometheus_client's
multiprocess files into one folder and any child's /metrics serves their sum.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from archiver.intake.server import ReceiverServer, receiver_config
from archiver.settings.config import ReceiverSettings

log = logging.getLogger("archiver.receiver")

MAX_RESTARTS, RESTART_WINDOW, STOP_MARGIN = 5, 60.0, 5.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_folder() -> str:
    """Set PROMETHEUS_MULTIPROC_DIR to a fresh private folder unless set; returns it.

    Must run before prometheus_client is first imported in this process: the library picks its value
    store (memory or files) at import time (prometheus_client/values.py, get_value_class).
    """
    if "prometheus_client" in sys.modules and MULTIPROC_ENV not in os.environ:
        raise RuntimeError("prepare_metrics_folder() must run before prometheus_client is imported")
    return os.environ.setdefault(MULTIPROC_ENV, tempfile.mkdtemp(prefix="archiver-receiver-metrics-"))


def serve_processes(make_app: Callable[[], Any], limits: ReceiverSettings, host: str, port: int, *,
                    processes: int, stop_seconds: float) -> int:
    """Serve `make_app()` from `processes` forked children on one socket; returns the exit status.

    Raises OSError (EADDRINUSE and friends) when the port cannot be bound, before any child starts.
    """
    listener = receiver_config(None, limits, host, port).bind_socket()
    context = multiprocessing.get_context("fork")  # children inherit the bound socket and settings
    children: dict[int, BaseProcess] = {}
    restarts: list[float] = []
    stopping = False

    def start(slot: int) -> None:
        child = context.Process(target=_child, args=(make_app, limits, host, port, stop_seconds, listener),
                                name=f"receiver-{slot}", daemon=False)
        child.start()
        children[slot] = child

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.is_alive() and child.pid:
                os.kill(child.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(processes):
            start(slot)
        status = 0
        while not stopping:
            time.sleep(0.5)
            for slot, child in list(children.items()):
                if child.is_alive() or stopping:
                    continue
                _forget_metrics(child.pid)
                now = time.monotonic()
                restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
                if len(restarts) > MAX_RESTARTS:
                    log.error("receiver processes keep dying (%d restarts in %.0f s, last exit %s); "
                              "stopping the others", len(restarts) - 1, RESTART_WINDOW, child.exitcode)
                    stop(signal.SIGTERM, None)
                    status = 1
                    break
                log.warning("receiver process %s exited with %s; starting another", child.pid, child.exitcode)
                start(slot)
        _join_all(list(children.values()), stop_seconds + STOP_MARGIN)
        return status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        listener.close()


def _child(make_app: Callable[[], Any], limits: ReceiverSettings, host: str, port: int, stop_seconds: float,
           listener: socket.socket) -> None:
    # The parent's handlers would forward our own SIGTERM back to the children; uvicorn installs its own.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    config = receiver_config(make_app(), limits, host, port, timeout_graceful_shutdown=stop_seconds)
    server = ReceiverServer(config)
    server.run(sockets=[listener])
    sys.exit(0 if server.started else 3)


def _join_all(children: list[BaseProcess], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            log.error("receiver process %s did not stop within %.0f s; killing it", child.pid, seconds)
            child.kill()
            child.join(5)
        _forget_metrics(child.pid)


def _forget_metrics(pid: int | None) -> None:
    # A dead child's gauges would otherwise be summed forever (prometheus_client's documented cleanup).
    if pid and os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
