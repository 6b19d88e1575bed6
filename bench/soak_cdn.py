"""The soak's stand-in CDN: recordings with versions, and the faults a real CDN or origin can show.

Stdlib, threaded, in the soak's own process (so the soak knows exactly what it served). A recording
has one or more versions; version v of file NAME is `tests.http_source.generate(f"{NAME}#{v}")`, so
each version's bytes and sha256 are known without storing them. The ETag and Last-Modified change
with the version. A GET starts on the version current when it arrives and keeps it to its end, as
a real CDN does with a response already under way.

Per-file faults (planned by bench.soak_plan; each fires on the first GET that sends a body unless said):
  cdn_drop        FIN after `cut` of the body          cdn_reset       TCP RST after `cut`
  cdn_truncate    chunked body, connection closed mid-chunk at `cut` (the length was never declared)
  cdn_badrange    drop at `cut`, then the first resume gets a 206 covering only half the rest
  cdn_novalidator no ETag/Last-Modified at all, drop at `cut` (a resume cannot be made safe)
  cdn_replace     at `cut` the file is replaced by version 1 and the connection drops; If-Range honoured
  cdn_replace_ignore_ifrange  as cdn_replace, but the resume gets a 206 of the NEW version (with its ETag)
  cdn_splice      as above with no ETag (Last-Modified only) and the same size: only Last-Modified tells
  cdn_truncate_eof  no Content-Length, Connection: close, clean close at `cut` (indistinguishable from EOF)
  cdn_fail        the first two requests answer 500
  cdn_slow        the first request waits 1-3 s before its headers
  cdn_late404     404 until `late_s` seconds after the recording was announced (and at least once)
  cdn_gone        always 404: deleted on purpose; its copy jobs must FAIL, nothing may be archived
Global: storm(seconds): every request answers 503 for that long (counted as cdn_storm_503).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.emulators import free_port
from tests.http_source import generate

_EPOCH = 1_700_000_000
BODY_FAULTS = ("cdn_drop", "cdn_reset", "cdn_truncate", "cdn_badrange", "cdn_novalidator", "cdn_replace",
               "cdn_replace_ignore_ifrange", "cdn_splice", "cdn_truncate_eof")
REPLACING = ("cdn_replace", "cdn_replace_ignore_ifrange", "cdn_splice")


@dataclass
class Recording:
    path: str  # URL path without the leading "/", e.g. "encoded/videos/<24 hex>.mp4"
    sizes: tuple[int, ...]  # bytes of each version
    faults: tuple[str, ...] = ()
    cut: float = 0.5  # where a body fault strikes, as a share of the file
    late_s: float = 0.0
    version: int = 0
    announced_at: float | None = None  # monotonic; set by the sender once the webhook went out
    requests: int = 0
    bodies: int = 0  # GETs that started sending a body
    resumes_faulted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def content_name(self, version: int) -> str:
        return f"{self.path}#{version}"

    def sha256(self, version: int) -> str:
        digest = hashlib.sha256()
        for chunk in generate(self.content_name(version), 0, self.sizes[version]):
            digest.update(chunk)
        return digest.hexdigest()

    def validators(self, version: int) -> dict[str, str]:
        if "cdn_novalidator" in self.faults:
            return {}
        tag = '"' + hashlib.sha1(f"{self.path}/{version}".encode()).hexdigest() + '"'
        modified = formatdate(_EPOCH + 3600 * version, usegmt=True)
        return {"Last-Modified": modified} if "cdn_splice" in self.faults else {"ETag": tag, "Last-Modified": modified}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cdn = self.server.cdn
        rec = cdn.files.get(urlsplit(self.path).path.lstrip("/"))
        if cdn.storming():
            cdn.count("cdn_storm_503")
            return self._simple(503, b"busy\n")
        if rec is None:
            return self._simple(404, b"no such file\n")
        with rec.lock:
            rec.requests += 1
            n, version, faults = rec.requests, rec.version, rec.faults
            late = "cdn_late404" in faults and (n == 1 or rec.announced_at is None
                                                or time.monotonic() < rec.announced_at + rec.late_s)
        if "cdn_gone" in faults:
            if n == 1:
                cdn.count("cdn_gone")  # one file deleted; its 404s are not counted again
            return self._simple(404, b"not found\n")
        if late:
            cdn.count("cdn_late404")
            return self._simple(404, b"not found\n")
        if "cdn_fail" in faults and n <= 2:
            cdn.count("cdn_fail")
            return self._simple(500, b"internal error\n")
        if "cdn_slow" in faults and n == 1:
            cdn.count("cdn_slow")
            time.sleep(1 + 2 * rec.cut)
        self._file(rec, version)

    def _simple(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _file(self, rec: Recording, version: int) -> None:
        cdn = self.server.cdn
        size = rec.sizes[version]
        validators = rec.validators(version)
        start, end, status = 0, size, 200
        wanted, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        ignore_if_range = any(f in rec.faults for f in ("cdn_replace_ignore_ifrange", "cdn_splice"))
        if wanted and (if_range is None or if_range in validators.values() or ignore_if_range):
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start = int(first)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end, status = (min(int(last) + 1, size) if last else size), 206
            if if_range is not None and if_range not in validators.values():
                cdn.count("cdn_ignored_if_range")  # a 206 of a version the client never saw
        with rec.lock:
            fault = None
            if status == 200 and rec.bodies == 0:
                fault = next((f for f in rec.faults if f in BODY_FAULTS), None)
            if status == 200:
                rec.bodies += 1
            if status == 206 and "cdn_badrange" in rec.faults and rec.resumes_faulted == 0:
                rec.resumes_faulted = 1
                end = start + max(1, (end - start) // 2)
                cdn.count("cdn_badrange")
        headers = {"Content-Type": "video/mp4", "Accept-Ranges": "bytes", **validators}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        chunked = fault == "cdn_truncate"
        if fault == "cdn_truncate_eof":
            headers["Connection"] = "close"
            self.close_connection = True
        elif chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(end - start)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        cut = int(size * rec.cut) if fault else None
        if fault:
            cdn.count(fault)
        self._body(rec, version, start, end, cut, fault, chunked)

    def _body(self, rec: Recording, version: int, start: int, end: int, cut: int | None, fault: str | None,
              chunked: bool) -> None:
        written = start
        for piece in _pieces(generate(rec.content_name(version), start, end)):
            if cut is not None and written + len(piece) >= cut:
                piece = piece[: cut - written]
                self._write(piece, chunked, partial=True)
                if fault in REPLACING:
                    with rec.lock:
                        rec.version = min(1, len(rec.sizes) - 1)  # replaced while this GET was under way
                return self._hang_up(reset=fault == "cdn_reset")
            self._write(piece, chunked)
            written += len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _write(self, piece: bytes, chunked: bool, partial: bool = False) -> None:
        if not piece:
            return
        if chunked:
            # a chunk announced in full and cut short: the client must see an incomplete body
            self.wfile.write(b"%x\r\n" % (len(piece) * (2 if partial else 1)) + piece + (b"" if partial else b"\r\n"))
        else:
            self.wfile.write(piece)

    def _hang_up(self, reset: bool) -> None:
        self.wfile.flush()
        self.close_connection = True
        if reset:
            time.sleep(0.2)  # let the client read what was sent before the RST discards it
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                self.request.shutdown(socket.SHUT_RDWR)


def _pieces(blocks: Iterator[bytes], size: int = 256 * 1024) -> Iterator[bytes]:
    pending = bytearray()
    for block in blocks:
        pending += block
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    cdn: SoakCdn

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # hang-ups are the point


class SoakCdn:
    def __init__(self, counts: Counter[str], lock: threading.Lock) -> None:
        self.files: dict[str, Recording] = {}
        self.port = free_port()
        self._counts, self._lock = counts, lock
        self._storm_until = 0.0
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.cdn = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="soak-cdn",
                                        daemon=True)

    def __enter__(self) -> SoakCdn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, rec: Recording) -> str:
        return f"http://127.0.0.1:{self.port}/{rec.path}"

    def add(self, rec: Recording) -> None:
        self.files[rec.path] = rec

    def count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def storm(self, seconds: float) -> None:
        with self._lock:
            self._storm_until = time.monotonic() + seconds

    def storming(self) -> bool:
        with self._lock:
            return time.monotonic() < self._storm_until
