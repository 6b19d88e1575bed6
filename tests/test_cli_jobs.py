"""The job verbs as an operator sees them: archive's progress and its answers for wrong input or a failed
job, retry's confirmation and dry run, status of failed, flagged and running copies, `status --summary`,
and prune's preview while retention is off (issue 12 item 3, issue 13 items 13, 14, 15, 18, 19)."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from archiver.ledger.database import create_ledger_engine
from archiver.ledger.store import Ledger
from tests.http_source import HttpSource
from tests.test_cli import run

pytestmark = pytest.mark.usefixtures("restore_root_logging")
SIZE = 1 << 20


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    config = tmp_path / "archiver.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/ledger.db"\n'
                      f'broker_url = "sqla+sqlite:///{tmp_path}/broker.db"\n\n'
                      '[source]\nallow_hosts = ["127.0.0.1"]\nallow_http = true\n'
                      'allowed_networks = ["127.0.0.1/32"]\n\n'
                      f'[[destinations]]\nname = "disk"\nurl = "file://{tmp_path}/disk/{{meetingId}}/"\n')
    for name in ("ARCHIVER_DATABASE_URL", "ARCHIVER_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARCHIVER_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "db", "upgrade")[0] == 0
    return {"tmp": tmp_path, "ledger": Ledger(create_ledger_engine(f"sqlite:///{tmp_path}/ledger.db"))}


def event(tmp: Path, source: HttpSource, webhook_type: str = "recording-stopped") -> tuple[Path, str, Path]:
    """A saved webhook body for a fresh 1 MiB recording: (its file, the meeting, where the copy lands)."""
    meeting = f"mtg-{secrets.token_hex(4)}"
    name = f"{meeting}.mp4"
    path = tmp / f"{meeting}.json"
    path.write_text(json.dumps({"webhookType": webhook_type, "data": {
        "meetingId": meeting, "sessionId": "s1", "filePath": f"/encoded/videos/{name}",
        "fileUrl": source.file_url(name, size=SIZE)}}))
    return path, meeting, tmp / "disk" / meeting / name


def test_archive_progress_has_rate_and_eta_and_ends_with_a_summary(
        env: dict[str, Any], source: HttpSource, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("archiver.cli.archive.PROGRESS_EVERY", 256 << 10)
    saved, _, landed = event(env["tmp"], source)
    code, out, err = run(capsys, "archive", str(saved))
    assert code == 0 and landed.stat().st_size == SIZE, err
    lines = out.strip().splitlines()
    progress = [line for line in lines if " of 1.0 MiB " in line]
    assert len(progress) >= 2, out
    for line in progress:
        assert re.search(r": [\d.]+ (KiB|MiB) of 1\.0 MiB \(\d+%\), [\d.]+ (B|KiB|MiB|GiB)/s, ETA \d+:\d\d$",
                         line), line
    assert re.search(r"job \d+ -> disk: succeeded, 1\.0 MiB in [\d.]+ s \([\d.]+ (KiB|MiB|GiB)/s\)$", lines[-1]), out


def test_archive_of_a_misspelt_webhook_type_says_it_is_not_a_recording_event(
        env: dict[str, Any], source: HttpSource, capsys: pytest.CaptureFixture[str]) -> None:
    saved, meeting, _ = event(env["tmp"], source, "recording-stoped")
    code, out, err = run(capsys, "archive", str(saved))
    assert code == 2 and out == ""
    assert f"{saved}: webhookType 'recording-stoped' is not a recording event (did you mean " \
           f"'recording-stopped'?); nothing to archive" in err
    assert env["ledger"].jobs(meeting_id=meeting) == []


def _failed_job(env: dict[str, Any], source: HttpSource, capsys: pytest.CaptureFixture[str]) -> tuple[Path, int]:
    """Archive a recording whose key is taken by another file: the copy fails (conflict)."""
    saved, meeting, landed = event(env["tmp"], source)
    landed.parent.mkdir(parents=True)
    landed.write_bytes(b"somebody else's file")
    code, _, _ = run(capsys, "archive", str(saved))
    [job] = env["ledger"].jobs(meeting_id=meeting)
    assert code == 1 and job.state == "failed" and job.error_code == "conflict"
    return saved, job.job_id


def test_archive_of_a_failed_job_suggests_retry_and_a_retried_job_drops_its_old_error(
        env: dict[str, Any], source: HttpSource, capsys: pytest.CaptureFixture[str]) -> None:
    saved, job_id = _failed_job(env, source, capsys)
    code, out, _ = run(capsys, "archive", str(saved))
    assert code == 1 and f"job {job_id} -> disk: already failed (conflict: " in out
    assert f"run `archiver retry {job_id}` to copy it again" in out
    assert run(capsys, "retry", str(job_id))[0] == 0
    code, out, _ = run(capsys, "status", "--json")
    [row] = [r for r in json.loads(out) if r["job_id"] == job_id]
    assert (row["state"], row["error"]) == ("pending", None)  # the conflict is history, not its state now


def test_retry_failed_asks_first_and_refuses_without_a_terminal(
        env: dict[str, Any], source: HttpSource, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, job_id = _failed_job(env, source, capsys)
    code, out, err = run(capsys, "retry", "--failed")
    assert code == 2 and "refusing without a terminal" in err and "--yes" in err and "--dry-run" in err
    code, out, _ = run(capsys, "retry", "--failed", "--dry-run")
    assert code == 0 and f"would re-enqueue 1 job(s): {job_id} (dry run: nothing changed)" in out
    assert env["ledger"].job(job_id).state == "failed"  # type: ignore[union-attr]
    monkeypatch.setattr("archiver.cli.common.interactive", lambda: True)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("n\n"))
    code, _, err = run(capsys, "retry", "--failed")
    assert code == 1 and "re-run 1 failed job(s)?" in err
    assert env["ledger"].job(job_id).state == "failed"  # type: ignore[union-attr]
    code, out, _ = run(capsys, "retry", "--failed", "--yes", "--json")
    assert code == 0 and json.loads(out)["jobs"] == [job_id]


def test_status_failed_shows_copies_verify_flagged(env: dict[str, Any], source: HttpSource,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    saved, meeting, landed = event(env["tmp"], source)
    assert run(capsys, "archive", str(saved))[0] == 0
    landed.unlink()  # deleted behind the archiver's back
    assert run(capsys, "verify")[0] == 1
    code, out, _ = run(capsys, "status", "--state", "failed", "--meeting", meeting, "--json")
    [row] = json.loads(out)
    assert code == 1 and (row["state"], row["flag"]) == ("succeeded", "verify_missing")
    code, out, _ = run(capsys, "status", "--state", "failed", "--meeting", meeting)
    header, line = out.strip().splitlines()[:2]  # then the meeting's (empty) recording timeline
    assert code == 1 and "FLAG" in header.split() and "verify_missing" in line.split()


def test_running_jobs_show_size_and_age_and_the_summary_counts_everything(
        env: dict[str, Any], source: HttpSource, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import timedelta

    _failed_job(env, source, capsys)
    saved, _, _ = event(env["tmp"], source)
    assert run(capsys, "archive", str(saved))[0] == 0
    pending, running = event(env["tmp"], source), event(env["tmp"], source)
    from archiver.intake.record import accept_event
    from archiver.settings.config import load_settings

    for body in (pending[0], running[0]):  # recorded, not copied (no worker here)
        accept_event(env["ledger"], load_settings(), body.read_text(), verified=False, source="cli")
    [job] = env["ledger"].jobs(meeting_id=running[1])
    assert env["ledger"].claim(job.job_id, "host:1:1", timedelta(minutes=5)) is not None
    # the worker's lease renewal reports how far the copy is
    assert env["ledger"].renew(job.job_id, "host:1:1", timedelta(minutes=5), done=3 << 19)
    code, out, _ = run(capsys, "status", "--state", "running", "--json")
    [row] = json.loads(out)
    assert code == 0 and row["job_id"] == job.job_id and 0 <= row["age_seconds"] < 60 and row["done"] == 3 << 19
    code, out, _ = run(capsys, "status", "--state", "running")
    assert out.split()[:8] == ["JOB_ID", "DESTINATION", "MEETING_ID", "ATTEMPTS", "COPIED", "AGE", "LEASE_OWNER",
                               "OBJECT_KEY"] and re.search(r"\s1\.5 MiB\s+\d+s\s+host:1:1", out), out
    code, out, _ = run(capsys, "status", "--summary", "--json")
    summary = json.loads(out)
    assert code == 1  # a failure is listed
    assert summary["counts"] == {"disk": {"failed": 1, "succeeded": 1, "pending": 1, "running": 1}}
    assert summary["failures"] == {"conflict": 1}
    assert summary["oldest_pending"]["meeting_id"] == pending[1]
    assert [(r["job_id"], r["done"]) for r in summary["running"]] == [(job.job_id, 3 << 19)]
    code, out, _ = run(capsys, "status", "--summary")
    assert "Copies by state" in out and re.search(r"disk\s+1\s+1\s+1\s+1\s+0\s+0", out), out
    assert "oldest pending: job " in out and "Failures by code" in out and re.search(r"conflict\s+1", out)


def test_prune_dry_run_works_while_retention_is_off(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prune", "--dry-run")
    assert code == 0 and "dry run, nothing deleted: no recordings awaiting deletion" in out
    assert "retention is off" in out
    code, _, err = run(capsys, "prune")
    assert code == 2 and 'delete_from_videosdk = "after-verified"' in err


def test_a_worker_copy_reports_its_progress_to_status(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from archiver.copy.job import run_copy_job
    from archiver.intake.record import accept_event
    from archiver.runtime import Runtime
    from archiver.settings.config import load_settings

    monkeypatch.setenv("ARCHIVER_LEASE_SECONDS", "3")  # renewed (and progress recorded) every second
    settings = load_settings()
    runtime = Runtime.create(settings)
    with HttpSource() as slow:  # 2 MiB at 256 KiB per 0.6 s: about 5 s of copying
        body = json.dumps({"webhookType": "recording-stopped", "data": {
            "meetingId": "slow", "sessionId": "s1", "filePath": "/encoded/videos/slow.mp4",
            "fileUrl": slow.file_url("slow.mp4", size=2 << 20, trickle=f"{256 << 10}:0.6")}})
        _, accepted = accept_event(runtime.ledger, settings, body, verified=False, source="cli")
        worker = threading.Thread(target=run_copy_job, args=(runtime, accepted.job_ids[0]))
        worker.start()
        seen: list[int] = []
        while worker.is_alive():
            _, out, _ = run(capsys, "status", "--state", "running", "--json")
            seen += [r["done"] for r in json.loads(out) if r["done"]]
            time.sleep(0.5)
        worker.join()
    assert len(seen) >= 2 and seen == sorted(seen) and 0 < seen[0] < 2 << 20, seen
    assert runtime.ledger.job(accepted.job_ids[0]).state == "succeeded"  # type: ignore[union-attr]
