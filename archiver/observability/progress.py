"""Progress of one transfer as people read it: bytes, percent, rate and ETA, and when to say it again.

    meter = ProgressMeter(every_seconds=30)
    line = meter.update(done=64 << 20, total=200 << 20)   # None until a line is due
    # "64.0 MiB of 200.0 MiB (32%), 41.2 MB/s, ETA 3 s"
    meter.summary(200 << 20)                              # "200.0 MiB in 4.9 s, 43.1 MB/s"

Rates are decimal megabytes per second (MB/s, as rclone and the benchmarks print them); sizes are
binary (MiB, GiB). The rate is the average since the first update, which is steady enough for an ETA
of a single stream. Pure: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable

UNITS = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def human_bytes(size: int) -> str:
    """1536 -> '1.5 KiB'; below 1 KiB in bytes ('512 B')."""
    for factor, unit in UNITS:
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def human_seconds(seconds: float) -> str:
    """Seconds as '42 s', '3 min 05 s' or '2 h 07 min'."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class ProgressMeter:
    """Rate and ETA of one transfer; `update` returns a line at most once per `every_seconds`
    (and `every_bytes`, when given, also makes one due), else None."""

    def __init__(self, *, every_seconds: float = 30.0, every_bytes: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_seconds, self.every_bytes, self.clock = every_seconds, every_bytes, clock
        self.started: float | None = None
        self.last_line_at = 0.0
        self.last_line_bytes = 0
        self.done = 0

    def rate(self) -> float | None:
        """Bytes per second since the first update; None before any time has passed."""
        if self.started is None:
            return None
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else None

    def line(self, done: int, total: int | None) -> str:
        rate = self.rate()
        text = human_bytes(done)
        if total:
            text += f" of {human_bytes(total)} ({min(100, done * 100 // total)}%)"
        if rate:
            text += f", {rate / 1e6:.1f} MB/s"
            if total and total > done:
                text += f", ETA {human_seconds((total - done) / rate)}"
        return text

    def update(self, done: int, total: int | None) -> str | None:
        now = self.clock()
        if self.started is None:
            self.started = self.last_line_at = now
        self.done = done
        due = now - self.last_line_at >= self.every_seconds
        if self.every_bytes is not None and done - self.last_line_bytes >= self.every_bytes:
            due = True
        if not due:
            return None
        self.last_line_at, self.last_line_bytes = now, done
        return self.line(done, total)

    def summary(self, done: int) -> str:
        """The closing line: '200.0 MiB in 4.9 s, 43.1 MB/s'."""
        elapsed = self.clock() - self.started if self.started is not None else 0.0
        rate = f", {done / elapsed / 1e6:.1f} MB/s" if elapsed > 0 else ""
        return f"{human_bytes(done)} in {elapsed:.1f} s{rate}"
