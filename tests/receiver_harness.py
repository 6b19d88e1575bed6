"""A real receiver (uvicorn on a free port, in a thread) over a real Redis broker, for tests."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from archiver.celery_app import Publisher, create_app
from archiver.config import Settings, load_settings
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.receiver import create_receiver
from archiver.signature import sign_body
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
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
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
