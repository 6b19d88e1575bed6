"""When to try again: the one backoff policy of the product, on tenacity.

Every retry waits by ``Backoff``: exponential (``base * 2**(attempt-1)`` seconds, capped at ``cap``),
with full jitter (a uniform draw in [0, that]: AWS architecture blog, "Exponential Backoff And
Jitter") unless ``jitter=False`` asks for the plain ceiling. Two ways to use it:

- a retry that is queued (a copy job, a lookup: the broker delivers the next attempt later) asks
  ``Backoff.seconds(attempt)`` for the countdown;
- a retry inside one call (the VideoSDK client, source resumes, HLS pieces) runs under
  ``retrying(...)``, a ``tenacity.Retrying`` that re-raises the last error as it was.

tenacity supplies the wait strategies and the loop (``wait_random_exponential`` is full jitter,
``wait_exponential`` the plain ceiling). Pure: imports nothing of ours, no SDK, no Celery.
Which failures are worth another attempt is each caller's: archiver.copy.errors.classify for copies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

__all__ = ["Backoff", "Decided", "retrying"]

_NO_LOOP = Retrying()  # what a RetryCallState belongs to when only a delay is asked for


class Decided(Exception):
    """A failure that knows its own code and whether a retry can heal it (e.g. archiver.intake.account's)."""

    def __init__(self, message: str, *, code: str, retryable: bool) -> None:
        super().__init__(message)
        self.code, self.retryable = code, retryable


@dataclass(frozen=True)
class Backoff:
    """How long to wait after a failed attempt. ``base``: the ceiling after attempt 1, in seconds;
    ``cap``: no wait is longer (seconds); ``jitter``: full jitter (else the ceiling itself)."""

    base: float
    cap: float
    jitter: bool = True

    @property
    def wait(self) -> wait_base:
        """The tenacity wait strategy of this backoff."""
        strategy = wait_random_exponential if self.jitter else wait_exponential
        return strategy(multiplier=self.base, max=self.cap)

    def seconds(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1 is the first; 0 counts as 1), in seconds."""
        state = RetryCallState(_NO_LOOP, None, (), {})
        state.attempt_number = max(1, attempt)
        return float(self.wait(state))


def retrying(backoff: Backoff, *, attempts: int, retry_if: Callable[[BaseException], bool],
             sleep: Callable[[float], None] = time.sleep,
             wait_hint: Callable[[BaseException], float | None] | None = None,
             before_sleep: Callable[[BaseException, int, float], None] | None = None) -> Retrying:
    """A tenacity loop for retries inside one call: at most ``attempts`` tries, again only after an
    error ``retry_if`` accepts, waiting ``backoff`` (or ``wait_hint(error)`` when that is not None: a
    server's Retry-After). ``before_sleep(error, attempt, delay)`` is told each wait (for logs). When
    tries run out, or the error is not retried, that error is raised as it was (``reraise``).

        for attempt in retrying(Backoff(0.5, 60), attempts=5, retry_if=is_transient):
            with attempt:
                return call()
    """
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        hint = wait_hint(error) if wait_hint is not None and error is not None else None
        return hint if hint is not None else float(backoff.wait(state))

    def tell(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if before_sleep is not None and error is not None:
            before_sleep(error, state.attempt_number, state.upcoming_sleep)

    return Retrying(stop=stop_after_attempt(attempts), wait=wait, retry=retry_if_exception(retry_if),
                    sleep=sleep, before_sleep=tell, reraise=True)
