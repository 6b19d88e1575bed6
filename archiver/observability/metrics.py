"""Prometheus metrics of the workers. Multiprocess-safe: with PROMETHEUS_MULTIPROC_DIR set (by
`archiver worker --metrics-port`) every pool process writes its own files and the main process
serves their sum."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.registry import Collector

from archiver.domain.states import RunResult

COPIES = Counter("archiver_copies", "Copy attempts by destination and outcome", ["destination", "outcome"])
BYTES = Counter("archiver_copied_bytes", "Bytes of finished copy attempts written to destinations", ["destination"])
# Moves while a copy runs (a one-hour copy shows as throughput, not as one step at its end); bytes of an
# attempt that fails and is retried are counted again.
PROGRESS = Counter("archiver_copy_progress_bytes", "Bytes written to destinations, counted as copies run",
                   ["destination"])
DURATION = Histogram("archiver_copy_seconds", "Duration of a copy attempt", ["destination"],
                     buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
RETRIES = Counter("archiver_copy_retries", "Copy attempts that will be retried", ["destination", "reason"])
IN_FLIGHT = Gauge("archiver_copies_in_flight", "Copies running now", multiprocess_mode="livesum")
RECONCILE_FINDS = Counter("archiver_reconcile_finds", "What reconcile found that webhooks missed", ["kind"])
NOTIFICATIONS = Counter("archiver_notifications", "Notification delivery attempts by endpoint and outcome "
                        "(delivered, retrying, failed: given up)", ["endpoint", "outcome"])
# Read from the ledger by each delivery run; the most recent reading wins across pool processes.


def serve_worker_metrics(port: int, host: str = "127.0.0.1", *collectors: Collector) -> Any:
    """Serve the sum of every pool process's metrics, and `collectors` (the ledger gauges), on host:port
    (loopback unless told otherwise: the worker has no reason to be reachable from other machines).
    Returns the HTTP server."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in collectors:
        registry.register(collector)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def observe_copy(destination: str | None, outcome: str, seconds: float, size: int | None,
                 reason: str | None = None) -> None:
    label = destination or "-"
    COPIES.labels(label, outcome).inc()
    DURATION.labels(label).observe(seconds)
    if size:
        BYTES.labels(label).inc(size)
    if outcome == RunResult.PENDING:  # the copy failed and will retry
        RETRIES.labels(label, reason or "-").inc()


def progress_counter(destination: str) -> Callable[[int], None]:
    """A callback for one copy attempt: given the attempt's bytes so far (never decreasing), adds what
    was written since the last call to archiver_copy_progress_bytes_total{destination}."""
    counter = PROGRESS.labels(destination)
    seen = 0

    def advance(so_far: int) -> None:
        nonlocal seen
        if so_far > seen:
            counter.inc(so_far - seen)
            seen = so_far

    return advance


def observe_notification(endpoint: str, outcome: str) -> None:
    NOTIFICATIONS.labels(endpoint, outcome).inc()

