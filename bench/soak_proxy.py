"""A fault-injecting HTTP proxy in front of one storage emulator (stdlib, threaded).

    with FaultProxy("s3", upstream_port, flavor="s3", seed=7, counts=counter) as proxy:
        proxy.url           # what the archiver is configured with instead of the emulator
        proxy.rate = 0.05   # share of requests that get a fault
        proxy.storm(3.0)    # every request answered 503 for the next 3 s

Each request is read whole (Content-Length or raw chunked framing, kept as is), then one of:
  503         answered here with the service's own "busy" error (S3 SlowDown, Azure ServerBusy,
              GCS backendError), the request never reaches the emulator
  drop        the connection is closed without an answer; the request never reached the emulator
  drop_after  the request IS forwarded and applied, then the connection is closed without an answer
              (the nastiest one: a commit that happened but whose success the client never saw);
              never drawn for an S3 CreateMultipartUpload, which has its own rate (create_reply_loss)
  slow        the answer is held back 0.5-2.5 s
or it is forwarded untouched. Decisions come from one seeded random.Random per proxy (their order
depends on timing, their sequence does not). Every injected fault is counted as "<name>.<kind>" in
the shared Counter. A `Location` header naming the emulator is rewritten to the proxy, so GCS
resumable sessions keep going through it.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.emulators import free_port

KINDS = ("503", "drop", "drop_after", "slow")
_WEIGHTS = (4, 2, 2, 2)
_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect"}
_BUSY = {
    "s3": ("application/xml", {}, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                                  b"<Message>Please reduce your request rate.</Message></Error>"),
    "azure": ("application/xml", {"x-ms-error-code": "ServerBusy"},
              b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
              b"<Message>The server is currently unable to receive requests. Please retry your request."
              b"</Message></Error>"),
    "gcs": ("application/json", {}, json.dumps({"error": {"code": 503, "message": "Backend Error", "errors": [
        {"message": "Backend Error", "domain": "global", "reason": "backendError"}]}}).encode()),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _proxy(self) -> None:
        body = self._read_body()
        proxy = self.server.proxy
        fault = proxy.decide(self.command, self.path)
        if fault == "503":
            return self._busy()
        if fault == "drop":
            self.close_connection = True
            return
        try:
            status, reason, headers, data = self._forward(body)
        except OSError:
            return self._answer(502, "Bad Gateway", [("Content-Type", "text/plain")], b"upstream unreachable\n")
        if fault == "drop_after":
            self.close_connection = True  # the emulator applied it; the client never hears so
            return
        if fault == "slow":
            time.sleep(proxy.rng_uniform(0.5, 2.5))
        self._answer(status, reason, headers, data)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = bytearray()
            while True:  # keep the framing: the emulator gets exactly what the client sent
                line = self.rfile.readline()
                raw += line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (trailer := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                        raw += trailer
                    raw += b"\r\n"
                    return bytes(raw)
                raw += self.rfile.read(size + 2)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        proxy = self.server.proxy
        # A fresh upstream connection per request: a stale keep-alive connection could fail after the
        # emulator applied the request, and a proxy must not guess whether to send it again.
        conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in _HOP:
                    conn.putheader(key, value)
            conn.putheader("Connection", "close")
            conn.endheaders()
            if body:
                conn.send(body)
            response = conn.getresponse()
            data = response.read()
            headers = [(k, proxy.rewrite(v) if k.lower() == "location" else v) for k, v in response.getheaders()
                       if k.lower() not in _HOP and k.lower() != "transfer-encoding"]
            return response.status, response.reason, headers, data
        finally:
            conn.close()

    def _answer(self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response_only(status, reason)
        has_length = False
        for key, value in headers:
            has_length |= key.lower() == "content-length"
            if key.lower() == "content-length" and self.command != "HEAD":
                value = str(len(data))
            self.send_header(key, value)
        if not has_length and self.command != "HEAD" and status not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(data)

    def _busy(self) -> None:
        ctype, extra, payload = _BUSY[self.server.proxy.flavor]
        self._answer(503, "Service Unavailable", [("Content-Type", ctype), *extra.items(),
                                                  ("Content-Length", str(len(payload)))], payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    proxy: FaultProxy

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients time out and hang up on slow answers: expected


class FaultProxy:
    def __init__(self, name: str, upstream_port: int, *, flavor: str, seed: int, counts: Counter[str],
                 lock: threading.Lock, kinds: tuple[str, ...] = KINDS) -> None:
        self.name, self.upstream_port, self.flavor = name, upstream_port, flavor
        self.port = free_port()
        self.rate = 0.0
        self.kinds = kinds
        # S3 only: share of CreateMultipartUpload replies lost after moto applied them. Kept out of
        # the random drop_after, because the product then leaves the first upload behind (an
        # orphaned multipart upload) every time: the opt-in kind s3_lost_create_reply turns it on.
        self.create_reply_loss = 0.0
        self._rng = random.Random(seed)
        self._counts, self._lock = counts, lock
        self._storm_until = 0.0
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name=f"proxy-{name}",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def storm(self, seconds: float) -> None:
        """Answer every request with 503 for `seconds` from now."""
        with self._lock:
            self._storm_until = time.monotonic() + seconds

    def quiet(self) -> None:
        """No more faults: the drain and the checks run against a well-behaved service."""
        with self._lock:
            self.rate, self._storm_until, self.create_reply_loss = 0.0, 0.0, 0.0

    def decide(self, method: str, path: str) -> str | None:
        with self._lock:
            if time.monotonic() < self._storm_until:
                self._counts[f"{self.name}.storm_503"] += 1
                return "503"
            creating = self.flavor == "s3" and method == "POST" and "uploads" in urlsplit(path).query.split("&")
            if creating and self.create_reply_loss and self._rng.random() < self.create_reply_loss:
                self._counts[f"{self.name}.create_reply_lost"] += 1
                return "drop_after"
            if not self.kinds or self._rng.random() >= self.rate:
                return None
            kinds = [k for k in KINDS if k in self.kinds and not (creating and k == "drop_after")]
            weights = [w for k, w in zip(KINDS, _WEIGHTS, strict=True) if k in kinds]
            fault = self._rng.choices(kinds, weights)[0]
            self._counts[f"{self.name}.{fault}"] += 1
            return fault

    def rng_uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)

    def rewrite(self, location: str) -> str:
        return location.replace(f"127.0.0.1:{self.upstream_port}", f"127.0.0.1:{self.port}") \
            .replace(f"localhost:{self.upstream_port}", f"127.0.0.1:{self.port}")
