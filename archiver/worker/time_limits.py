"""Task time limits derived from the file size, always below the broker's redelivery timeout. Pure."""

from __future__ import annotations

from dataclasses import dataclass

# A copy slower than this is treated as stuck; generous for a cross-cloud stream of a recording.
MIN_RATE_BYTES_PER_S = 1 << 20
BASE_SECONDS = 300
# Redis redelivers an unacknowledged task after visibility_timeout: the hard limit must fire first,
# with room for the worker to record the failure and release the message.
MAX_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class TimeLimits:
    soft: int
    hard: int


def ceiling(visibility_timeout: int) -> int:
    return visibility_timeout - min(MAX_MARGIN_SECONDS, visibility_timeout // 4)


def copy_time_limits(size: int | None, visibility_timeout: int) -> TimeLimits:
    top = ceiling(visibility_timeout)
    hard = top if size is None else min(top, BASE_SECONDS + size // MIN_RATE_BYTES_PER_S)
    return TimeLimits(soft=max(1, hard - min(30, hard // 10)), hard=hard)
