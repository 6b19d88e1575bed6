"""A running archiver for end-to-end tests: a config file, a migrated ledger, a broker with empty
queues, destinations on the three emulators, the stand-in CDN, and real `celery worker` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.ledger.database import create_ledger_engine
from archiver.ledger.store import JobRecord, Ledger
from archiver.settings.config import Settings, load_settings
from tests.backends import create_az_container, create_gcs_bucket, create_s3_bucket, unique_name
from tests.emulators import ROOT
from tests.http_source import HttpSource

S3_SECRET_VARIABLE = "ARCHIVER_TEST_S3_SECRET"
AZURE_VARIABLE = "ARCHIVER_TEST_AZURE_CONNECTION"
QUEUES = ("events", "archive", "maintenance")


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            if b" ready." in self.log.read_bytes():
                return
            time.sleep(0.1)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.log.read_text()[-4000:]}")

    def kill9(self) -> None:
        """SIGKILL the whole worker (main process and pool children): nothing gets to clean up."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        # SIGTERM to the main process only: a warm shutdown lets the pool finish its task. (A signal
        # to the whole group would kill the pool child mid-task.)
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()


@dataclass
class Stack:
    root: Path
    broker_url: str
    database_url: str
    env: dict[str, str]
    source: HttpSource
    buckets: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.root / "archiver.toml"

    def settings(self) -> Settings:
        return load_settings(self.config_path, environ=self.env)

    def ledger(self) -> Ledger:
        return Ledger(create_ledger_engine(self.database_url))

    def start_worker(self, concurrency: int = 2, queues: tuple[str, ...] = QUEUES,
                     metrics_port: int | None = None) -> Worker:
        """A worker as operators run it (`archiver worker`) when metrics are wanted, else celery's own CLI."""
        n = len(self.workers)
        log = self.root / f"worker{n}.log"
        argv = ([sys.executable, "-m", "archiver.cli", "worker", "--concurrency", str(concurrency),
                 "--metrics-port", str(metrics_port)] if metrics_port else
                [sys.executable, "-m", "celery", "-A", "archiver.worker.app", "worker", "-Q", ",".join(queues),
                 "-c", str(concurrency), "-n", f"w{n}-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
                 "--without-heartbeat", "-l", "INFO"])
        proc = subprocess.Popen(
            argv,
            cwd=ROOT, env={**os.environ, **self.env}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        worker = Worker(proc, log)
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def send_event(self, body: dict[str, Any] | str) -> None:
        """Deliver a webhook body the way `archiver replay` does: onto the events queue."""
        text = body if isinstance(body, str) else json.dumps(body)
        with _producer(self.broker_url) as app:
            app.send_task("archiver.accept_event", (text, "test", True), queue="events", routing_key="events",
                          exchange="events")

    def jobs(self, meeting_id: str) -> list[JobRecord]:
        return self.ledger().jobs(meeting_id=meeting_id)

    def wait_for_jobs(self, meeting_id: str, count: int, done: Callable[[JobRecord], bool] | None = None,
                      timeout: float = 60) -> list[JobRecord]:
        finished = done or (lambda j: j.state in ("succeeded", "failed"))
        deadline = time.monotonic() + timeout
        jobs: list[JobRecord] = []
        while time.monotonic() < deadline:
            jobs = self.jobs(meeting_id)
            if len(jobs) >= count and all(finished(j) for j in jobs):
                return jobs
            time.sleep(0.2)
        logs = "\n".join(w.log.read_text()[-3000:] for w in self.workers)
        raise AssertionError(f"jobs of {meeting_id} not finished in {timeout} s: "
                             f"{[(j.destination, j.state, j.error_code) for j in jobs]}\n{logs}")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


class _producer:
    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.app = Celery("archiver-tests", broker=broker_url)
        self.app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry=False)

    def __enter__(self) -> Any:
        return self.app

    def __exit__(self, *exc: object) -> None:
        self.app.close()


def empty_queues(broker_url: str) -> None:
    from kombu import Connection, Exchange, Queue

    with Connection(broker_url) as conn:
        channel = conn.default_channel
        for name in QUEUES:
            Queue(name, Exchange(name, type="direct"), routing_key=name, channel=channel).declare()
            channel.queue_purge(name)
        if broker_url.startswith("redis"):
            conn.default_channel.client.flushdb()  # also unacked and scheduled (ETA) messages


def write_config(root: Path, *, broker_url: str, database_url: str, moto_url: str, azure_connection: str,
                 gcs_url: str, extra: str = "", only: tuple[str, ...] = ("s3", "azure", "gcs"),
                 ) -> tuple[dict[str, str], dict[str, str]]:
    buckets = {"s3": unique_name(), "azure": unique_name(), "gcs": unique_name()}
    create_s3_bucket(moto_url, buckets["s3"])
    create_az_container(azure_connection, buckets["azure"])
    create_gcs_bucket(gcs_url, buckets["gcs"])
    (root / "archiver.toml").write_text(f"""
broker_url = "{broker_url}"
database_url = "{database_url}"
visibility_timeout = 30
lease_seconds = 6
{extra}
[source]
allow_hosts = ["127.0.0.1", "169.254.169.254", "::1", "10.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
# no grace window: a 404/410/403 here is final at once (the grace itself is tested in test_source.py)
not_found_grace_minutes = 0

[retry]
base_delay = 0.2
max_delay = 1.0
max_attempts = 4

[[destinations]]
name = "s3"
url = "s3://{buckets['s3']}/videosdk/{{meetingId}}/{{sessionId}}/"
endpoint_url = "{moto_url}"
region = "us-east-1"
addressing_style = "path"
access_key_id = "testing"
secret_access_key_env = "{S3_SECRET_VARIABLE}"
manifest = true
part_size = "5MiB"

[[destinations]]
name = "azure"
url = "az://{buckets['azure']}/{{meetingId}}/{{yyyy}}/{{MM}}/{{dd}}/"
connection_string_env = "{AZURE_VARIABLE}"

[[destinations]]
name = "gcs"
url = "gs://{buckets['gcs']}/rec/{{meetingId}}/{{participantId|room}}/{{filename}}"
endpoint = "{gcs_url}"
project = "test"
""")
    if only != ("s3", "azure", "gcs"):
        text = (root / "archiver.toml").read_text()
        head, *tables = text.split("[[destinations]]")
        kept = [t for t in tables if any(f'name = "{name}"' in t for name in only)]
        (root / "archiver.toml").write_text("[[destinations]]".join([head, *kept]))
    env = {"ARCHIVER_CONFIG": str(root / "archiver.toml"), S3_SECRET_VARIABLE: "moto-secret-key",
           AZURE_VARIABLE: azure_connection}
    return env, buckets
