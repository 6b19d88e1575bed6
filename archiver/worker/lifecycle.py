"""A worker either works or exits: bounds on stopping and on a lost broker (Celery hooks, worker only).

Two things Celery leaves unbounded (celery 5.7 / billiard 4.3, read in the installed source):

* **Stopping.** SIGTERM is a warm shutdown (celery/apps/worker.py `install_worker_term_handler`):
  no new tasks, and the ones running go on for as long as they take; `WorkController._shutdown`
  (celery/worker/worker.py) says outright that a warm shutdown is left unbounded and a silent broker
  can wedge it. `worker_soft_shutdown_timeout` only applies to the *cold* path (SIGQUIT, a second
  Ctrl-C: `on_cold_shutdown` -> `wait_for_soft_shutdown`), and it sleeps inside the signal handler.
  So: once the worker is stopping, for whatever reason, copies get `stop_grace` seconds to finish;
  then each pool process still running a task gets SIGTERM. billiard's child handler
  (billiard/common.py `_shutdown_cleanup`) raises SystemExit in the task, so the copy's writer aborts
  its upload on the way out (`with` block), the child exits, and the main process reports the task
  as WorkerLostError; with acks_late + reject_on_worker_lost that *rejects it with requeue*
  (celery/worker/request.py `on_failure`): it goes back to the queue. If the process is still alive
  `ABORT_SECONDS` later (an abort that hangs, a wedged ack flush), the pool is SIGKILLed and the
  process exits 1. Total: at most stop_grace + ABORT_SECONDS (60 + 20 = 80 s by default).

* **A lost broker.** After a connection loss the consumer loops for ever: `Consumer.start`
  (celery/worker/consumer/consumer.py) catches every connection error and restarts the blueprint;
  `broker_connection_max_retries` only ends one `ensure_connected` round, after which the loop
  starts the next one; `RestartFreqExceeded` is logged and slept over (1 s), not raised. So a
  consumer step records when the consumer last started consuming and when it stopped; a broker that
  has not been consumed from steadily for `broker_timeout` seconds (120 s by default, counted from the
  process start too) makes the worker stop with exit code 1 (`state.should_stop = 1`; Celery checks
  it through `maybe_shutdown`, which kombu's retry loop calls every second: kombu/utils/functional.py
  `retry_over_time`) and the stop bound above applies. A supervisor then restarts it; the new process
  either connects or refuses to start with one line (archiver.preflight).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any

from celery import Celery, bootsteps
from celery.apps.worker import Worker as CliWorker
from celery.bootsteps import CLOSE, TERMINATE
from celery.signals import worker_init
from celery.worker import state

from archiver.preflight import redact

log = logging.getLogger(__name__)

STOP_GRACE = 60.0  # seconds copies in flight get after a stop began, before they are interrupted
ABORT_SECONDS = 20.0  # then: seconds for interrupted copies to abort their uploads and the process to exit
BROKER_TIMEOUT = 120.0  # seconds without steady consumption before the worker exits 1
STEADY = 5.0  # a connection must last this long to count as back (a broker that fails at once is not)
TICK = 0.5


class _Limits:
    stop_grace = STOP_GRACE
    broker_timeout = BROKER_TIMEOUT


def configure(*, stop_grace: float | None = None, broker_timeout: float | None = None) -> None:
    """Set the bounds for this process's worker (`archiver worker --stop-grace/--broker-timeout`).
    Call before the worker starts."""
    if stop_grace is not None:
        _Limits.stop_grace = stop_grace
    if broker_timeout is not None:
        _Limits.broker_timeout = broker_timeout


class _Health:
    """When the consumer last started and stopped consuming (monotonic seconds); main process only."""

    consuming_since: float | None = None
    down_since: float | None = time.monotonic()  # not consuming yet counts as down from the start


class BrokerWatch(bootsteps.StartStopStep):
    """Consumer step after Tasks: start() runs once the task consumers consume on a new connection;
    stop()/shutdown() when the blueprint restarts after a connection error, or stops."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c: Any) -> None:
        _Health.consuming_since = time.monotonic()

    def stop(self, c: Any) -> None:
        _Health.consuming_since = None
        if _Health.down_since is None:
            _Health.down_since = time.monotonic()

    shutdown = stop


def install(app: Celery) -> None:
    """Add the consumer step to `app` (before a worker is created from it)."""
    app.steps["consumer"].add(BrokerWatch)


_WORKERS: list[Any] = []


def exit_code() -> int:
    """The exit code of the worker this process ran (app.start/worker_main drop it; Celery's own CLI
    passes it to sys.exit): 0 after a requested stop, 1 after a lost broker."""
    return int(getattr(_WORKERS[-1], "exitcode", 0) or 0) if _WORKERS else 0


@worker_init.connect
def _start_watchdog(sender: Any, **_: Any) -> None:
    # worker_init is sent by WorkController.__init__ in the main process, before the pool forks.
    _WORKERS.append(sender)
    if not isinstance(sender, CliWorker):
        return  # a worker embedded in another program (celery.contrib.testing): its host owns its lifetime
    _Health.down_since, _Health.consuming_since = time.monotonic(), None
    threading.Thread(target=_Watchdog(sender).run, name="archiver-watchdog", daemon=True).start()


class _Watchdog:
    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.stop_began: float | None = None
        self.interrupted = False

    def run(self) -> None:
        while True:
            time.sleep(TICK)
            try:
                self.tick(time.monotonic())
            except Exception:  # the watchdog must outlive any surprise in Celery's internals
                log.exception("worker watchdog")

    def tick(self, now: float) -> None:
        if self.stop_began is None:
            if self._stopping():
                self.stop_began = now
                log.warning("stopping: copies in flight get %g s to finish, then go back to the queue",
                            _Limits.stop_grace)
            else:
                self._check_broker(now)
            return
        waited = now - self.stop_began
        if waited >= _Limits.stop_grace and not self.interrupted:
            self.interrupted = True
            self._interrupt_tasks()
        if waited >= _Limits.stop_grace + ABORT_SECONDS:
            self._exit_now()

    def _stopping(self) -> bool:
        # Identity checks, as celery.worker.state.maybe_shutdown does: a warm stop sets should_stop to 0.
        blueprint = getattr(self.worker, "blueprint", None)
        return (state.should_stop is not None and state.should_stop is not False) or \
            (state.should_terminate is not None and state.should_terminate is not False) or \
            (blueprint is not None and blueprint.state in (CLOSE, TERMINATE))

    def _check_broker(self, now: float) -> None:
        since = _Health.consuming_since
        if since is not None and now - since >= STEADY:
            _Health.down_since = None
        down = _Health.down_since
        if down is None or now - down < _Limits.broker_timeout:
            return
        url = redact(str(self.worker.app.conf.broker_url))
        _say(f"archiver worker: broker {url} not consumed from for {now - down:.0f} s (bound "
             f"--broker-timeout {_Limits.broker_timeout:g} s); exiting 1 so a supervisor restarts the worker")
        state.should_stop = 1  # raised as WorkerShutdown(1) at Celery's next maybe_shutdown()

    def _interrupt_tasks(self) -> None:
        pids = _busy_pool_pids()
        if pids:
            log.warning("stop grace of %g s over: interrupting %d running task(s); they go back to the queue",
                        _Limits.stop_grace, len(pids))
        for pid in pids:
            _signal(pid, signal.SIGTERM)

    def _exit_now(self) -> None:
        pids = _pool_pids(self.worker)
        _say(f"archiver worker: still not stopped {_Limits.stop_grace + ABORT_SECONDS:g} s after the stop "
             f"began; killing {len(pids)} pool process(es) and exiting 1")
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        os._exit(1)


def _busy_pool_pids() -> set[int]:
    for _ in range(5):  # the main thread may change the set while we copy it
        try:
            return {r.worker_pid for r in tuple(state.active_requests) if r.worker_pid}
        except RuntimeError:
            time.sleep(0.01)
    return set()


def _pool_pids(worker: Any) -> list[int]:
    pool = getattr(getattr(worker, "pool", None), "_pool", None)
    return [p.pid for p in getattr(pool, "_pool", None) or () if getattr(p, "pid", None)]


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _say(line: str) -> None:
    # Through logging (archiver.worker.logging_hook): one format for everything the worker writes.
    log.error("%s", line)
