"""A stand-in for VideoSDK's REST API: real HTTP on 127.0.0.1, recordings held in memory.

    with VideoSDKStandIn(api_key="k", secret="s") as sdk:
        rid = sdk.add_recording("room-1", session_id="sess-1", size=1234)
        client = VideoSDKClient(sdk.api_base, api_key="k", secret="s")

Serves (under ``.api_base``, i.e. http://127.0.0.1:PORT/v2), in the documented shapes:
  GET    /recordings?roomId=&sessionId=&page=&perPage=   {"pageInfo": {...}, "data": [item, ...]}
  GET    /recordings/{id}  DELETE /recordings/{id}        one item / 404
  GET    /recordings/participant/merge/{id}               the payload given to add_merge / 404
  GET    /public/rsa-public-key                           {"publicKey": PEM}; no auth needed

Every other call needs ``Authorization: <JWT>`` (raw, no "Bearer"), HS256 with ``secret``, payload
``apikey`` equal to ``api_key``, unexpired; otherwise 401 with a JSON error.

API:
  add_recording(room_id, *, session_id, file_path, file_url, size, created_at, recording_id) -> id (24 hex)
  recording_ids(room_id=None) -> ids held; add_merge(merge_id, payload)
  fail_next(status, count=1, *, retry_after=None, body=None, delay=0.0, path=None): the next ``count``
      requests (to ``path`` below /v2 only, if given) get ``status`` with ``body`` (bytes sent as is,
      anything else as JSON; default a JSON error), after sleeping ``delay`` s. Checked before auth.
  requests(path=None) -> [Request(method, path, query, authorization)]: path raw (still %-encoded),
      query as a dict of single values
  public_key_pem: the PEM served (PKCS#1 "BEGIN RSA PUBLIC KEY" by default, key_format="spki" for
      "BEGIN PUBLIC KEY"); assign any string to serve that instead. sign(body) -> base64 RSA-SHA256
      PKCS#1 v1.5 signature (the ``videosdk-signature`` header); rotate_key() makes a new pair.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.emulators import free_port

PREFIX = "/v2"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class _Fault:
    status: int
    count: int
    retry_after: float | None
    body: Any
    delay: float
    path: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet: the request log is the record
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        stand_in = self.server.stand_in
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        stand_in._log(Request(self.command, url.path, query, self.headers.get("Authorization")))
        if not url.path.startswith(PREFIX + "/"):
            return self._send(404, {"statusCode": 404, "error": "Not Found", "message": "no such route"})
        route = url.path[len(PREFIX):]
        fault = stand_in._take_fault(route)
        if fault is not None:
            time.sleep(fault.delay)
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            body = fault.body if fault.body is not None else {"statusCode": fault.status, "message": "injected"}
            return self._send(fault.status, body, headers)
        segments = [unquote(part) for part in route.split("/")[1:]]  # "a%2Fb" stays one segment
        if self.command == "GET" and segments == ["public", "rsa-public-key"]:
            return self._send(200, {"publicKey": stand_in.public_key_pem})
        problem = stand_in._auth_problem(self.headers.get("Authorization"))
        if problem:
            return self._send(401, {"statusCode": 401, "error": "Unauthorized", "message": problem})
        status, body = stand_in._route(self.command, segments, query)
        self._send(status, body)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else
                         "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stand_in: VideoSDKStandIn

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out and hang up (the delay fault) are expected


class VideoSDKStandIn:
    def __init__(self, api_key: str = "stand-in-api-key", secret: str = "stand-in-secret-0123456789abcdef0123", *,
                 key_format: Literal["pkcs1", "spki"] = "pkcs1") -> None:
        self.api_key, self.secret, self.key_format = api_key, secret, key_format
        self.port = free_port()
        self._lock = threading.Lock()
        self._recordings: dict[str, dict[str, Any]] = {}
        self._merges: dict[str, Any] = {}
        self._faults: list[_Fault] = []
        self._requests: list[Request] = []
        self.rotate_key()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.stand_in = self
        # a short poll interval: shutdown() waits for it, and every test starts and stops a stand-in
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="videosdk-stand-in",
                                        daemon=True)

    def __enter__(self) -> VideoSDKStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    # -- state the tests set up --------------------------------------------------------------------

    def add_recording(self, room_id: str, *, session_id: str | None = None, file_path: str | None = None,
                      file_url: str | None = None, size: int | None = 1_000_000, created_at: str | None = None,
                      recording_id: str | None = None) -> str:
        rid, file_id = recording_id or secrets.token_hex(12), secrets.token_hex(12)
        path = file_path if file_path is not None else f"uploads/videos/{file_id}.mp4"
        stamp = created_at or time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        file: dict[str, Any] = {
            "id": file_id, "type": "video", "size": size, "filePath": path,
            "fileUrl": file_url if file_url is not None else f"https://cdn.videosdk.live/{path.lstrip('/')}",
            "meta": {"resolution": {"width": 1920, "height": 1080}, "format": "mov,mp4,m4a,3gp,3g2,mj2",
                     "duration": 55.055},
            "userStorage": None, "createdAt": stamp, "updatedAt": stamp}
        with self._lock:
            self._recordings[rid] = {
                "id": rid, "userId": "0" * 24, "roomId": room_id, "sessionId": session_id or secrets.token_hex(12),
                "createdAt": stamp, "updatedAt": stamp, "fileId": file_id, "file": file}
        return rid

    def recording_ids(self, room_id: str | None = None) -> list[str]:
        with self._lock:
            return [rid for rid, item in self._recordings.items() if room_id is None or item["roomId"] == room_id]

    def add_merge(self, merge_id: str, payload: Any) -> None:
        with self._lock:
            self._merges[merge_id] = payload

    def fail_next(self, status: int, count: int = 1, *, retry_after: float | None = None, body: Any = None,
                  delay: float = 0.0, path: str | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(status, count, retry_after, body, delay, path))

    def requests(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path in (path, PREFIX + path)]

    # -- webhook signing key -----------------------------------------------------------------------

    def rotate_key(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fmt = serialization.PublicFormat.PKCS1 if self.key_format == "pkcs1" else \
            serialization.PublicFormat.SubjectPublicKeyInfo
        self.public_key_pem = self.private_key.public_key().public_bytes(serialization.Encoding.PEM, fmt).decode()

    def sign(self, body: bytes) -> str:
        signature = self.private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")

    # -- used by the handler -----------------------------------------------------------------------

    def _log(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _take_fault(self, route: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path == route:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _auth_problem(self, header: str | None) -> str | None:
        if not header:
            return "missing Authorization header"
        try:  # a "Bearer ..." header fails here: VideoSDK wants the bare token
            claims = jwt.decode(header, self.secret, algorithms=["HS256"], options={"require": ["exp", "iat"]})
        except jwt.ExpiredSignatureError:
            return "token expired"
        except jwt.InvalidTokenError:
            return "invalid token"
        if claims.get("apikey") != self.api_key:
            return "unknown apikey"
        return None

    def _route(self, method: str, segments: list[str], query: dict[str, str]) -> tuple[int, Any]:
        not_found = (404, {"statusCode": 404, "error": "Not Found", "message": "recording not found"})
        with self._lock:
            if method == "GET" and segments == ["recordings"]:
                return self._page(query)
            if method == "GET" and len(segments) == 4 and segments[:3] == ["recordings", "participant", "merge"]:
                return (200, self._merges[segments[3]]) if segments[3] in self._merges else not_found
            if len(segments) == 2 and segments[0] == "recordings" and segments[1] in self._recordings:
                if method == "DELETE":
                    del self._recordings[segments[1]]
                    return 200, {"message": "recording deleted"}
                return 200, self._recordings[segments[1]]
        return not_found

    def _page(self, query: dict[str, str]) -> tuple[int, Any]:
        if not query.get("roomId"):
            return 400, {"statusCode": 400, "error": "Bad Request", "message": "roomId is required"}
        try:
            page, per_page = int(query.get("page", "1")), int(query.get("perPage", "20"))
        except ValueError:
            return 400, {"statusCode": 400, "error": "Bad Request", "message": "page/perPage must be integers"}
        if page < 1 or per_page < 1:
            return 400, {"statusCode": 400, "error": "Bad Request", "message": "page/perPage must be positive"}
        items = [item for item in self._recordings.values() if item["roomId"] == query["roomId"]
                 and ("sessionId" not in query or item["sessionId"] == query["sessionId"])]
        last = max(1, -(-len(items) // per_page))
        data = items[(page - 1) * per_page:page * per_page]
        return 200, {"pageInfo": {"currentPage": page, "perPage": per_page, "lastPage": last, "total": len(items)},
                     "data": data}
