"""Logs: worker, beat and receiver write JSON lines off a terminal (a log shipper parses every line),
stdlib and structlog records come out alike, and no secret reaches a log.

The processes run as operators run them (`python -m archiver.cli VERB`), their output to a file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from archiver.observability.logs import configure_logging
from tests.emulators import ROOT, free_port
from tests.http_source import HttpSource
from tests.lifecycle_helpers import RedisServer, Service, event_file, source_policy

PASSWORD = "log-" + secrets.token_hex(8)  # the broker's password: must appear in no log line


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD)
    server.start()
    yield server
    server.stop()


def _lines(service: Service) -> list[dict[str, Any]]:
    """Every line of the service's output as JSON; fails naming the first line that is not."""
    entries = []
    for number, line in enumerate(service.log.read_text(errors="replace").splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"{service.log.name} line {number} is not JSON: {line!r}\n"
                                 f"{service.output()}") from None
        assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys(), line
        entries.append(entry)
    return entries


def _wait(what: str, ready: Any, service: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if service.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen (exit {service.proc.returncode})\n{service.output()}")
        time.sleep(0.2)


def test_worker_and_beat_write_json_lines_off_a_terminal(tmp_path: Path, redis_server: RedisServer,
                                                         source: HttpSource) -> None:
    (tmp_path / "archiver.toml").write_text(
        f'broker_url = "{redis_server.url}"\ndatabase_url = "sqlite:///{tmp_path}/ledger.db"\n{source_policy()}'
        f'[[destinations]]\nname = "local"\nurl = "file://{tmp_path}/archive/{{meetingId}}/"\n')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "PROMETHEUS_"))},
           "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    worker = Service.start(tmp_path, env, "worker", "--concurrency", "1")
    beat = Service.start(tmp_path, env, "beat", "--schedule", str(tmp_path / "beat-schedule"))
    try:
        worker.wait_ready()
        meeting = f"logs-{secrets.token_hex(3)}"
        # A signed URL's token (ignored by the stand-in CDN) must not reach the log with the task's arguments.
        body = event_file(tmp_path, meeting, source.file_url(f"{meeting}.mp4", size=100_000) + f"&t={PASSWORD}")
        subprocess.run([sys.executable, "-m", "archiver.cli", "replay", str(body)], cwd=tmp_path, env=env,
                       check=True, capture_output=True)
        _wait("the copy's log line", lambda: any(
            re.search(r"job \d+: succeeded\b", e["message"]) for e in _lines(worker)), worker)
        _wait("beat's start", lambda: any("beat: Starting" in e["message"] for e in _lines(beat)), beat)
    finally:
        worker.stop()
        beat.stop()
    worker_lines, beat_lines = _lines(worker), _lines(beat)  # every line, the stop included
    assert any(e["message"].endswith(" ready.") for e in worker_lines)
    copied = next(e for e in worker_lines if re.search(r"job \d+: succeeded\b", e["message"]))
    # A task's lines say which task (Celery's plain format put this in its prefix).
    assert copied["task"] == "archiver.copy_file" and copied["task_id"] and copied["level"] == "info"
    assert copied["logger"] == "archiver.worker.tasks"
    assert any(e["logger"] == "archiver.worker" and "shutdown" in e["message"] for e in worker_lines)
    assert any(e["logger"] == "celery.beat" for e in beat_lines)
    for log in (worker.log, beat.log):
        assert PASSWORD not in log.read_text(), f"the broker password or the URL's token is in {log.name}"


def test_the_receiver_writes_json_lines(tmp_path: Path, redis_server: RedisServer) -> None:
    """Everything `archiver serve` writes is JSON, uvicorn's records included."""
    (tmp_path / "archiver.toml").write_text(
        f'broker_url = "{redis_server.url}"\ndatabase_url = "sqlite:///{tmp_path}/ledger.db"\n'
        f'[videosdk]\nverify_signatures = false\n'
        f'[[destinations]]\nname = "local"\nurl = "file://{tmp_path}/archive/{{meetingId}}/"\n')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "PROMETHEUS_"))},
           "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    port = free_port()
    serve = Service.start(tmp_path, env, "serve", "--port", str(port))
    try:
        _wait("the receiver's start", lambda: any("archiver receiver: POST" in e["message"]
                                                  for e in _lines(serve)), serve)
    finally:
        serve.stop()
    lines = _lines(serve)
    assert any("(signatures NOT verified)" in e["message"] for e in lines)
    assert PASSWORD not in serve.log.read_text()


def test_stdlib_and_structlog_records_share_one_format_without_secrets(
        capsys: pytest.CaptureFixture[str], restore_root_logging: None) -> None:
    configure_logging(json_lines=True)
    logging.getLogger("archiver.test").warning(
        "broker redis://:hunter2@host:6379/0 refused; source https://cdn/x.mp4?sig=abc123&v=1",
        extra={"job_id": 7, "password": "hunter2"})
    structlog.get_logger("archiver.test").info("copied %s", "x.mp4", job_id=8,
                                                connection_string="DefaultEndpointsProtocol=https;AccountKey=k3y")
    try:
        raise RuntimeError("AccountKey=k3y; while talking to s3://AKIA:s3cret@bucket/")
    except RuntimeError:
        logging.getLogger("archiver.test").exception("failed")
    err = capsys.readouterr().err
    first, second, third = (json.loads(line) for line in err.splitlines())
    assert first["logger"] == "archiver.test" and first["level"] == "warning" and first["job_id"] == 7
    assert first["message"] == "broker redis://:***@host:6379/0 refused; source https://cdn/x.mp4?sig=***&v=1"
    assert second["logger"] == "archiver.test" and second["message"] == "copied x.mp4" and second["job_id"] == 8
    assert list(first)[:4] == list(second)[:4] == ["time", "level", "logger", "message"]
    assert "RuntimeError" in third["exception"] and third["level"] == "error"
    for secret in ("hunter2", "abc123", "k3y", "s3cret"):
        assert secret not in err


def test_a_terminal_gets_readable_lines(capsys: pytest.CaptureFixture[str], restore_root_logging: None) -> None:
    configure_logging(json_lines=False)
    logging.getLogger("archiver.test").info("job %s: succeeded", 5, extra={"destination": "s3"})
    err = capsys.readouterr().err
    assert "job 5: succeeded" in err and "destination=s3" in err and not err.startswith("{")


def test_a_bad_archiver_config_does_not_break_imports(tmp_path: Path) -> None:
    """Importing the tasks or celeryconfig reads no settings; the error comes when they are used."""
    bad = tmp_path / "archiver.toml"
    bad.write_text("broker_url = [")
    env = {**os.environ, "ARCHIVER_CONFIG": str(bad), "PYTHONPATH": str(ROOT)}
    imported = subprocess.run([sys.executable, "-c", "import celeryconfig, archiver.worker.tasks"], env=env,
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert imported.returncode == 0, imported.stderr
    used = subprocess.run([sys.executable, "-c", "from archiver.worker.app import app; app.conf.broker_url"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert used.returncode != 0 and "not valid TOML" in used.stderr
