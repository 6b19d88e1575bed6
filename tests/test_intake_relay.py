"""The receiver's relay (archiver.intake.relay): a 202 is a commit in the ledger, the broker gets the work
after it, in batches; a broker outage refuses nothing, and a batch sent twice copies once. Real Redis,
real ledger, real receiver over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis as redis_client

from archiver.copy.job import run_copy_job
from archiver.intake.relay import Relay
from archiver.runtime import Runtime
from archiver.worker.app import Publisher, create_app
from tests.emulators import ROOT, free_port, wait_until
from tests.http_source import HttpSource
from tests.receiver_harness import new_key, running_receiver, write_receiver_config
from tests.test_receiver import broker_work, stopped

SOURCE = """
[videosdk]
webhook_public_key = "{key}"
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
"""


def recording(source: HttpSource, name: str) -> dict:
    body = stopped(name, f"/encoded/videos/{name}.mp4")
    body["data"]["fileUrl"] = source.file_url(f"{name}.mp4", size=50_000)
    return body


def relay_messages(broker_url: str) -> int:
    client = redis_client.Redis.from_url(broker_url)
    return sum(json.loads(raw)["headers"]["task"] == "archiver.relay" for raw in client.lrange("events", 0, -1))


def wait_for_jobs(receiver: object, count: int, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(jobs := broker_work(receiver)[0]) < count and time.monotonic() < deadline:  # type: ignore[arg-type]
        time.sleep(0.05)
    return jobs


def start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or str(Path(sys.executable).parent / "redis-server")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: redis_client.Redis(port=port).ping(), "redis-server", proc)
    return proc


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """A real worker on the receiver's config: it fans relay batches out and copies."""
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "archiver.worker.app", "worker", "-Q",
                             "events,archive,maintenance", "-c", "1", "-n", f"relay-{os.getpid()}@%h",
                             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
                            cwd=ROOT, env={**os.environ, "ARCHIVER_CONFIG": str(config)}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    wait_until(lambda: b" ready." in log.read_bytes(), "worker", proc, timeout=60)
    return proc


def test_webhooks_accepted_while_the_broker_is_down_are_copied_once_it_is_back(tmp_path: Path) -> None:
    """Before: 503 while the broker was down (VideoSDK's retries, if any, were the only way in)."""
    private, pem = new_key()
    (tmp_path / "k.pem").write_text(pem)
    port = free_port()
    broker = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    worker = None
    try:
        config = write_receiver_config(tmp_path, url, SOURCE.format(key=tmp_path / "k.pem"))
        with running_receiver(config, private) as receiver, HttpSource() as source:
            redis_client.Redis.from_url(url).shutdown(nosave=True)
            broker.wait(timeout=10)
            answers = [receiver.post(recording(source, f"while-down-{n}")) for n in range(3)]
            assert [a.status_code for a in answers] == [202] * 3
            job_ids = sorted(j for a in answers for j in a.json()["jobs"])
            ready = httpx.get(receiver.url + "/readyz", timeout=30)
            assert ready.status_code == 200, ready.text  # it takes webhooks: it is ready
            assert ready.json()["broker"].startswith("unreachable") and "3 jobs wait" in ready.json()["broker"]
            assert "archiver_intake_unpublished 3.0" in httpx.get(receiver.url + "/metrics").text
            assert {j.state for j in receiver.ledger.jobs()} == {"pending"} and len(receiver.ledger.jobs()) == 3

            broker = start_redis(port)  # back, empty: what it held before is gone
            assert sorted(wait_for_jobs(receiver, 3)) == job_ids  # each once
            assert "archiver_intake_unpublished 0.0" in httpx.get(receiver.url + "/metrics").text
            assert httpx.get(receiver.url + "/readyz", timeout=30).json()["broker"] == "ok"

            worker = start_worker(config, tmp_path / "worker.log")
            deadline = time.monotonic() + 60
            while {j.state for j in receiver.ledger.jobs()} != {"succeeded"} and time.monotonic() < deadline:
                time.sleep(0.2)
            assert [j.attempts for j in receiver.ledger.jobs()] == [1, 1, 1], (tmp_path / "worker.log").read_text()
            assert sorted(p.name for p in (tmp_path / "archive").rglob("*.mp4")) == \
                [f"while-down-{n}.mp4" for n in range(3)]
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        broker.terminate()
        broker.wait(timeout=10)


def test_a_burst_is_put_on_the_broker_in_a_few_messages_naming_each_job_once(tmp_path: Path, redis_url: str) -> None:
    """Before: one broker message per job, published inside each webhook's transaction."""
    redis_client.Redis.from_url(redis_url).flushdb()
    private, pem = new_key()
    (tmp_path / "k.pem").write_text(pem)
    config = write_receiver_config(tmp_path, redis_url, f'[videosdk]\nwebhook_public_key = "{tmp_path}/k.pem"')
    with running_receiver(config, private) as receiver, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: receiver.post(stopped(f"burst-{n}")), range(60)))
        assert [a.status_code for a in answers] == [202] * 60
        job_ids = sorted(j for a in answers for j in a.json()["jobs"])
        assert len(set(job_ids)) == 60
        assert sorted(wait_for_jobs(receiver, 60)) == job_ids
        assert 1 <= relay_messages(redis_url) < 30
        # duplicates of the burst add no job and nothing on the broker
        again = list(pool.map(lambda n: receiver.post(stopped(f"burst-{n}")), range(60)))
        assert all(a.json().get("duplicate") for a in again)
        time.sleep(0.5)
        assert sorted(broker_work(receiver)[0]) == job_ids


def test_a_batch_sent_twice_copies_each_file_once(tmp_path: Path, redis_url: str) -> None:
    """The send raises after the broker took the batch (a lost answer): the relay sends it again, and the
    second message of each job is skipped by the worker's claim."""
    redis_client.Redis.from_url(redis_url).flushdb()
    private, pem = new_key()
    (tmp_path / "k.pem").write_text(pem)
    config = write_receiver_config(tmp_path, redis_url, SOURCE.format(key=tmp_path / "k.pem"))
    with running_receiver(config, private) as receiver, HttpSource() as source:
        publisher = Publisher(create_app(receiver.settings))
        sends: list[list[int]] = []

        def send_then_lose_the_answer(copies: list[int], lookups: list[int]) -> None:
            publisher.relay(copies, lookups)
            sends.append(list(copies))
            if len(sends) == 1:
                raise ConnectionError("the answer was lost after the broker took the batch")

        relay = Relay(send_then_lose_the_answer, linger=0.01)
        accepted = []
        for n in range(3):
            accepted += receiver.post(recording(source, f"twice-{n}")).json()["jobs"]
        receiver_jobs = sorted(wait_for_jobs(receiver, 3))  # the receiver's own relay sent them once
        relay.add(accepted)
        assert relay.flush(timeout=15) and sends[0] == sends[1] == accepted
        messages = sorted(broker_work(receiver)[0])
        assert messages == sorted(receiver_jobs + accepted * 2)  # every job named three times

        runtime = Runtime(settings=receiver.settings, ledger=receiver.ledger)
        outcomes = [run_copy_job(runtime, job_id).state for job_id in messages]
        assert outcomes.count("succeeded") == 3 and len(outcomes) == 9
        copies = sorted(p.name for p in (tmp_path / "archive").rglob("*.mp4"))
        assert copies == [f"twice-{n}.mp4" for n in range(3)]
        assert {j.state for j in receiver.ledger.jobs()} == {"succeeded"}
