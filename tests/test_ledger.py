"""The ledger on SQLite and PostgreSQL: schema checks, dedupe, exclusive leases, recorded attempts."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from archiver.domain.recordings import RecordingFile
from archiver.ledger.database import SchemaBehind, create_ledger_engine, require_current_schema, upgrade
from archiver.ledger.models import CopyJob, Event, FileRow, JobAttempt
from archiver.ledger.store import Ledger, NewJob

RECEIVED = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def accept(ledger: Ledger, key: str = "k1", *, publish=None, destinations: Sequence[str] = ("a", "b")):
    file = RecordingFile(meeting_id="abc-xyzw-lmno", session_id="s1", participant_id=None, kind=None,
                   file_path="/encoded/videos/x.mp4", file_url="https://cdn.videosdk.live/encoded/videos/x.mp4",
                   webhook_type="recording-stopped")
    jobs = [NewJob(d, f"rec/{d}/x.mp4") for d in destinations]
    return ledger.accept(body="{}", dedupe_key=key, webhook_type="recording-stopped", meeting_id="abc-xyzw-lmno",
                         session_id="s1", received_at=RECEIVED, verified=True, source="webhook",
                         files=[(file, jobs)], publish=publish)


def count(ledger: Ledger, table: type) -> int:
    with ledger.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def ledger(database_url: str) -> Ledger:
    return Ledger(create_ledger_engine(database_url))


def test_a_process_refuses_a_schema_that_is_behind(tmp_path) -> None:
    engine = create_ledger_engine(f"sqlite:///{tmp_path}/new.db")
    with pytest.raises(SchemaBehind, match="run `archiver db upgrade`"):
        require_current_schema(engine)
    before, after = upgrade(engine)
    assert before is None and after
    require_current_schema(engine)


def test_default_sqlite_location_is_created(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    upgrade(create_ledger_engine())
    assert (tmp_path / ".archiver" / "ledger.db").exists()


def test_one_event_fans_out_and_a_duplicate_adds_nothing(ledger: Ledger) -> None:
    published: list[Sequence[int]] = []
    first = accept(ledger, publish=published.append)
    second = accept(ledger, publish=published.append)
    assert not first.duplicate and second.duplicate
    assert len(first.created) == 2 and second.created == ()
    assert first.job_ids == second.job_ids
    assert [tuple(p) for p in published] == [first.created]
    assert (count(ledger, Event), count(ledger, FileRow), count(ledger, CopyJob)) == (1, 1, 2)


def test_the_same_file_from_another_event_reuses_its_jobs(ledger: Ledger) -> None:
    first = accept(ledger, "k1")
    again = accept(ledger, "k2")  # e.g. reconcile found the file a webhook already announced
    assert not again.duplicate and again.created == () and again.job_ids == first.job_ids
    assert (count(ledger, Event), count(ledger, CopyJob)) == (2, 2)


def test_a_failed_publish_records_nothing(ledger: Ledger) -> None:
    def broker_down(_ids: Sequence[int]) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        accept(ledger, publish=broker_down)
    assert (count(ledger, Event), count(ledger, FileRow), count(ledger, CopyJob)) == (0, 0, 0)
    assert accept(ledger).created  # VideoSDK's retry then goes through as a first delivery


def test_concurrent_deliveries_of_one_event_create_one_set_of_jobs(ledger: Ledger) -> None:
    results = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        results.append(accept(ledger))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for r in results if not r.duplicate) == 1
    assert count(ledger, CopyJob) == 2


def test_only_one_worker_holds_a_job(ledger: Ledger) -> None:
    job_id = accept(ledger).created[0]
    assert ledger.claim(job_id, "w1", LEASE) is not None
    assert ledger.claim(job_id, "w2", LEASE) is None
    assert not ledger.succeed(job_id, "w2", size=1, sha256="0" * 64, etag=None)
    assert ledger.succeed(job_id, "w1", size=1, sha256="0" * 64, etag="e")
    assert ledger.claim(job_id, "w3", LEASE) is None  # a succeeded job is never run again
    job = ledger.job(job_id)
    assert job is not None and (job.state, job.attempts, job.bytes) == ("succeeded", 1, 1)


def test_an_expired_lease_lets_another_worker_take_over(ledger: Ledger) -> None:
    job_id = accept(ledger).created[0]
    assert ledger.claim(job_id, "dead-worker", timedelta(seconds=0.2))
    time.sleep(0.4)
    assert ledger.stale_jobs(timedelta(hours=1)) == [job_id]
    taken = ledger.claim(job_id, "w2", LEASE)
    assert taken is not None and taken.attempts == 2
    assert not ledger.renew(job_id, "dead-worker", LEASE)
    with ledger.sessions() as db:
        outcomes = list(db.execute(select(JobAttempt.worker, JobAttempt.outcome).order_by(JobAttempt.number)))
    assert [tuple(o) for o in outcomes] == [("dead-worker", "lost"), ("w2", None)]


def test_every_attempt_is_recorded(ledger: Ledger) -> None:
    job_id = accept(ledger).created[0]
    ledger.claim(job_id, "w", LEASE)
    ledger.fail(job_id, "w", code="source_http_status", message="HTTP 503", retrying=True)
    assert ledger.job(job_id).state == "pending"  # type: ignore[union-attr]
    ledger.claim(job_id, "w", LEASE)
    ledger.fail(job_id, "w", code="source_not_found", message="HTTP 404", retrying=False)
    job = ledger.job(job_id)
    assert job is not None and (job.state, job.attempts, job.error_code) == ("failed", 2, "source_not_found")
    assert job.to_json()["error"] == "source_not_found: HTTP 404"
    with ledger.sessions() as db:
        rows = list(db.execute(select(JobAttempt.outcome, JobAttempt.error_code).order_by(JobAttempt.number)))
    assert [tuple(r) for r in rows] == [("retrying", "source_http_status"), ("failed", "source_not_found")]


def test_a_template_error_is_a_visible_failed_job(ledger: Ledger) -> None:
    file = RecordingFile(meeting_id="m", session_id="s", participant_id=None, kind=None, file_path="x.mp4",
                   file_url="https://cdn.videosdk.live/x.mp4", webhook_type="recording-stopped")
    accepted = ledger.accept(body="{}", dedupe_key="t", webhook_type="recording-stopped", meeting_id="m",
                             session_id="s", received_at=RECEIVED, verified=True, source="webhook",
                             files=[(file, [NewJob("a", None, error="{participantId} has no value")])])
    assert accepted.created == ()
    job = ledger.job(accepted.job_ids[0])
    assert job is not None and (job.state, job.error_code) == ("failed", "template")


def test_retry_re_runs_a_copy_verify_found_missing_but_no_other_succeeded_copy(ledger: Ledger) -> None:
    missing, intact = accept(ledger).created
    for job_id in (missing, intact):
        ledger.claim(job_id, "w", LEASE)
        ledger.succeed(job_id, "w", size=5, sha256="a" * 64, etag="e")
    ledger.flag_copy(missing, "verify_missing", "the object is gone")
    assert ledger.requeue(failed=True) == [missing]
    assert ledger.requeue([intact]) == []
    job = ledger.job(missing)
    assert job is not None and (job.state, job.sha256, job.error_code) == ("pending", None, None)
