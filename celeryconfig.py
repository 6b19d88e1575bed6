"""Celery settings for the archive workers. The values come from archiver.toml / ARCHIVER_* variables,
read by `from_environment()` when a process first needs them; importing this module reads nothing.

acks_late + reject_on_worker_lost + prefetch 1: a task is acknowledged only after it finished, a
worker killed mid-copy gives its task back to the broker, and one worker never hoards long copies.
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from archiver.settings.config import Settings, load_settings
from archiver.worker.time_limits import ceiling

QUEUES = ("events", "archive", "maintenance")
NOTIFICATION_SWEEP_SECONDS = 10.0


def transport_options(broker_url: str, vt: int) -> dict[str, Any]:
    """Options for the broker's transport, which passes them on (the SQLAlchemy transport hands them
    all to create_engine, so Redis's options must not reach it)."""
    if broker_url.startswith(("redis://", "rediss://", "sentinel://")):
        return {
            "visibility_timeout": vt,
            # kombu scans for abandoned messages every interval x throttle seconds, 100 s by default
            # whatever the timeout; tie the scan to the timeout instead.
            "unacked_restore_interval": max(1, min(60, vt // 10)),
            "unacked_restore_throttle": 1,
        }
    if broker_url.startswith("sqla+sqlite"):
        # Several processes poll one SQLite file: wait for its lock instead of failing at once.
        return {"connect_args": {"timeout": 30}}
    return {}  # AMQP redelivers unacknowledged messages when the consumer's connection drops


def build(settings: Settings) -> dict[str, Any]:
    vt = settings.visibility_timeout
    hard = ceiling(vt)
    return {
        "broker_url": settings.broker_url,
        # A process checks its broker before Celery starts (archiver.preflight: a broker that cannot
        # be used at start ends it with one line). Celery's own retries (broker_connection_retry,
        # broker_connection_max_retries, at their defaults) are for a broker lost later; they do not
        # end on their own (the consumer restarts after the last retry), so archiver.worker.lifecycle
        # bounds them: exit 1 after `archiver worker --broker-timeout` (120 s).
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # outcomes live in the ledger, not in a result backend
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # On a lost connection, running acks_late tasks are interrupted and redelivered: their acks
        # could not reach the broker anyway (celery/worker/consumer/consumer.py
        # on_connection_error_after_connected).
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.3,
                                      "interval_max": 1},
        # Each queue has its own exchange and routing key: left unset, Celery binds every queue to
        # the default exchange with the same key, and one message would reach all three queues.
        "task_queues": tuple(Queue(n, Exchange(n, type="direct"), routing_key=n) for n in QUEUES),
        "task_default_queue": "archive",
        "task_default_exchange": "archive",
        "task_default_routing_key": "archive",
        "task_routes": {
            "archiver.accept_event": {"queue": "events", "routing_key": "events"},
            "archiver.run_lookup": {"queue": "events", "routing_key": "events"},
            "archiver.copy_file": {"queue": "archive", "routing_key": "archive"},
            "archiver.sweep_leases": {"queue": "maintenance", "routing_key": "maintenance"},
            "archiver.reconcile": {"queue": "maintenance", "routing_key": "maintenance"},
            "archiver.prune": {"queue": "maintenance", "routing_key": "maintenance"},
            "archiver.verify": {"queue": "maintenance", "routing_key": "maintenance"},
            "archiver.deliver_notifications": {"queue": "maintenance", "routing_key": "maintenance"},
        },
        # Redis redelivers unacknowledged tasks after visibility_timeout; every place Celery reads it
        # agrees, and no task may run longer (see archiver.worker.time_limits).
        "visibility_timeout": vt,
        "broker_transport_options": transport_options(settings.broker_url, vt),
        "result_backend_transport_options": {"visibility_timeout": vt},
        "task_time_limit": hard,
        "task_soft_time_limit": hard - min(30, hard // 10),
        # SIGTERM is Celery's warm shutdown (no new tasks), bounded by archiver.worker.lifecycle: the
        # copy in flight gets `--stop-grace` (60 s), then it is interrupted, its writer aborts, and
        # (acks_late + reject_on_worker_lost) the task goes back to the queue. SIGQUIT or a second
        # Ctrl-C is Celery's cold shutdown, which waits this long before cancelling (celery/apps/
        # worker.py on_cold_shutdown -> WorkController.wait_for_soft_shutdown); `archiver worker` sets
        # it to its --stop-grace. Not when idle: an idle worker has nothing to wait for.
        "worker_soft_shutdown_timeout": 60.0,
        "worker_enable_soft_shutdown_on_idle": False,
        "beat_schedule": {
            "sweep-stale-jobs": {"task": "archiver.sweep_leases", "schedule": float(settings.retry.sweep_seconds)},
            **sync_schedule(settings),
        },
    }


def sync_schedule(settings: Settings) -> dict[str, Any]:
    """Reconcile every [reconcile] interval_minutes (0: never); prune hourly, only when retention is on;
    notifications every NOTIFICATION_SWEEP_SECONDS when [[notifications]] are configured."""
    schedule: dict[str, Any] = {}
    if settings.reconcile.interval_minutes > 0:
        schedule["reconcile-videosdk"] = {"task": "archiver.reconcile",
                                          "schedule": settings.reconcile.interval_minutes * 60.0}
    if settings.retention.delete_from_videosdk != "off":
        # Retention deletes only copies that verify confirmed, so verification runs on a schedule too.
        schedule["verify-copies"] = {"task": "archiver.verify", "schedule": 3600.0}
        schedule["prune-videosdk"] = {"task": "archiver.prune", "schedule": 3600.0}
    if settings.notifications:
        # Copies and reconcile send new notifications at once; this run sends the retries that came
        # due and anything a dead sender left behind (archiver.notifications.delivery).
        schedule["deliver-notifications"] = {"task": "archiver.deliver_notifications",
                                             "schedule": NOTIFICATION_SWEEP_SECONDS}
    return schedule


def from_environment() -> dict[str, Any]:
    """The settings of archiver.toml / ARCHIVER_* as Celery configuration. Called when a worker, beat or
    publisher first needs its configuration (archiver.worker.app), never at import: a bad
    ARCHIVER_CONFIG must not break `import celeryconfig` or `import archiver.worker.tasks`."""
    return build(load_settings())
