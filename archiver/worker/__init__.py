"""The Celery side: the app, its tasks, the publisher, time limits and process lifecycle.

Lives here: `app` (the Celery app and `Publisher`, the one way work reaches the broker), `tasks` (thin
wrappers around plain functions), `time_limits` (task limits from the file size), `lifecycle` (worker
signals: bounded stop, lost broker), `logging_hook` (Celery's logging through
archiver.observability.logs), `memory_tuning` (glibc arena settings for part buffers).
The only package that imports Celery or kombu. May import everything else in `archiver`.
"""
