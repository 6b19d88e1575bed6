"""A real receiver (uvicorn on a free port, in a thread, wired as `archiver serve` wires it: the
guarded protocol and accept guard of archiver.intake.server) over a real Redis broker, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from archiver.intake.receiver import create_receiver
from archiver.intake.server import ReceiverServer, receiver_config
from archiver.intake.signature import sign_body
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.settings.config import Settings, load_settings
from archiver.worker.app import Publisher, create_app
from tests.emulators import free_port

PATH = "/webhooks/videosdk"


def new_key() -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, pem


def write_receiver_config(root: Path, broker_url: str, extra: str = "") -> Path:
    path = root / "archiver.toml"
    path.write_text(f"""
broker_url = "{broker_url}"
database_url = "sqlite:///{root}/ledger.db"
{extra}
[[destinations]]
name = "local"
url = "file://{root}/archive/{{meetingId}}/"
""")
    return path


@dataclass
class Receiver:
    url: str
    settings: Settings
    ledger: Ledger
    private_key: rsa.RSAPrivateKey | None

    def post(self, body: bytes | dict[str, Any], *, sign: bool = True, signature: str | None = None,
             content_type: str = "application/json", headers: dict[str, str] | None = None) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"content-type": content_type, **(headers or {})}
        if signature is not None:
            sent["videosdk-signature"] = signature
        elif sign and self.private_key is not None:
            sent["videosdk-signature"] = sign_body(raw, self.private_key)
        return httpx.post(self.url + PATH, content=raw, headers=sent, timeout=30)


@contextlib.contextmanager
def running_receiver(config: Path, private_key: rsa.RSAPrivateKey | None) -> Iterator[Receiver]:
    settings = load_settings(config, environ={})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    ledger = Ledger(engine)
    celery = create_app(settings)
    app = create_receiver(settings, ledger, publisher=Publisher(celery))
    port = free_port()
    server = ReceiverServer(receiver_config(app, settings.receiver, "127.0.0.1", port, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Receiver(f"http://127.0.0.1:{port}", settings, ledger, private_key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        celery.close()
        engine.dispose()


@dataclass
class ServedReceiver(Receiver):
    """`archiver serve` as a process of its own; its stderr (the log) goes to a file."""

    proc: subprocess.Popen[bytes]
    stderr: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextlib.contextmanager
def served_receiver(root: Path, receiver_toml: str, *, nofile: int,
                    serve_args: Sequence[str] = ()) -> Iterator[ServedReceiver]:
    """`python -m archiver.cli serve [serve_args]` in `root` on the embedded SQLite broker and ledger, with
    a pinned webhook key, `receiver_toml` as its [receiver] table, and RLIMIT_NOFILE lowered to `nofile`."""
    private, pem = new_key()
    (root / "webhook.pem").write_text(pem)
    config = write_receiver_config(root, f"sqla+sqlite:///{root}/broker.db", f"""
[videosdk]
webhook_public_key = "{root}/webhook.pem"
[receiver]
{receiver_toml}
""")
    port = free_port()
    stderr = root / "serve.stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver.cli", "--config", str(config), "serve", "--port", str(port), *serve_args],
        cwd=root,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"), start_new_session=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
    engine = None
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"archiver serve exited with {proc.returncode}:\n{stderr.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"archiver serve not answering after 60 s:\n{stderr.read_text()[-3000:]}")
            time.sleep(0.1)
        settings = load_settings(config, environ={})
        engine = create_ledger_engine(settings.database_url)
        yield ServedReceiver(f"http://127.0.0.1:{port}", settings, Ledger(engine), private, proc, stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if engine is not None:
            engine.dispose()
