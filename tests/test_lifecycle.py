"""Every process either works or exits: start on embedded defaults in an empty folder, refuse a broker
or ledger it cannot use with one line, leave when the broker stays away, stop within its bound.

Each process runs as operators run it (`python -m archiver.cli VERB`), in a temp folder, with no
ARCHIVER_* variable but the ones a test sets.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import JobRecord, Ledger
from tests.backends import create_s3_bucket
from tests.emulators import ROOT, free_port
from tests.http_source import HttpSource
from tests.lifecycle_helpers import RedisServer, Service, event_file, source_policy

TRICKLE = "65536:0.05"  # at most 1.3 MB/s: a 256 MiB recording would take minutes
FATAL_SECONDS = 20  # a process that cannot start has said so and exited by then (it takes about 2 s)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "PROMETHEUS_"))}
    return {**clean, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(password="life-secret")  # so that a wrong password is refused
    server.start()
    yield server
    server.stop()


def _ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/ledger/ledger.db"
    upgrade(create_ledger_engine(url))
    return url


def _jobs(database_url: str, meeting: str) -> list[JobRecord]:
    return Ledger(create_ledger_engine(database_url)).jobs(meeting_id=meeting)


def _wait(what: str, ready: Callable[[], object], timeout: float = 60, service: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if service is not None and service.proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {service.proc.returncode}\n{service.output()}")
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s\n{service.output() if service else ''}")


# ---- starting on embedded defaults in an empty folder ------------------------------------------------

def test_a_worker_in_an_empty_folder_creates_what_it_needs_and_runs_a_job(tmp_path: Path, env: dict[str, str],
                                                                         source: HttpSource) -> None:
    (tmp_path / "archiver.toml").write_text(source_policy())  # broker, ledger, destination: the defaults
    worker = Service.start(tmp_path, env, "worker", "--concurrency", "1")
    try:
        worker.wait_ready()
        assert (tmp_path / ".archiver" / "broker.db").exists() and (tmp_path / ".archiver" / "ledger.db").exists()
        meeting = f"life-{secrets.token_hex(3)}"
        body = event_file(tmp_path, meeting, source.file_url(f"{meeting}.mp4", size=300_000))
        subprocess.run([sys.executable, "-m", "archiver.cli", "replay", str(body)], cwd=tmp_path, env=env,
                       check=True, capture_output=True)
        ledger = f"sqlite:///{tmp_path}/.archiver/ledger.db"
        _wait("the copy", lambda: [j.state for j in _jobs(ledger, meeting)] == ["succeeded"], service=worker)
        assert (tmp_path / "archive" / meeting / "s1" / "life.mp4").stat().st_size == 300_000
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, worker.output()


@pytest.mark.parametrize("verb", ["beat", "serve"])
def test_beat_and_serve_in_an_empty_folder_start_and_stop_at_once(verb: str, tmp_path: Path,
                                                                  env: dict[str, str]) -> None:
    port = free_port()
    service = Service.start(tmp_path, env, *(["serve", "--port", str(port)] if verb == "serve" else ["beat"]))
    try:
        if verb == "serve":
            def ready() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False
            _wait("serve /healthz", ready, service=service)
        else:
            _wait("beat", lambda: b"beat: Starting" in service.log.read_bytes(), service=service)
    finally:
        elapsed = service.stop()
    # uvicorn re-raises the signal once it has shut down (a supervisor reads that as a clean stop).
    assert service.proc.returncode in (0, -signal.SIGTERM) and elapsed < 10, (elapsed, service.output())


# ---- a broker or ledger that cannot be used: one line, exit 2, in seconds ----------------------------

def _fatal_cases() -> list[tuple[str, str, str]]:
    """(verb, variable, url); {tmp}, {closed} and {redis} are filled in by the test."""
    cases = [
        ("worker", "ARCHIVER_BROKER_URL", "sqla+sqlite:///{tmp}/a-file/broker.db"),  # a file where a folder goes
        ("worker", "ARCHIVER_BROKER_URL", "sqla+sqlite:////proc/archiver-nowhere/broker.db"),  # uncreatable
        ("worker", "ARCHIVER_DATABASE_URL", "sqlite:///{tmp}/a-file/ledger.db"),
        ("worker", "ARCHIVER_BROKER_URL", "redis://127.0.0.1:{closed}/0"),
        ("worker", "ARCHIVER_BROKER_URL", "redis://:not-the-password@127.0.0.1:{redis}/0"),  # refused
        ("worker", "ARCHIVER_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/archiver_does_not_exist"),
        ("worker", "ARCHIVER_DATABASE_URL", "postgresql+psycopg://postgres:pg-secret@127.0.0.1:{closed}/archiver"),
        ("beat", "ARCHIVER_BROKER_URL", "redis://127.0.0.1:{closed}/0"),
        ("serve", "ARCHIVER_BROKER_URL", "sqla+sqlite:///{tmp}/a-file/broker.db"),
        ("serve", "ARCHIVER_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/archiver_does_not_exist"),
        ("up", "ARCHIVER_BROKER_URL", "redis://127.0.0.1:{closed}/0"),
    ]
    if amqp := os.environ.get("ARCHIVER_TEST_AMQP_URL"):  # the broker matrix: RabbitMQ refusing a login
        user = amqp.split("://", 1)[1].split(":", 1)[0]
        cases.append(("worker", "ARCHIVER_BROKER_URL", f"amqp://{user}:not-the-password@"
                                                       f"{amqp.rsplit('@', 1)[1]}"))
    return cases


@pytest.mark.parametrize(("verb", "variable", "url"), _fatal_cases())
def test_a_broker_or_ledger_that_cannot_be_used_ends_the_process_with_one_line(
        verb: str, variable: str, url: str, tmp_path: Path, env: dict[str, str], redis_server: RedisServer) -> None:
    (tmp_path / "a-file").write_text("a file where the folder should be")
    url = url.format(tmp=tmp_path, closed=free_port(), redis=redis_server.port)
    # The other one of the pair works, so the process gets as far as the one under test.
    env = {**env, "ARCHIVER_DATABASE_URL": _ledger(tmp_path), "ARCHIVER_BROKER_URL": redis_server.url, variable: url}
    argv = {"up": ["up", "--port", str(free_port())], "serve": ["serve", "--port", str(free_port())]}.get(verb, [verb])
    started = time.monotonic()
    try:
        run = subprocess.run([sys.executable, "-m", "archiver.cli", *argv], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{verb} neither worked nor exited: {str(exc.stderr)[-2000:]}") from None
    elapsed = time.monotonic() - started
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and elapsed < FATAL_SECONDS, (run.returncode, elapsed, run.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f"archiver {verb}: "), run.stderr[-2000:]
    shown = url.replace(":not-the-password@", ":***@").replace(":pg-secret@", ":***@")
    assert shown in lines[0] and variable in lines[0], lines[0]
    assert "not-the-password" not in run.stderr and "pg-secret" not in run.stderr


# ---- a broker lost while the worker runs -------------------------------------------------------------

def _broker_config(tmp_path: Path, broker_url: str, extra: str = "") -> dict[str, str]:
    (tmp_path / "archiver.toml").write_text(f'broker_url = "{broker_url}"\ndatabase_url = "{_ledger(tmp_path)}"\n'
                                            f"lease_seconds = 3\n{source_policy()}{extra}")
    return {"ARCHIVER_CONFIG": str(tmp_path / "archiver.toml")}


def test_a_worker_whose_broker_stays_away_exits_within_its_bound(tmp_path: Path, env: dict[str, str]) -> None:
    redis = RedisServer()
    redis.start()
    try:
        env = {**env, **_broker_config(tmp_path, redis.url)}
        worker = Service.start(tmp_path, env, "worker", "--concurrency", "1", "--broker-timeout", "3",
                               "--stop-grace", "2")
        worker.wait_ready()
    finally:
        redis.stop()
    gone = time.monotonic()
    try:
        worker.proc.wait(timeout=60)
    finally:
        worker.stop()
    assert worker.proc.returncode == 1, worker.output()
    assert time.monotonic() - gone < 3 + 2 + 20, worker.output()  # --broker-timeout + the stop bound
    assert f"broker {redis.url} not consumed from" in worker.output()


def test_a_worker_reconnects_to_a_broker_that_comes_back(tmp_path: Path, env: dict[str, str],
                                                         source: HttpSource) -> None:
    redis = RedisServer()
    redis.start()
    env = {**env, **_broker_config(tmp_path, redis.url)}
    worker = Service.start(tmp_path, env, "worker", "--concurrency", "1", "--broker-timeout", "20")
    try:
        worker.wait_ready()
        redis.stop()
        redis.start()  # Redis restarted (empty: it keeps nothing on disk here)
        time.sleep(20 + 3)  # past --broker-timeout since the loss: the worker must have counted it as back
        assert worker.proc.poll() is None, worker.output()
        meeting = f"life-{secrets.token_hex(3)}"
        body = event_file(tmp_path, meeting, source.file_url(f"{meeting}.mp4", size=200_000))
        subprocess.run([sys.executable, "-m", "archiver.cli", "replay", str(body)], cwd=tmp_path, env=env,
                       check=True, capture_output=True)
        database_url = f"sqlite:///{tmp_path}/ledger/ledger.db"
        _wait("a copy after the restart", lambda: [j.state for j in _jobs(database_url, meeting)] == ["succeeded"],
              service=worker)
    finally:
        worker.stop()
        redis.stop()


# ---- SIGTERM during a long copy ----------------------------------------------------------------------

def test_sigterm_during_a_long_copy_stops_the_worker_within_its_bound_and_requeues_the_copy(
        tmp_path: Path, env: dict[str, str], source: HttpSource, moto_url: str, redis_server: RedisServer) -> None:
    import boto3

    bucket = f"life-{secrets.token_hex(4)}"
    create_s3_bucket(moto_url, bucket)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    broker = redis_server.url
    env = {**env, "LIFE_S3_SECRET": "testing", **_broker_config(tmp_path, broker, f"""
[[destinations]]
name = "s3"
url = "s3://{bucket}/rec/{{meetingId}}/"
endpoint_url = "{moto_url}"
region = "us-east-1"
addressing_style = "path"
access_key_id = "testing"
secret_access_key_env = "LIFE_S3_SECRET"
part_size = "5MiB"
""")}
    meeting = f"life-{secrets.token_hex(3)}"
    database_url = f"sqlite:///{tmp_path}/ledger/ledger.db"
    first = Service.start(tmp_path, env, "worker", "--concurrency", "1", "--stop-grace", "2")
    try:
        first.wait_ready()
        body = event_file(tmp_path, meeting, source.file_url(f"{meeting}.mp4", size=256 << 20, trickle=TRICKLE))
        subprocess.run([sys.executable, "-m", "archiver.cli", "replay", str(body)], cwd=tmp_path, env=env,
                       check=True, capture_output=True)
        # A part is up: an unfinished multipart upload exists, which the writer must abort on the way out.
        _wait("the first part", lambda: s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), service=first)
    finally:
        elapsed = first.stop()
    assert first.proc.returncode == 0 and elapsed < 2 + 20, (elapsed, first.output())
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), "the upload was not aborted"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    [job] = _jobs(database_url, meeting)
    # given back at once (not left "running" until its lease runs out), with the reason
    assert (job.state, job.attempts, job.error_code) == ("pending", 0, "interrupted")  # the attempt given back
    second = Service.start(tmp_path, env, "worker", "--concurrency", "1", "--stop-grace", "2")
    try:
        second.wait_ready()
        # The message went back to the queue: the new worker takes the job up again.
        _wait("the re-run", lambda: _jobs(database_url, meeting)[0].attempts == 1, service=second)
    finally:
        elapsed = second.stop()
    assert second.proc.returncode == 0 and elapsed < 2 + 20, (elapsed, second.output())
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_up_forwards_sigterm_and_exits_within_its_bound(tmp_path: Path, env: dict[str, str],
                                                        source: HttpSource) -> None:
    (tmp_path / "archiver.toml").write_text(source_policy())
    up = Service.start(tmp_path, env, "up", "--port", str(free_port()), "--concurrency", "1", "--stop-grace", "2")
    meeting = f"life-{secrets.token_hex(3)}"
    ledger = f"sqlite:///{tmp_path}/.archiver/ledger.db"
    try:
        _wait("up", lambda: b" ready." in up.log.read_bytes(), service=up)
        body = event_file(tmp_path, meeting, source.file_url(f"{meeting}.mp4", size=256 << 20, trickle=TRICKLE))
        subprocess.run([sys.executable, "-m", "archiver.cli", "replay", str(body)], cwd=tmp_path, env=env,
                       check=True, capture_output=True)
        _wait("the copy to start", lambda: [j.state for j in _jobs(ledger, meeting)] == ["running"], service=up)
        time.sleep(1)
    finally:
        elapsed = up.stop()
    assert up.proc.returncode == 0 and elapsed < 2 + 20 + 10, (elapsed, up.output())
    assert "archiver up: stopped" in up.output()
    assert [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] == []  # nothing half-written visible
    assert Service.leftovers(tmp_path) == [], "a child of up outlived it"


def test_the_bounds_the_cli_documents_are_the_ones_the_worker_enforces() -> None:
    from archiver.cli import service
    from archiver.worker import lifecycle as worker_signals

    assert (service.STOP_GRACE, service.ABORT_SECONDS, service.BROKER_TIMEOUT) == (
        worker_signals.STOP_GRACE, worker_signals.ABORT_SECONDS, worker_signals.BROKER_TIMEOUT)


def test_the_children_of_up_stop_when_up_is_killed(tmp_path: Path, env: dict[str, str]) -> None:
    up = Service.start(tmp_path, env, "up", "--port", str(free_port()), "--concurrency", "1", "--stop-grace", "2")
    try:
        _wait("up", lambda: b" ready." in up.log.read_bytes(), service=up)
        up.proc.kill()  # SIGKILL: up cannot forward anything; its children must notice by themselves
        up.proc.wait()
        _wait("the children to stop", lambda: Service.leftovers(tmp_path) == [], timeout=2 + 20 + 10)
    finally:
        for pid in Service.leftovers(tmp_path):
            os.kill(pid, signal.SIGKILL)
