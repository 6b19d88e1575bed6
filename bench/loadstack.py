"""The processes a rate benchmark runs: receiver (`archiver serve`), workers (`archiver worker`), moto's
server, the stand-in CDN and the load generator, each its own OS process with its own log file.

    python -m bench.loadstack cdn PORTFILE   # the stand-in CDN (tests.http_source) in its own process
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.emulators import ROOT, free_port, http_answers, postgres_database

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
S3_SECRET_VARIABLE = "ARCHIVER_BENCH_S3_SECRET"
BIN = Path(sys.executable).parent


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the main process (a worker finishes its task), then SIGKILL to its group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftover pool children; the group is only ours
        self.proc.wait()


def spawn(name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None) -> Service:
    log = logs / f"{name}.log"
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return Service(name, proc, log)


def wait_for(ready: Any, service: Service, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.check()
        with contextlib.suppress(OSError, urllib.error.URLError):
            if ready():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout} s:\n{service.tail()}")


def new_keypair(root: Path) -> tuple[Path, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path, public_path = root / "webhook-private.pem", root / "webhook-public.pem"
    private_path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    public_path.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


@contextlib.contextmanager
def ledger_database(kind: str, root: Path) -> Iterator[str]:
    """A fresh, migrated ledger: SQLite under `root`, or a throw-away PostgreSQL database on
    $ARCHIVER_BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432), dropped afterwards."""
    from archiver.ledger.database import create_ledger_engine, upgrade

    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{root}/ledger.db"
        elif kind == "postgresql":
            url = stack.enter_context(postgres_database(os.environ.get("ARCHIVER_BENCH_POSTGRES_URL", POSTGRES_URL)))
        else:
            raise ValueError(f"unknown database {kind!r} (sqlite or postgresql)")
        engine = create_ledger_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


def write_config(root: Path, *, broker_url: str, database_url: str, public_key: Path, destination: str) -> Path:
    path = root / "archiver.toml"
    path.write_text(f"""
broker_url = "{broker_url}"
database_url = "{database_url}"
visibility_timeout = 300
lease_seconds = 30

[videosdk]
webhook_public_key = "{public_key}"

[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]

[retry]
base_delay = 0.2
max_delay = 1.0
max_attempts = 4

[[destinations]]
{destination}
""")
    return path


def start_receiver(config: Path, logs: Path, env: dict[str, str] | None = None,
                   processes: int = 1) -> tuple[Service, str]:
    port = free_port()
    service = spawn("receiver", [str(BIN / "archiver"), "--config", str(config), "serve", "--port", str(port),
                                 "--processes", str(processes)], logs, env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_answers(base + "/healthz"), service, "receiver")
    return service, base


def start_workers(config: Path, logs: Path, count: int, env: dict[str, str]) -> list[Service]:
    """`count` workers as operators run them (`archiver worker --concurrency 1`), started together."""
    workers = [spawn(f"worker{i}", [str(BIN / "archiver"), "--config", str(config), "worker", "--concurrency", "1"],
                     logs, {"ARCHIVER_CONFIG": str(config), **env}) for i in range(count)]
    for worker in workers:
        wait_for(lambda w=worker: b" ready." in w.log.read_bytes(), worker, worker.name)  # type: ignore[misc]
    return workers


@contextlib.contextmanager
def moto_server(logs: Path) -> Iterator[tuple[str, Service]]:
    port = free_port()
    service = spawn("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], logs)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_answers(url + "/moto-api/"), service, "moto_server")
        yield url, service
    finally:
        service.stop(timeout=5)


@contextlib.contextmanager
def cdn(logs: Path) -> Iterator[tuple[str, Service]]:
    portfile = logs / "cdn.port"
    service = spawn("cdn", [sys.executable, "-m", "bench.loadstack", "cdn", str(portfile)], logs)
    try:
        wait_for(lambda: portfile.exists() and portfile.read_text().strip().isdigit(), service, "stand-in CDN")
        yield f"http://127.0.0.1:{portfile.read_text().strip()}", service
    finally:
        service.stop(timeout=5)


def loadgen(options: list[str], out: Path, logs: Path, timeout: float) -> dict[str, Any]:
    """Run bench.loadgen to completion in its own process and return its result."""
    log = logs / f"{out.stem}.log"
    with log.open("wb") as sink:
        done = subprocess.run([sys.executable, "-m", "bench.loadgen", "--out", str(out), *options], cwd=ROOT,
                              stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{log.read_text()[-3000:]}")
    return dict(json.loads(out.read_text()))


def _serve_cdn(portfile: Path) -> None:
    from tests.http_source import HttpSource

    stop = False

    def finish(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    with HttpSource() as source:
        portfile.with_suffix(".tmp").write_text(str(source.port))
        portfile.with_suffix(".tmp").replace(portfile)
        while not stop:
            time.sleep(0.2)


if __name__ == "__main__":
    if sys.argv[1:2] == ["cdn"] and len(sys.argv) == 3:
        _serve_cdn(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench.loadstack cdn PORTFILE")
