"""Edge cases of one copy job that only show under failure: a create-only commit answered "exists"
for our own object, a heartbeat hiccup, and database errors carrying secrets into logs."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from archiver.copy import job as copy_job
from archiver.intake.record import accept_event
from archiver.intake.webhook import WebhookIntake
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.runtime import Runtime
from archiver.settings.config import Settings, load_settings
from providers import ObjectExists
from providers.writer import ObjectWriter
from tests.http_source import HttpSource


def local_runtime(root: Path, lease: int = 60, extra: str = "") -> Runtime:
    (root / "archiver.toml").write_text(f"""
database_url = "sqlite:///{root}/ledger.db"
lease_seconds = {lease}
{extra}
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
[[destinations]]
name = "local"
url = "file://{root}/archive/{{meetingId}}/"
""")
    settings = load_settings(root / "archiver.toml", environ={})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    return Runtime(settings=settings, ledger=Ledger(engine))


def body(meeting: str, url: str) -> str:
    return json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": meeting, "sessionId": "s1", "filePath": "/encoded/videos/x.mp4",
                                "fileUrl": url}})


def accept(runtime: Runtime, settings: Settings, meeting: str, url: str) -> int:
    _, accepted = accept_event(runtime.ledger, settings, body(meeting, url), verified=False)
    return accepted.created[0]


def test_a_retried_put_that_finds_our_own_object_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = local_runtime(tmp_path)
    real_commit = ObjectWriter.commit

    def answer_lost_then_412(self: ObjectWriter):  # the object lands, the SDK's retry then gets 412
        real_commit(self)
        raise ObjectExists(f"already exists: PreconditionFailed on {self.describe}", code="PreconditionFailed")

    monkeypatch.setattr(ObjectWriter, "commit", answer_lost_then_412)
    with HttpSource() as source:
        job_id = accept(runtime, runtime.settings, "m1", source.file_url("x.mp4", size=3 << 20))
        outcome = copy_job.run_copy_job(runtime, job_id)
    assert (outcome.state, outcome.uploaded) == ("succeeded", False)
    stored = (tmp_path / "archive" / "m1" / "x.mp4").read_bytes()
    assert runtime.ledger.job(job_id).sha256 == hashlib.sha256(stored).hexdigest()  # type: ignore[union-attr]


def test_losing_a_create_only_race_to_a_different_object_is_a_conflict(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = local_runtime(tmp_path)

    def someone_else_first(self: ObjectWriter):  # another writer publishes between our check and commit
        target = tmp_path / "archive" / "m2" / "x.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"another writer's bytes")
        raise ObjectExists(f"already exists: EEXIST on {self.describe}", code="EEXIST")

    monkeypatch.setattr(ObjectWriter, "commit", someone_else_first)
    with HttpSource() as source:
        job_id = accept(runtime, runtime.settings, "m2", source.file_url("x.mp4", size=1 << 20))
        outcome = copy_job.run_copy_job(runtime, job_id)
    assert outcome.state == "failed" and (outcome.error or "").startswith("conflict:"), outcome


def test_a_failed_lease_renewal_does_not_stop_the_heartbeat(tmp_path: Path) -> None:
    runtime = local_runtime(tmp_path, lease=3)
    real_renew, calls = runtime.ledger.renew, {"n": 0}

    def flaky_renew(job_id: int, worker: str, lease: object, **progress: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("UPDATE copy_jobs", {}, Exception("database is locked"))
        return real_renew(job_id, worker, lease, **progress)  # type: ignore[arg-type]

    runtime.ledger.renew = flaky_renew  # type: ignore[method-assign]
    with HttpSource() as source:  # about 7 s of copying against a 3 s lease, renewed every second
        job_id = accept(runtime, runtime.settings, "m3", source.file_url("x.mp4", size=3 << 20,
                                                                            trickle=f"{256 << 10}:0.6"))
        result: dict[str, copy_job.JobOutcome] = {}
        worker = threading.Thread(target=lambda: result.setdefault("w1", copy_job.run_copy_job(runtime, job_id)))
        worker.start()
        time.sleep(5)
        assert runtime.ledger.claim(job_id, "second-worker", runtime.lease) is None  # still leased
        worker.join()
    assert calls["n"] >= 3 and result["w1"].state == "succeeded"


def test_database_errors_do_not_log_signed_urls(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = local_runtime(tmp_path, extra="[videosdk]\nverify_signatures = false")
    with runtime.ledger.engine.begin() as conn:  # stands in for a full disk or a dropped connection
        conn.exec_driver_sql("CREATE TRIGGER full BEFORE INSERT ON recording_files "
                             "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
    intake = WebhookIntake(runtime.settings, runtime.ledger, publish_copies=lambda ids: None,
                           publish_lookups=lambda ids: None, keys=None)
    signed = "https://cdn.videosdk.live/x.mp4?X-Amz-Signature=SECRETSIGNATURE123"
    with caplog.at_level(logging.INFO):
        answer = intake.handle(body("m4", signed).encode(), {"content-type": "application/json"})
    assert answer.status == 503
    assert "database or disk is full" in caplog.text and "SECRETSIGNATURE123" not in caplog.text


def test_attempts_spent_waiting_for_a_late_file_are_given_back(tmp_path: Path) -> None:
    # A file that reaches the CDN late is retried for the whole grace window; those attempts do not count,
    # so a transient fault after it still gets the budget (here 2) instead of failing the job for good.
    runtime = local_runtime(tmp_path, extra="[retry]\nmax_attempts = 2")  # the grace window: 10 min by default
    with HttpSource() as source:
        job_id = accept(runtime, runtime.settings, "m-late", source.file_url("late.mp4", size=1 << 20, missing=3,
                                                                           then_fail=1))
        outcomes = [copy_job.run_copy_job(runtime, job_id) for _ in range(5)]
    assert [o.state for o in outcomes] == ["pending"] * 4 + ["succeeded"], outcomes
    codes = [(o.error or "").split(":")[0] for o in outcomes[:4]]
    assert codes == ["source_not_found_yet"] * 3 + ["source_http_status"]
    assert runtime.ledger.job(job_id).attempts == 2  # type: ignore[union-attr]  # the 500 and the success
