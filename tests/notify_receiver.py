"""A customer's application as a real HTTP server: it verifies each notification with the
`standardwebhooks` library (as an off-the-shelf receiver would) and processes each webhook-id once.

``answers``: statuses to give the first requests, in order (e.g. [503, 503] for an outage), then 204.
``hold``: when set, the first request blocks until ``release`` is called (a POST in flight while
the sender dies); the test sees it arrive through ``arrived``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.emulators import free_port


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class Received:
    webhook_id: str
    verified: bool
    status: int
    payload: dict[str, Any] | None
    headers: dict[str, str]


@dataclass
class NotifyReceiver:
    secret: str
    answers: list[int] = field(default_factory=list)
    hold: bool = False
    requests: list[Received] = field(default_factory=list)
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)  # webhook-id -> payload, once each
    duplicates: int = 0

    def __post_init__(self) -> None:
        self.port = free_port()
        self.arrived = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                receiver._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/archive"

    def __enter__(self) -> NotifyReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        self._release.set()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            first = not self.requests and not self.arrived.is_set()
            self.arrived.set()
        if self.hold and first:
            self._release.wait(120)
            return  # the sender is gone: never answer this one (the connection just closes)
        try:
            payload = Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            payload, verified = None, False
        with self._lock:
            status = (self.answers.pop(0) if self.answers else 204) if verified else 401
            if verified and status < 300:
                if headers["webhook-id"] in self.processed:
                    self.duplicates += 1  # idempotent by webhook-id: acknowledged, not processed again
                else:
                    self.processed[headers["webhook-id"]] = payload
            self.requests.append(Received(headers.get("webhook-id", ""), verified, status, payload, headers))
        request.send_response(status)
        request.send_header("content-length", "0")
        request.end_headers()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p in self.processed.values() if p["type"] == event_type]

    def dump(self) -> str:
        return json.dumps([r.__dict__ for r in self.requests], default=str)[:4000]
