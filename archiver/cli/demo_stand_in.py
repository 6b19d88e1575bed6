"""Pieces of `archiver demo`: a loopback stand-in for VideoSDK's CDN and a demo signing key.

The demo runs its own short-lived stack with its own configuration (one that admits this loopback
stand-in), so no running stack's SSRF guard is ever loosened.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from archiver.intake.signature import sign_body

MEETING, SESSION = "demo-room-0001", "66d9c3a1e4b0c2a1f0e9d8c7"
FILE_PATH = "/encoded/videos/66d9c3a1e4b0c2a1f0e9d8c8.mp4"


def media_bytes(size: int = 3 << 20) -> bytes:
    # An MP4 "ftyp" box up front so file(1) and players recognise it; the rest is stand-in payload.
    header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return header + random.Random(7).randbytes(size - len(header))


@contextmanager
def stand_in_cdn(body: bytes) -> Iterator[str]:
    """Serve `body` as video/mp4 at FILE_PATH on 127.0.0.1; yields the file's URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != FILE_PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()[:16]}"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{FILE_PATH}"
    finally:
        server.shutdown()
        server.server_close()


def demo_key(folder: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    """A fresh key pair standing in for VideoSDK's webhook key; returns the private key and the PEM path."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = folder / "demo-webhook-key.pem"
    pem.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.PKCS1))
    return private, pem


def demo_config(folder: Path, port: int, pem: Path) -> Path:
    path = folder / "demo.toml"
    path.write_text(f"""# Written by `archiver demo`; used only by the demo's own short-lived stack.
broker_url = "sqla+sqlite:///{folder}/broker.db"
database_url = "sqlite:///{folder}/ledger.db"

[source]
allow_hosts = ["127.0.0.1"]        # the loopback stand-in for cdn.videosdk.live
allow_http = true
allowed_networks = ["127.0.0.1/32"]

[videosdk]
webhook_public_key = "{pem}"

[receiver]
port = {port}

[[destinations]]
name = "demo"
url = "file://{folder}/archive/{{meetingId}}/{{sessionId}}/"
manifest = true
""")
    return path


def signed_webhook(file_url: str, private: rsa.RSAPrivateKey) -> tuple[bytes, str]:
    body = json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": MEETING, "sessionId": SESSION, "filePath": FILE_PATH,
                                "fileUrl": file_url}}).encode()
    return body, sign_body(body, private)
