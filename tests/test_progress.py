"""Progress people can read: rate and ETA in every line, a summary, and worker copies that are not silent."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from archiver.ledger.store import JobRecord
from archiver.observability.progress import ProgressMeter, human_bytes, human_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_names_bytes_percent_rate_and_eta() -> None:
    clock = Clock()
    meter = ProgressMeter(every_seconds=10, clock=clock)
    assert meter.update(0, 200 << 20) is None  # the first update starts the clock
    clock.now += 4
    assert meter.update(40 << 20, 200 << 20) is None  # not due yet
    clock.now += 6
    line = meter.update(100 << 20, 200 << 20)
    assert line == "100.0 MiB of 200.0 MiB (50%), 10.5 MB/s, ETA 10 s"
    assert meter.summary(200 << 20) == "200.0 MiB in 10.0 s, 21.0 MB/s"


def test_without_a_total_there_is_no_percent_or_eta() -> None:
    clock = Clock()
    meter = ProgressMeter(every_seconds=0, clock=clock)
    meter.update(0, None)
    clock.now += 2
    assert meter.update(3 << 30, None) == "3.0 GiB, 1610.6 MB/s"


@pytest.mark.parametrize(("size", "text"), [(512, "512 B"), (1536, "1.5 KiB"), (5 << 40, "5.0 TiB")])
def test_sizes(size: int, text: str) -> None:
    assert human_bytes(size) == text


@pytest.mark.parametrize(("seconds", "text"), [(4.4, "4 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")])
def test_durations(seconds: float, text: str) -> None:
    assert human_seconds(seconds) == text


def job(destination: str) -> JobRecord:
    fields = {name: None for name in JobRecord.__dataclass_fields__}
    fields.update(job_id=7, destination=destination, state="running", attempts=1, meeting_id="m", session_id="s",
                  file_path="/encoded/videos/x.mp4", webhook_type="recording-stopped",
                  received_at=datetime(2026, 11, 30, tzinfo=UTC))
    return JobRecord(**fields)


def test_a_worker_copy_logs_progress_and_moves_the_byte_counter_while_it_runs(caplog) -> None:
    from archiver.worker import tasks

    def written() -> float:
        return REGISTRY.get_sample_value("archiver_copy_progress_bytes_total", {"destination": "progress-test"}) or 0.0

    clock = Clock()
    progress = tasks.CopyProgress()
    progress.meter.clock = clock
    record = job("progress-test")
    before = written()
    with caplog.at_level(logging.INFO):
        progress(record, 0, 1 << 30)
        clock.now += tasks.PROGRESS_SECONDS
        progress(record, 300 << 20, 1 << 30)
        assert written() - before == 300 << 20  # before the copy ends
        progress(record, 10 << 20, 1 << 30)  # the source restarted from byte 0: not counted twice
        progress(record, 400 << 20, 1 << 30)
    assert written() - before == 400 << 20
    lines = [r.getMessage() for r in caplog.records if "copying" in r.getMessage()]
    assert lines == ["job 7 copying /encoded/videos/x.mp4 to progress-test: 300.0 MiB of 1.0 GiB (29%), "
                     "10.5 MB/s, ETA 1 min 12 s"]
