"""The runbook verbs through the CLI entry point, `make run`'s `archiver up`, and the demo."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.cli import main
from providers import open_provider
from tests import http_source
from tests.emulators import ROOT, free_port
from tests.stack import Stack


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, Any]) -> Iterator[Stack]:
    running = Stack(root=stack_env["root"], broker_url=stack_env["broker_url"],
                    database_url=stack_env["database_url"], env=stack_env["env"], source=stack_env["source"],
                    buckets=stack_env["buckets"])
    running.metrics_port = free_port()  # type: ignore[attr-defined]
    running.start_worker(concurrency=2, metrics_port=running.metrics_port)  # type: ignore[attr-defined]
    yield running
    running.stop()


@pytest.fixture
def cli(stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--config", str(stack.config_path), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def event(meeting: str, url: str, path: str = "/encoded/videos/cli.mp4") -> dict[str, Any]:
    return {"webhookType": "recording-stopped",
            "data": {"meetingId": meeting, "sessionId": "s1", "filePath": path, "fileUrl": url}}


def test_replay_status_and_metrics(stack: Stack, cli: Any, tmp_path: Path) -> None:
    mid = f"ops-{secrets.token_hex(3)}"
    saved = tmp_path / "event.json"
    saved.write_text(json.dumps(event(mid, stack.source.file_url(f"{mid}.mp4"))))
    code, out, _ = cli("replay", str(saved))
    assert code == 0 and "enqueued" in out
    stack.wait_for_jobs(mid, 3)
    code, out, _ = cli("status", "--meeting", mid, "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3
    required = {"job_id", "destination", "meeting_id", "session_id", "participant_id", "file_path", "object_key",
                "state", "attempts", "bytes", "sha256", "error"}
    assert all(required <= set(r) and r["state"] == "succeeded" for r in rows)
    code, out, _ = cli("status", "--meeting", mid, "--since", "1h")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["JOB_ID", "DESTINATION", "MEETING_ID"]
    metrics = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics").text  # type: ignore[attr-defined]
    assert 'archiver_copies_total{destination="s3",outcome="succeeded"}' in metrics
    assert "archiver_copied_bytes_total" in metrics


def test_a_failed_job_is_shown_and_retried(stack: Stack, cli: Any) -> None:
    mid = f"ops-{secrets.token_hex(3)}"
    settings = stack.settings()
    s3 = settings.destination("s3")
    key = f"videosdk/{mid}/s1/cli.mp4"
    squatter = open_provider(s3.provider_url, **s3.options)
    squatter.upload(key, io.BytesIO(b"not the recording"))
    stack.send_event(event(mid, stack.source.file_url(f"{mid}.mp4")))
    stack.wait_for_jobs(mid, 3)
    code, out, _ = cli("status", "--state", "failed", "--meeting", mid, "--json")
    [failed] = json.loads(out)
    assert code == 1 and failed["destination"] == "s3" and failed["error"].startswith("conflict:")
    squatter.delete(key)  # the operator removes the stray object, then retries
    code, out, _ = cli("retry", "--failed", "--yes")
    assert code == 0 and str(failed["job_id"]) in out
    [job] = [j for j in stack.wait_for_jobs(mid, 3) if j.destination == "s3"]
    assert (job.state, job.attempts) == ("succeeded", 1)
    code, out, _ = cli("retry", str(job.job_id))  # a succeeded job is never re-run
    assert code == 1 and "not re-enqueued" in out


def test_archive_runs_in_this_process(stack: Stack, cli: Any, tmp_path: Path) -> None:
    mid = f"ops-{secrets.token_hex(3)}"
    saved = tmp_path / "event.json"
    saved.write_text(json.dumps(event(mid, stack.source.file_url(f"{mid}.mp4", size=(2 << 20) + 3))))
    code, out, _ = cli("archive", str(saved), "--dest", "gcs")
    assert code == 0, out
    assert out.count("succeeded") == 1 and "-> gcs" in out
    [job] = [j for j in stack.jobs(mid) if j.destination == "gcs"]
    assert job.sha256 == http_source.sha256(f"{mid}.mp4", (2 << 20) + 3)
    assert cli("archive", str(saved), "--dest", "nowhere")[0] == 2


def test_check_config_show_and_validate(stack: Stack, cli: Any, tmp_path: Path) -> None:
    code, out, _ = cli("check")
    assert code == 0 and out.count("pass") == 15  # five steps x three destinations
    code, out, _ = cli("check", "file:" + str(tmp_path / "probe"))
    assert code == 0
    code, out, _ = cli("check", f"az://no-such-container-{secrets.token_hex(3)}",
                       "-o", f"connection_string_env={next(k for k in stack.env if 'AZURE' in k)}")
    assert code == 1 and "FAIL" in out and "write" in out
    code, out, _ = cli("config", "show")
    shown = json.loads(out)
    assert code == 0 and [d["name"] for d in shown["destinations"]] == ["s3", "azure", "gcs"]
    assert "moto-secret-key" not in out and "Eby8vdM02x" not in out
    assert cli("config", "validate")[0] == 0
    broken = tmp_path / "broken.toml"
    broken.write_text('[[destinations]]\nname = "x"\nurl = "s3://b/{roomID}/"\n')
    code = main(["--config", str(broken), "config", "validate"])
    assert code == 2


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "PROMETHEUS_"))}
    return {**env, "HOME": str(tmp_path)}


def test_make_run_starts_on_an_empty_directory_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    umask = os.umask(0o022)  # the usual one, under which SQLite and dbm alone make 0644 files
    try:
        up = subprocess.Popen([sys.executable, "-m", "archiver.cli", "up", "--port", str(port)], cwd=tmp_path,
                              env=_clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        os.umask(umask)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                checks = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).json()  # webhook_key: offline
                if checks["broker"] == checks["ledger"] == "ok":
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise AssertionError("archiver up did not become ready")
        assert (tmp_path / ".archiver" / "ledger.db").exists()
        while not list((tmp_path / ".archiver").glob("celerybeat-schedule*")) and time.monotonic() < deadline + 60:
            time.sleep(0.3)  # beat writes its schedule once it has started
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=120)[0]
    assert up.returncode == 0, output[-3000:]
    # Webhook bodies (signed source URLs) live in these files: owner only, whatever the umask.
    state = tmp_path / ".archiver"
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in state.iterdir()}
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert {"ledger.db", "broker.db"} <= set(modes) and any(n.startswith("celerybeat-schedule") for n in modes)
    assert set(modes.values()) == {"0o600"}, modes
    assert f"receiver  POST http://127.0.0.1:{port}/webhooks/videosdk" in output
    assert "file:./archive/{meetingId}/{sessionId}/" in output and "archiver up: stopped" in output


def test_the_demo_completes(tmp_path: Path) -> None:
    demo = subprocess.run([sys.executable, "-m", "archiver.cli", "demo"], cwd=tmp_path, env=_clean_env(tmp_path),
                          capture_output=True, text=True, timeout=240)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    assert "matches the source" in demo.stdout and "succeeded" in demo.stdout
    # the whole loop: started through the API, state webhooks in, stopped, archived, in the timeline
    timeline = demo.stdout.split("Its recording timeline", 1)[1]
    assert [line.split()[2] for line in timeline.splitlines()[2:6]] == [
        "recording-starting", "recording-started", "recording-stopping", "recording-stopped"]
    # the source's digest beside the copy's, not one number for both (issue 13 item 16)
    source_sha = re.search(r"sha256 of the source ([0-9a-f]{64})", demo.stdout)
    copy_sha = re.search(r"sha256 of the copy +([0-9a-f]{64})", demo.stdout)
    assert source_sha and copy_sha and source_sha.group(1) == copy_sha.group(1), demo.stdout
    assert list((tmp_path / ".archiver" / "demo" / "archive").rglob("*.mp4"))


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["status", "--since", "yesterday-ish"])
    assert excinfo.value.code == 2
    assert "30m, 24h, 7d" in capsys.readouterr().err
    assert ROOT.exists()
