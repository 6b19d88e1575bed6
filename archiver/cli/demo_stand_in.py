"""Pieces of `archiver demo`: a loopback stand-in for VideoSDK (its CDN, and start/end of a room
recording that sends the signed state webhooks and then recording-stopped) and a demo signing key.

The demo runs its own short-lived stack with its own configuration (one that admits this loopback
stand-in), so no running stack's SSRF guard is ever loosened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
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
def stand_in_videosdk(body: bytes, private: rsa.RSAPrivateKey) -> Iterator[str]:
    """Serve `body` as video/mp4 at FILE_PATH, and POST /v2/recordings/start and /end for MEETING:
    each answers 200, then sends recording-starting, -started (start) or recording-stopping, -stopped
    with the file (end) to the start call's webhookUrl, signed with `private`, in order, from a
    thread. Yields the origin (http://127.0.0.1:PORT); its API base is origin + "/v2"."""
    outbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
    webhook_url: dict[str, str] = {}  # roomId -> the webhookUrl its running recording was started with

    def announce(room: str, states: tuple[str, ...], origin: str) -> None:
        for state in states:
            data = {"meetingId": room, "sessionId": SESSION}
            if state == "stopped":
                data.update(filePath=FILE_PATH, fileUrl=origin + FILE_PATH)
            outbox.put((webhook_url[room], json.dumps({"webhookType": f"recording-{state}", "data": data}).encode()))

    def deliver() -> None:
        while (item := outbox.get()) is not None:
            url, raw = item
            # the receiver's answer is its business: the demo reads the ledger
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(url, content=raw, timeout=30, headers={"content-type": "application/json",
                                                                  "videosdk-signature": sign_body(raw, private)})

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

        def do_POST(self) -> None:
            sent = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            origin = f"http://127.0.0.1:{self.server.server_port}"  # type: ignore[attr-defined]
            room = sent.get("roomId")
            if not self.headers.get("Authorization") or room != MEETING or \
                    self.path not in ("/v2/recordings/start", "/v2/recordings/end") or \
                    (self.path.endswith("/end") and room not in webhook_url):
                self.send_error(400 if self.headers.get("Authorization") else 401)
                return
            if self.path.endswith("/start"):
                webhook_url[room] = sent.get("webhookUrl", "")
                announce(room, ("starting", "started"), origin)
            else:
                announce(room, ("stopping", "stopped"), origin)
            answer = json.dumps({"message": f"recording {self.path.rsplit('/', 1)[-1]}ed"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threads = [threading.Thread(target=server.serve_forever, daemon=True), threading.Thread(target=deliver,
                                                                                            daemon=True)]
    for thread in threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        outbox.put(None)
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
