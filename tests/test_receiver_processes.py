"""`archiver serve --processes N`: several receiver processes on one port, supervised, metrics summed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from archiver.ledger.models import Event
from tests.receiver_harness import ServedReceiver, served_receiver


def children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return {int(p) for p in found}


def webhook(n: int) -> dict:
    return {"webhookType": "recording-stopped",
            "data": {"meetingId": "jvsg-8rjn-j304", "sessionId": f"session-{n}",
                     "filePath": f"/encoded/videos/{n}.mp4", "fileUrl": f"https://cdn.videosdk.live/encoded/videos/{n}.mp4"}}


def accepted_total(receiver: ServedReceiver) -> float:
    text = httpx.get(receiver.url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('archiver_webhook_requests_total{status="202"'))


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_two_processes_share_the_port_and_one_metrics_view(tmp_path: Path) -> None:
    with served_receiver(tmp_path, "", nofile=1024, serve_args=["--processes", "2"]) as receiver:
        wait_for(lambda: len(children(receiver.proc.pid)) == 2, 30, "two receiver processes")
        answers = [receiver.post(webhook(n)).status_code for n in range(30)]
        assert answers == [202] * 30
        # Every request counted once whichever process answered it, and whichever answers /metrics.
        assert {accepted_total(receiver) for _ in range(6)} == {30.0}
        # Computed by the process that answers, once: not one series per process.
        text = httpx.get(receiver.url + "/metrics", timeout=10).text
        assert [line for line in text.splitlines() if line.startswith("archiver_signature_key_available")] == [
            "archiver_signature_key_available 1.0"]
        with receiver.ledger.sessions() as db:
            assert db.scalar(select(func.count()).select_from(Event)) == 30


def test_a_dead_process_is_replaced_and_the_port_keeps_answering(tmp_path: Path) -> None:
    with served_receiver(tmp_path, "", nofile=1024, serve_args=["--processes", "2"]) as receiver:
        wait_for(lambda: len(children(receiver.proc.pid)) == 2, 30, "two receiver processes")
        first = children(receiver.proc.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(children(receiver.proc.pid) - {victim}) == 2, 30, "a replacement process")
        assert [receiver.post(webhook(n)).status_code for n in range(10)] == [202] * 10
        assert f"receiver process {victim} exited" in receiver.log()


def test_sigterm_stops_every_process(tmp_path: Path) -> None:
    with served_receiver(tmp_path, "", nofile=1024, serve_args=["--processes", "2"]) as receiver:
        wait_for(lambda: len(children(receiver.proc.pid)) == 2, 30, "two receiver processes")
        pids = children(receiver.proc.pid)
        receiver.proc.send_signal(signal.SIGTERM)
        assert receiver.proc.wait(timeout=30) == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_bad_process_count_is_refused_with_the_range(tmp_path: Path) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "archiver"), "serve", "--processes", "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Invalid value for '--processes': must be a whole number from 1 to 64, not 0" in done.stderr
