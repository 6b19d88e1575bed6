"""The Celery application and the one way work is put on the broker (Publisher)."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

import celeryconfig
from archiver.config import Settings
from archiver.limits import copy_time_limits
from archiver.private_files import private_sqlite_file, sqlite_path


def create_app(settings: Settings | None = None) -> Celery:
    """The worker's app reads celeryconfig (ARCHIVER_CONFIG / environment); a receiver or a test
    builds one from explicit settings."""
    app = Celery("archiver", include=["archiver.tasks"])
    if settings is None:
        app.config_from_object("celeryconfig")
    else:
        app.conf.update(celeryconfig.build(settings))
    # The embedded broker's file holds task messages (webhook bodies on replay): 0600 in a 0700 folder,
    # made before kombu's SQLAlchemy transport creates it with SQLite's default 0644.
    if (path := sqlite_path(str(app.conf.broker_url or ""))) is not None:
        private_sqlite_file(path)
    return app


class Publisher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def copies(self, job_ids: Sequence[int], *, size: int | None = None, countdown: float | None = None) -> None:
        limits = copy_time_limits(size, self.app.conf.visibility_timeout)
        for job_id in job_ids:
            self.app.send_task("archiver.copy_file", (job_id,), countdown=countdown, time_limit=limits.hard,
                               soft_time_limit=limits.soft, queue="archive", routing_key="archive")

    def event(self, body: str, *, source: str = "replay", verified: bool = False) -> None:
        self.app.send_task("archiver.accept_event", (body, source, verified), queue="events", routing_key="events")

    def merge_lookup(self, event_id: int) -> None:
        self.app.send_task("archiver.resolve_merge", (event_id,), queue="events", routing_key="events")

    def ping(self, timeout: float = 2.0) -> None:
        """Raise if the broker cannot be reached within `timeout` seconds."""
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)


app = create_app()
publisher = Publisher(app)
