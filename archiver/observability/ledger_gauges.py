"""Gauges read from the ledger when Prometheus scrapes, not kept up to date by a loop.

`LedgerGauges` is a prometheus_client collector around a callable that reads the backlog
(archiver.ledger.backlog.read_backlog, handed in by the CLI: this package imports no ledger code).
A read is reused for `min_interval` seconds, so however often /metrics is fetched the ledger sees at
most one read per interval; scrapes arriving during a read wait for it rather than start another.

Exported (all gauges):
- archiver_jobs{state, destination}: copy jobs in each open state (pending, running, held, failed);
- archiver_oldest_pending_job_age_seconds{destination}: how long the oldest pending job has waited;
- archiver_lookups_pending: recordings named only by id whose files are still being looked up;
- archiver_notifications_pending / _failed: outbound notifications not delivered yet / given up;
- archiver_ledger_metrics_up: 1 when the last read succeeded, 0 when it failed (the other gauges are
  then absent rather than stale).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("archiver.metrics")


class BacklogReading(Protocol):
    """The shape of archiver.ledger.backlog.Backlog."""

    @property
    def jobs(self) -> Mapping[tuple[str, str], int]: ...
    @property
    def oldest_pending_seconds(self) -> Mapping[str, float]: ...
    @property
    def lookups_pending(self) -> int: ...
    @property
    def notifications_pending(self) -> int: ...
    @property
    def notifications_failed(self) -> int: ...


class LedgerGauges(Collector):
    def __init__(self, read: Callable[[], BacklogReading], *, min_interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, BacklogReading | None] | None = None  # (when, reading or None if it failed)

    def _reading(self) -> BacklogReading | None:
        with self._lock:
            now = self._clock()
            if self._last is None or now - self._last[0] >= self._min_interval:
                try:
                    reading: BacklogReading | None = self._read()
                except Exception as exc:  # any failure: report it as a gauge, never break the scrape
                    # The type only: a driver's message may carry the database URL.
                    log.warning("ledger gauges: reading the ledger failed (%s)", type(exc).__name__)
                    reading = None
                self._last = (now, reading)
            return self._last[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reading = self._reading()
        yield GaugeMetricFamily("archiver_ledger_metrics_up", "1 when the ledger gauges were read, 0 when the read "
                                "failed", value=0 if reading is None else 1)
        if reading is None:
            return
        jobs = GaugeMetricFamily("archiver_jobs", "Copy jobs by open state and destination (from the ledger)",
                                 labels=["state", "destination"])
        for (state, destination), count in sorted(reading.jobs.items()):
            jobs.add_metric([state, destination], count)
        yield jobs
        oldest = GaugeMetricFamily("archiver_oldest_pending_job_age_seconds",
                                   "Seconds the oldest pending copy job of a destination has waited (0: none)",
                                   labels=["destination"])
        for destination, seconds in sorted(reading.oldest_pending_seconds.items()):
            oldest.add_metric([destination], seconds)
        yield oldest
        yield GaugeMetricFamily("archiver_lookups_pending", "Recordings named only by id still being looked up",
                                value=reading.lookups_pending)
        yield GaugeMetricFamily("archiver_notifications_pending", "Outbound notifications not delivered yet",
                                value=reading.notifications_pending)
        yield GaugeMetricFamily("archiver_notifications_failed", "Outbound notifications given up after "
                                "max_attempts (archiver status lists them)", value=reading.notifications_failed)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # names vary with the reading; no read at registration time
