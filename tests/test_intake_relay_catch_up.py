"""A receiver process that dies holding accepted work it has not put on the broker yet costs minutes,
not the sweeper's requeue_after: the process started in its place sends it (archiver.intake.relay,
catch_up). Real `archiver serve --processes 2`, real Redis, real ledger (PostgreSQL too when
ARCHIVER_TEST_DATABASE_URL is set), a real worker, and no beat: nothing else could enqueue the job."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import redis as redis_client

from archiver.intake.record import accept_event
from archiver.intake.relay import Relay, unsent_before
from archiver.ledger.database import create_ledger_engine
from archiver.ledger.store import Accepted, Ledger, utcnow
from archiver.settings.config import load_settings
from tests.emulators import ROOT, free_port
from tests.http_source import HttpSource
from tests.receiver_harness import Receiver, new_key
from tests.test_intake_relay import recording, start_redis, start_worker
from tests.test_receiver import broker_work

DAY = 86_400


def write_config(root: Path, broker_url: str, database_url: str) -> Path:
    path = root / "archiver.toml"
    path.write_text(f"""
broker_url = "{broker_url}"
database_url = "{database_url}"
[videosdk]
webhook_public_key = "{root}/webhook.pem"
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
[retry]
requeue_after_seconds = {DAY}
[[destinations]]
name = "local"
url = "file://{root}/archive/{{meetingId}}/"
""")
    return path


@contextlib.contextmanager
def serving(config: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    proc = subprocess.Popen([sys.executable, "-m", "archiver.cli", "--config", str(config), "serve", "--port",
                             str(port), "--processes", "2"], cwd=config.parent, env={**env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not answers(f"http://127.0.0.1:{port}/healthz"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_work_a_killed_receiver_held_unsent_is_copied_once_a_new_one_starts(
        tmp_path: Path, database_url: str) -> None:
    """Before: the job waited for the lease sweeper, requeue_after (a day here) after its webhook."""
    private, pem = new_key()
    port = free_port()
    broker_url = f"redis://127.0.0.1:{port}/0"
    config = write_config(tmp_path, broker_url, database_url)
    (tmp_path / "webhook.pem").write_text(pem)
    settings = load_settings(config, environ={})
    engine = create_ledger_engine(database_url)
    ledger = Ledger(engine)
    broker = start_redis(port)
    worker = None
    try:
        with serving(config, tmp_path / "serve.log") as (serve, url), HttpSource() as source:
            receiver = Receiver(url, settings, ledger, private)
            redis_client.Redis.from_url(broker_url).shutdown(nosave=True)  # the relay cannot send
            broker.wait(timeout=10)
            answer = receiver.post(recording(source, "held-unsent"))
            assert answer.status_code == 202, answer.text
            [job_id] = answer.json()["jobs"]
            first = children(serve.pid)
            for child in first:  # whichever took the webhook dies holding its id
                os.kill(child, signal.SIGKILL)
            broker = start_redis(port)  # back, and empty: nothing was sent
            deadline = time.monotonic() + 30
            while job_id not in broker_work(receiver)[0]:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(0.1)
            assert set(children(serve.pid)).isdisjoint(first)  # sent by the processes started in their place

            worker = start_worker(config, tmp_path / "worker.log")
            deadline = time.monotonic() + 60
            while (job := ledger.job(job_id)) is None or job.state != "succeeded":
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(0.2)
            assert job.attempts == 1
            assert [p.name for p in (tmp_path / "archive").rglob("*.mp4")] == ["held-unsent.mp4"]
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        broker.terminate()
        broker.wait(timeout=10)
        engine.dispose()


def test_the_catch_up_sends_only_work_never_started_created_before_the_start(tmp_path: Path,
                                                                             database_url: str) -> None:
    """A job waiting for its retry keeps its backoff (its attempt refunded or not); work accepted after
    the start is the relay's own; work older than requeue_after is the sweeper's."""
    engine = create_ledger_engine(database_url)
    ledger = Ledger(engine)
    settings = load_settings(write_config(tmp_path, "redis://127.0.0.1:1/0", database_url), environ={})

    def accept(webhook_type: str, **data: str) -> Accepted:
        body = json.dumps({"webhookType": webhook_type, "data": {"meetingId": "m", "sessionId": "s", **data}})
        return accept_event(ledger, settings, body, verified=True)[1]

    def recorded(name: str) -> int:
        [job_id] = accept("recording-stopped", filePath=f"/encoded/videos/{name}.mp4",
                          fileUrl=f"http://127.0.0.1:1/{name}.mp4").created
        return job_id

    old = recorded("old")
    time.sleep(0.5)
    window_start = utcnow()
    never = recorded("never")
    [lookup] = accept("merge-recording-completed", id="merge-1").lookups
    for name, refund in (("retrying", False), ("refunded", True)):
        job_id = recorded(name)
        assert ledger.claim(job_id, "w", timedelta(minutes=1)) is not None
        assert ledger.fail(job_id, "w", code="source_unavailable", message="503", retrying=True, refund=refund)
    started = utcnow()
    recorded("after")
    sent: list[tuple[list[int], list[int]]] = []
    relay = Relay(lambda copies, lookups: sent.append((list(copies), list(lookups))), linger=0)
    relay.catch_up(unsent_before(ledger, started, (started - window_start).total_seconds())).join(10)
    assert relay.flush(10) and sent == [([never], [lookup])] and old != never
    engine.dispose()
