"""The gauges read from the ledger at scrape time (jobs by state, oldest pending age, pending lookups and
notifications), how often they touch the ledger, what a failed read shows, and the receiver's
signature-key gauge."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from archiver.intake.signature import KeyCache
from archiver.ledger.backlog import Backlog, read_backlog
from archiver.ledger.database import create_ledger_engine, session_factory, upgrade
from archiver.ledger.models import CopyJob, Event, FileRow, Lookup, OutboxMessage
from archiver.ledger.records import utcnow
from archiver.observability.ledger_gauges import LedgerGauges
from tests.receiver_harness import new_key

DESTINATIONS = ["s3", "gcs"]


def add_jobs(url: str, jobs: list[tuple[str, str, timedelta]], lookups: list[str]) -> None:
    """One recording file per job, in (destination, state, age) order; lookups in the given states."""
    now = utcnow()
    with session_factory(create_ledger_engine(url)).begin() as db:
        event = Event(dedupe_key="e1", webhook_type="recording-stopped", meeting_id="m", session_id="s",
                      received_at=now, signature_verified=True, source="test", body="{}")
        db.add(event)
        db.flush()
        for n, (destination, state, age) in enumerate(jobs):
            f = FileRow(meeting_id="m", session_id="s", participant_id="", kind="", file_path=f"/f{n}.mp4",
                              file_name=f"f{n}.mp4", webhook_type="recording-stopped", event_id=event.id,
                              received_at=now)
            db.add(f)
            db.flush()
            db.add(CopyJob(file_id=f.id, destination=destination, state=state, created_at=now - age,
                           updated_at=now))
        for n, state in enumerate(lookups):
            db.add(Lookup(event_id=event.id, recording_kind="merge", resource_id=f"r{n}", state=state,
                          created_at=now, updated_at=now))


def test_the_backlog_counts_open_jobs_by_state_and_destination_and_ages_the_oldest(database_url: str) -> None:
    minute = timedelta(minutes=1)
    add_jobs(database_url, [("s3", "pending", 40 * minute), ("s3", "pending", 5 * minute), ("s3", "running", minute),
                            ("s3", "failed", minute), ("s3", "succeeded", 90 * minute), ("s3", "held", minute),
                            ("gcs", "succeeded", 60 * minute)],
             ["pending", "pending", "done", "failed"])
    backlog = read_backlog(create_ledger_engine(database_url, pooled=False), DESTINATIONS)
    assert {k: v for k, v in backlog.jobs.items() if v} == {
        ("pending", "s3"): 2, ("running", "s3"): 1, ("failed", "s3"): 1, ("held", "s3"): 1}
    assert backlog.jobs[("pending", "gcs")] == 0 and backlog.jobs[("failed", "gcs")] == 0  # zeros, not absent
    assert ("succeeded", "s3") not in backlog.jobs  # unbounded: the archiver_copies counter covers it
    assert 40 * 60 <= backlog.oldest_pending_seconds["s3"] < 41 * 60  # the oldest pending, not the oldest job
    assert backlog.oldest_pending_seconds["gcs"] == 0
    assert backlog.lookups_pending == 2 and backlog.notifications_pending == 0


_OUTBOX_IDS = itertools.count(1)


def outbox_row(state: str) -> dict:
    n, now = next(_OUTBOX_IDS), utcnow()
    return {"webhook_id": f"msg_{n}", "endpoint": "app", "event_type": "recording.archived", "subject": f"s{n}",
            "payload": "{}", "state": state, "next_attempt_at": now, "created_at": now, "updated_at": now}


def test_undelivered_notifications_are_counted_from_the_outbox_when_there_is_one(database_url: str) -> None:
    engine = create_ledger_engine(database_url, pooled=False)
    upgrade(engine)
    table = OutboxMessage.__table__
    with engine.begin() as conn:
        for state in ("pending", "delivered", "pending", "delivering", "failed"):
            conn.execute(table.insert().values(**outbox_row(state)))
    reading = read_backlog(engine, DESTINATIONS)
    assert (reading.notifications_pending, reading.notifications_failed) == (3, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: LedgerGauges) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_scrapes_read_the_ledger_at_most_once_per_interval_and_a_failed_read_shows_as_down() -> None:
    reads: list[int] = []
    answers: list[Backlog | Exception] = [Backlog({("pending", "s3"): 3}, {"s3": 120.0}, 1, 0), RuntimeError("down")]

    def read() -> Backlog:
        reads.append(1)
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = Clock()
    gauges = LedgerGauges(read, min_interval=10, clock=clock)
    first = scrape(gauges)
    assert 'archiver_jobs{destination="s3",state="pending"} 3.0' in first
    assert 'archiver_oldest_pending_job_age_seconds{destination="s3"} 120.0' in first
    assert "archiver_lookups_pending 1.0" in first and "archiver_ledger_metrics_up 1.0" in first
    clock.now = 9
    answers.pop(0)
    assert scrape(gauges) == first and len(reads) == 1  # within the interval: no second read
    clock.now = 10
    down = scrape(gauges)
    assert len(reads) == 2 and "archiver_ledger_metrics_up 0.0" in down
    assert "archiver_jobs" not in down  # absent rather than stale


def test_an_unreachable_ledger_is_reported_not_raised() -> None:
    engine = create_ledger_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pooled=False)
    assert "archiver_ledger_metrics_up 0.0" in scrape(LedgerGauges(lambda: read_backlog(engine, DESTINATIONS)))


def test_the_signature_key_is_unavailable_while_fetching_it_fails_and_back_once_it_works() -> None:
    _, pem = new_key()
    clock = Clock()
    outcome: list[str | Exception] = [ConnectionError("VideoSDK unreachable")]

    def fetch() -> str:
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]

    keys = KeyCache(fetch=fetch, min_refetch_seconds=60, clock=clock)
    assert keys.available() is False
    outcome[0] = pem
    clock.now = 30
    assert keys.available() is False  # within min_refetch_seconds: no new fetch
    clock.now = 61
    assert keys.available() is True
    assert KeyCache(static_pem=pem).available() is True


@pytest.fixture(autouse=True)
def _quiet_ledger_gauges(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="archiver.metrics")
