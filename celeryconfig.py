"""Celery settings for the archive workers. The values come from archiver.toml / ARCHIVER_* variables.

acks_late + reject_on_worker_lost + prefetch 1: a task is acknowledged only after it finished, a
worker killed mid-copy gives its task back to the broker, and one worker never hoards long copies.
"""

from kombu import Exchange, Queue

from archiver.config import load_settings
from archiver.limits import ceiling

_settings = load_settings()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_ignore_result = True  # outcomes live in the ledger, not in a result backend

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}

# Each queue has its own exchange and routing key: left unset, Celery binds every queue to the
# default exchange with the same key, and one message would be delivered to all three queues.
task_queues = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name)
                    for name in ("events", "archive", "maintenance"))
task_default_queue = "archive"
task_default_exchange = "archive"
task_default_routing_key = "archive"
task_routes = {
    "archiver.accept_event": {"queue": "events", "routing_key": "events"},
    "archiver.copy_file": {"queue": "archive", "routing_key": "archive"},
    "archiver.sweep_leases": {"queue": "maintenance", "routing_key": "maintenance"},
}

# Redis redelivers unacknowledged tasks after visibility_timeout; every place Celery reads it agrees,
# and no task may run longer (see archiver.limits).
visibility_timeout = _settings.visibility_timeout
broker_transport_options = {
    "visibility_timeout": visibility_timeout,
    # kombu scans for abandoned (unacknowledged, past the timeout) messages every interval x
    # throttle seconds, 100 s by default whatever the timeout; tie the scan to the timeout instead.
    "unacked_restore_interval": max(1, min(60, visibility_timeout // 10)),
    "unacked_restore_throttle": 1,
}
result_backend_transport_options = {"visibility_timeout": visibility_timeout}
task_time_limit = ceiling(visibility_timeout)
task_soft_time_limit = task_time_limit - min(30, task_time_limit // 10)

# SIGTERM: stop taking tasks and let the copy in flight finish; if it cannot within this many
# seconds, it is interrupted, its writer aborts, and (acks_late) the task goes back to the queue.
worker_soft_shutdown_timeout = 60.0
worker_enable_soft_shutdown_on_idle = True

beat_schedule = {
    "sweep-expired-leases": {"task": "archiver.sweep_leases", "schedule": 300.0},
}
