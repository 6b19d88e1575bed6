"""The Celery application and the one way work is put on the broker (Publisher)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from celery import Celery
from kombu.exceptions import OperationalError

import celeryconfig
from archiver.preflight import BROKER, ensure_sqlite_folder
from archiver.settings.config import Settings
from archiver.worker import lifecycle as worker_signals
from archiver.worker import logging_hook
from archiver.worker.time_limits import copy_time_limits


def create_app(settings: Settings | None = None) -> Celery:
    """The worker's app reads celeryconfig (ARCHIVER_CONFIG / environment) when its configuration is
    first used, not at import; a receiver or a test builds one from explicit settings."""
    app = Celery("archiver", include=["archiver.worker.tasks", "archiver.worker.relay"])
    if settings is None:
        app.add_defaults(celeryconfig.from_environment)  # a promise: evaluated on first use of app.conf
    else:
        app.conf.update(celeryconfig.build(settings))
    worker_signals.install(app)  # bounds on stopping and on a lost broker, when a worker runs this app
    logging_hook.install()  # worker and beat log like the receiver (JSON off a terminal)
    return app


class BrokerUnreachable(Exception):
    """A message could not be put on the broker (kombu's OperationalError, by our name: callers outside
    archiver.worker need not import kombu). Nothing was sent; the message says why."""


@contextmanager
def _sending() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise BrokerUnreachable(str(exc)) from exc


class Publisher:
    """The one way work reaches the broker: copy jobs (with time limits from the file size), saved
    webhook bodies and lookups, each on its queue. Raises BrokerUnreachable when the broker is down."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._folder_ready = False

    def _broker_folder(self) -> None:
        # The embedded SQLite broker's file can be created by kombu, its folder cannot (on first use,
        # not at import: importing this module must not create folders).
        if not self._folder_ready:
            ensure_sqlite_folder(str(self.app.conf.broker_url), BROKER)
            self._folder_ready = True

    def copies(self, job_ids: Sequence[int], *, size: int | None = None, countdown: float | None = None,
               missing_retries: int = 0) -> None:
        """``missing_retries``: how many times a worker already found the job not visible yet (intake
        publishes before it commits); the task gives up after a few."""
        self._broker_folder()
        limits = copy_time_limits(size, self.app.conf.visibility_timeout)
        with _sending():
            for job_id in job_ids:
                args = (job_id, missing_retries) if missing_retries else (job_id,)
                self.app.send_task("archiver.copy_file", args, countdown=countdown, time_limit=limits.hard,
                                   soft_time_limit=limits.soft, queue="archive", routing_key="archive")

    def event(self, body: str, *, source: str = "replay", verified: bool = False) -> None:
        self._broker_folder()
        with _sending():
            self.app.send_task("archiver.accept_event", (body, source, verified), queue="events",
                               routing_key="events")

    def lookups(self, lookup_ids: Sequence[int], *, countdown: float | None = None) -> None:
        if lookup_ids:
            self._broker_folder()
        with _sending():
            for lookup_id in lookup_ids:
                self.app.send_task("archiver.run_lookup", (lookup_id,), countdown=countdown, queue="events",
                                   routing_key="events")

    def relay(self, job_ids: Sequence[int], lookup_ids: Sequence[int] = ()) -> None:
        """One message naming a batch of new copy jobs and lookups (the receiver's relay,
        archiver.intake.relay); a worker publishes each as copies/lookups would (archiver.worker.relay)."""
        if not job_ids and not lookup_ids:
            return
        self._broker_folder()
        with _sending():
            self.app.send_task("archiver.relay", (list(job_ids), list(lookup_ids)), queue="events",
                               routing_key="events")

    def notifications(self, *, countdown: float | None = None) -> None:
        """Ask a worker to send the notifications due now (archiver.notifications.delivery)."""
        self._broker_folder()
        self.app.send_task("archiver.deliver_notifications", countdown=countdown, queue="maintenance",
                           routing_key="maintenance")

    def ping(self, timeout: float = 2.0) -> None:
        """Raise if the broker cannot be reached within `timeout` seconds."""
        self._broker_folder()
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)

    def probe(self, timeout: float) -> None:
        """Connect once (no retry) and declare the queues: raises what the broker answers.

        Declaring is what proves a broker usable: kombu's SQLAlchemy transport "connects" without
        opening its file, and a Redis or RabbitMQ refusal shows only on the first command. The
        declarations are the app's own queues, the same ones every worker declares."""
        self._broker_folder()
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
            channel = conn.default_channel
            for queue in self.app.conf.task_queues or ():
                queue(channel).declare()


app = create_app()
publisher = Publisher(app)
