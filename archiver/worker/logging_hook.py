"""Celery's processes (worker, its pool processes, beat) log through archiver.observability.logs.

Any receiver of Celery's `setup_logging` signal makes Celery skip its own setup (celery/app/log.py,
`Logging.setup_logging_subsystem`): no plain-text handlers on the root, `celery` and `celery.task`
loggers, and no redirection of stdout (celery/apps/worker.py `on_start`). The receiver here installs
the archiver's handler instead, so worker and beat write the same lines as the receiver: JSON off a
terminal, readable on one. Log lines of a task carry its name and id (`task`, `task_id`).

Celery's banners and shutdown notices are print()s, not log records: off a terminal the worker's banner
is replaced by one log line (`celeryd_init` runs before `on_start` reads `quiet`), its SIGTERM notice by
another (see `_worker_ready`); `archiver beat` passes quiet itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import MutableMapping
from typing import Any

from celery import current_task
from celery.apps.worker import install_worker_term_handler
from celery.signals import celeryd_after_setup, celeryd_init, setup_logging, worker_ready, worker_shutting_down
from celery.utils.log import get_multiprocessing_logger

from archiver.observability.logs import configure_logging, json_wanted
from archiver.observability.redaction import mask_url

log = logging.getLogger("archiver.worker")


def task_context(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the running task's name and id, in a pool process running one."""
    task = current_task  # a proxy: false outside a task
    if task and task.request.id:
        event.setdefault("task", task.name)
        event.setdefault("task_id", task.request.id)
    return event


def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    handler = configure_logging(level if isinstance(level, int) and level else logging.INFO,
                                processors=[task_context])
    # billiard's logger does not propagate (billiard/util.py): give it the same handler, errors only
    # (what Celery does unless MP_LOG is set).
    multiprocessing = get_multiprocessing_logger()
    if multiprocessing is not None:
        multiprocessing.handlers[:] = [handler]
        multiprocessing.setLevel(logging.ERROR)


def _worker_init(instance: Any = None, **_: Any) -> None:
    # Sent before Celery's privilege check warns (celery/apps/worker.py on_before_init): set up now so
    # that warning is a log line too.
    _setup_logging(getattr(instance, "loglevel", None))
    if instance is not None and json_wanted():
        instance.quiet = True


def _worker_ready(sender: Any = None, **_: Any) -> None:
    """Off a terminal, Celery's SIGTERM notice ("worker: Warm shutdown", written straight to the file
    descriptor) becomes a log line: the handler Celery installed (on_start, before this signal) is
    installed again without its print, and `worker_shutting_down` logs instead."""
    worker = getattr(sender, "controller", None)
    if worker is None or not json_wanted() or threading.current_thread() is not threading.main_thread():
        return
    install_worker_term_handler(worker, verbose=False)


def _shutting_down(sender: str | None = None, how: str = "", sig: str = "", **_: Any) -> None:
    if json_wanted():
        log.info("worker %s: %s shutdown (%s)", sender, how.lower(), sig)


def _started(sender: str | None = None, instance: Any = None, **_: Any) -> None:
    if instance is None or not json_wanted():
        return  # the banner says it on a terminal
    queues = ",".join(sorted(instance.app.amqp.queues.consume_from or ()))
    log.info("worker %s starting: queues %s, concurrency %s, broker %s", sender, queues,
             instance.concurrency, mask_url(str(instance.app.conf.broker_url)))


def install() -> None:
    """Connect the receivers (once per process; Celery's signals are process-wide)."""
    setup_logging.connect(_setup_logging, weak=False, dispatch_uid="archiver.setup_logging")
    celeryd_init.connect(_worker_init, weak=False, dispatch_uid="archiver.worker_init")
    worker_ready.connect(_worker_ready, weak=False, dispatch_uid="archiver.worker_ready")
    worker_shutting_down.connect(_shutting_down, weak=False, dispatch_uid="archiver.shutting_down")
    celeryd_after_setup.connect(_started, weak=False, dispatch_uid="archiver.worker_started")
