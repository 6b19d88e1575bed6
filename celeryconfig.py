"""Celery settings for the archive workers. The values come from archiver.toml / ARCHIVER_* variables.

acks_late + reject_on_worker_lost + prefetch 1: a task is acknowledged only after it finished, a
worker killed mid-copy gives its task back to the broker, and one worker never hoards long copies.
"""

from kombu import Queue

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

task_queues = (Queue("events"), Queue("archive"), Queue("maintenance"))
task_default_queue = "archive"
task_routes = {
    "archiver.accept_event": {"queue": "events"},
    "archiver.copy_file": {"queue": "archive"},
    "archiver.sweep_leases": {"queue": "maintenance"},
}

# Redis redelivers unacknowledged tasks after visibility_timeout; every place Celery reads it agrees,
# and no task may run longer (see archiver.limits).
visibility_timeout = _settings.visibility_timeout
broker_transport_options = {"visibility_timeout": visibility_timeout}
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
