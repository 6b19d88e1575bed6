"""A small threaded HTTP proxy placed in front of an emulator, to play what only a real service (or a
real misbehaving store) does: answer for it, or rewrite a request or an answer on the way.

Every request still goes over real HTTP to the real emulator unless a rule answers it; the SDKs
under test are never mocked.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Seen:
    method: str
    target: str  # path and query
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    # GCS resumable-upload chunks
    @property
    def is_chunk(self) -> bool:
        return self.method == "PUT" and "upload_id" in self.query

    @property
    def is_final_chunk(self) -> bool:
        return self.is_chunk and not self.headers.get("Content-Range", "").endswith("/*")


class Proxy:
    """Forwards to `upstream`; `rule` may answer a request itself (an Answer) or rewrite it (a Seen)
    first, `on_response` may rewrite the upstream's answer or drop it (None). The upstream's URL in answer headers
    (e.g. a GCS session Location) is rewritten to the proxy's, so follow-up requests pass here too."""

    def __init__(self, upstream: str, *, keep_host: bool = False) -> None:
        self.upstream = urlsplit(upstream)
        self.keep_host = keep_host  # forward the client's Host (needed where it is signed)
        self.seen: list[Seen] = []
        self.rule: Callable[[Seen], Answer | Seen | None] = lambda seen: None
        # Returning None drops the answer: the connection closes without one, like a reply lost on the way.
        self.on_response: Callable[[Seen, Answer], Answer | None] = lambda seen, answer: answer
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = handle_one

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forward(self, seen: Seen) -> Answer:
        """Send `seen` to the upstream as it is and return its answer."""
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        skip = {"content-length", "connection", "transfer-encoding"} | (set() if self.keep_host else {"host"})
        try:
            conn.request(seen.method, seen.target, body=seen.body,
                         headers={k: v for k, v in seen.headers.items() if k.lower() not in skip})
            resp = conn.getresponse()
            headers = {k: v.replace(self.upstream.geturl(), self.url) for k, v in resp.getheaders()}
            return resp.status, headers, resp.read()
        finally:
            conn.close()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        seen = Seen(h.command, h.path, dict(h.headers), _read_body(h))
        self.seen.append(seen)
        answer = self.rule(seen)
        if not isinstance(answer, tuple):
            seen = answer or seen
            answer = self.on_response(seen, self.forward(seen))
            if answer is None:
                h.close_connection = True
                return
        status, headers, payload = answer
        h.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                h.send_header(key, value)
        if h.command == "HEAD":  # no body, but the length of the one a GET would send
            length = next((v for k, v in headers.items() if k.lower() == "content-length"), "0")
            h.send_header("Content-Length", length)
            h.end_headers()
            return
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def requests(self, method: str, path_part: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and path_part in s.path]


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in h.headers.get("Transfer-Encoding", ""):
        body = bytearray()
        while size := int(h.rfile.readline().split(b";")[0].strip() or b"0", 16):
            body += h.rfile.read(size)
            h.rfile.readline()
        while h.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return bytes(body)
    return h.rfile.read(int(h.headers.get("Content-Length") or 0))


def error_answer(status: int, code: str, content_type: str = "application/xml") -> Answer:
    """An S3/Azure-style XML error answer."""
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{code}</Message></Error>'
    return status, {"Content-Type": content_type, "x-ms-error-code": code}, body.encode()
