"""archiver.retry: the one backoff every retry uses (queued countdowns and in-call loops)."""

from __future__ import annotations

import pytest

from archiver.retry import Backoff, retrying


def test_full_jitter_stays_under_the_doubling_ceiling_and_the_cap() -> None:
    backoff = Backoff(base=2.0, cap=10.0)
    for attempt, ceiling in ((0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (30, 10.0)):
        draws = [backoff.seconds(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling / 2  # spread over the range, not pinned at 0


def test_without_jitter_the_wait_is_the_ceiling() -> None:
    backoff = Backoff(base=0.5, cap=5.0, jitter=False)
    assert [backoff.seconds(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 5.0]


def test_retrying_waits_by_hint_or_backoff_and_reraises_the_last_error() -> None:
    slept: list[float] = []
    told: list[tuple[int, float]] = []
    calls = 0

    class Flaky(Exception):
        def __init__(self, hint: float | None) -> None:
            super().__init__(f"hint {hint}")
            self.hint = hint

    def call() -> None:
        nonlocal calls
        calls += 1
        raise Flaky(7.0 if calls == 1 else None)

    loop = retrying(Backoff(1.0, 3.0, jitter=False), attempts=3, retry_if=lambda e: isinstance(e, Flaky),
                    sleep=slept.append, wait_hint=lambda e: getattr(e, "hint", None),
                    before_sleep=lambda e, n, d: told.append((n, d)))
    with pytest.raises(Flaky, match="hint None"):
        for attempt in loop:
            with attempt:
                call()
    assert calls == 3 and slept == [7.0, 2.0] and told == [(1, 7.0), (2, 2.0)]


def test_an_error_not_worth_retrying_is_raised_at_once() -> None:
    slept: list[float] = []
    with pytest.raises(ValueError):
        for attempt in retrying(Backoff(1.0, 3.0), attempts=5, retry_if=lambda e: False, sleep=slept.append):
            with attempt:
                raise ValueError("final")
    assert slept == []
