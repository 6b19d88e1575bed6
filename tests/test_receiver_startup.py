"""The receiver's first minutes: a busy port is refused first, in one line (exit 2, before any worker
starts); a signing key that cannot be fetched is named in the log with its URL, cause and fix, and
/readyz reports not ready until it can be had."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.emulators import ROOT, free_port
from tests.receiver_harness import running_receiver, write_receiver_config


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "PROMETHEUS_"))}
    return {**env, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("verb", ["up", "serve"])
def test_a_busy_port_is_refused_first_in_one_line(verb: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "archiver.cli", verb, "--port", str(port)], cwd=tmp_path,
                              env=_clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines() == [
        f"archiver {verb}: receiver cannot listen on 127.0.0.1:{port}: Address already in use; another process "
        f"listens there (`ss -ltnp 'sport = :{port}'` names it): stop it, or pass --port (`make run PORT=8080`) "
        "or set [receiver] port (ARCHIVER_RECEIVER_PORT)"]
    assert done.stdout == ""  # no banner, no receiver URL: nothing was started
    assert not (tmp_path / ".archiver").exists()  # refused before creating the embedded broker and ledger
    assert time.monotonic() - started < 30


def test_make_run_takes_a_port() -> None:
    # --no-print-directory: under CI's own `make test` this make is nested and would add "Leaving directory"
    planned = subprocess.run(["make", "-n", "--no-print-directory", "run", "PORT=8080"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.strip().splitlines()[-1].endswith("archiver up --port 8080"), planned.stdout


def test_an_unreachable_key_endpoint_is_named_and_readyz_says_not_ready(
        tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    closed = free_port()  # nothing listens: as without Internet, the fetch fails at once
    config = write_receiver_config(tmp_path, redis_url, f'[videosdk]\napi_base = "http://127.0.0.1:{closed}/v2"')
    url = f"http://127.0.0.1:{closed}/v2/public/rsa-public-key"
    with caplog.at_level(logging.WARNING), running_receiver(config, None) as receiver:
        deadline = time.monotonic() + 60
        while True:
            ready = httpx.get(receiver.url + "/readyz", timeout=30)
            assert ready.status_code == 503, ready.text  # from the first answer on: no key, not ready
            if url in ready.json()["webhook_key"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        reason = ready.json()["webhook_key"]
        assert reason.startswith(f"unavailable: GET {url} failed: connection failed")
        assert "Connection refused" in reason and "webhook_public_key" in reason
        assert ready.json()["broker"] == ready.json()["ledger"] == "ok"
        assert receiver.post({"webhookType": "recording-stopped", "data": {}}, sign=False,
                             signature="c2ln").status_code == 503
    logged = [r.getMessage() for r in caplog.records if r.name == "archiver.intake.signature"]
    assert logged and url in logged[0] and "Connection refused" in logged[0]
    assert "set [videosdk] webhook_public_key (ARCHIVER_VIDEOSDK_WEBHOOK_PUBLIC_KEY)" in logged[0]
