"""A stand-in for VideoSDK's REST API: real HTTP on 127.0.0.1, recordings of every kind held in memory.

    with VideoSDKStandIn(api_key="k", secret="s") as sdk:
        rid = sdk.add_recording("room-1", session_id="sess-1", size=1234)
        client = VideoSDKClient(sdk.api_base, api_key="k", secret="s")

Serves (``.api_base`` is http://127.0.0.1:PORT/v2; the transcript API is under /ai/v1 beside it), in the
documented shapes (see ``tests.videosdk_catalog``, which also picks the paging shape of each list):
  GET  /v2/recordings[/participant[/track|/merge]|/composite], /v2/transcodings,
       /ai/v1/post-transcriptions                 ?roomId=&sessionId=&page=&perPage= (or &cursor=)
  GET  <list>/{id}; DELETE <list>/{id} for room, participant, track, composite
  GET  /v2/rooms (?page= or ?cursor=), /v2/sessions?roomId=
  GET  /v2/public/rsa-public-key                 {"publicKey": PEM}; no auth needed
  POST /v2/recordings[/participant[/track]]/start|end, /v2/rooms: ``.controls`` (tests.videosdk_controls),
       which sends the state and stopped webhooks signed with ``sign``; ``controls.deliveries(n)``

Every other call needs ``Authorization: <JWT>`` (raw, no "Bearer"), HS256 with ``secret``, payload
``apikey`` equal to ``api_key``, unexpired; otherwise 401 with a JSON error.

API:
  add_recording(room_id, *, session_id, file_path, file_url, size, created_at, recording_id) -> id (room kind)
  add_participant_recording(room_id, *, session_id, participant_id, files, track=None, start=None) -> id:
      files are (filePath, fileUrl, size) triples; with ``track`` ("audio", ...) it is a track recording
  add_composite / add_transcoding(room_id, *, session_id, file_path, file_url, size, created_at) -> id
  add_merge_recording(room_id, *, session_id, file_path, file_url, size, start) -> id;
      add_merge(merge_id, payload): any payload, served as is by GET .../merge/{id}
  add_transcript(room_id, *, session_id, transcription={fmt: url}, summary={fmt: url}) -> id
  add_room(room_id, created_at=None): a room with no recording (rooms join the list when recorded in)
  catalog.page_shapes[name] = "pageInfo" | "totalPages" | "pagination" | "cursor"; catalog.rooms_order
  recording_ids(room_id=None, kind="room") -> ids held
  fail_next(status, count=1, *, retry_after=None, body=None, delay=0.0, path=None): the next ``count``
      requests (to ``path`` only, if given: below /v2, e.g. "/recordings", or a full path such as
      "/ai/v1/post-transcriptions") get ``status`` with ``body`` (bytes sent as is, anything else as
      JSON; default a JSON error), after sleeping ``delay`` s. Checked before auth.
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
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.emulators import free_port
from tests.videosdk_catalog import Catalog, file_id_of, file_object, files_entry, now_stamp
from tests.videosdk_controls import Controls

PREFIX = "/v2"
ROOTS = (PREFIX + "/", "/ai/v1/")


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
    # headers and body go out in two writes: without TCP_NODELAY the body waits for the client's
    # delayed ACK (about 40 ms a request), which made a reconcile of a few rooms take seconds
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet: the request log is the record
        pass

    def _handle(self) -> None:
        stand_in = self.server.stand_in
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))) if self.command == "POST" else b""
        stand_in._log(Request(self.command, url.path, query, self.headers.get("Authorization")))
        if not url.path.startswith(ROOTS):
            return self._send(404, {"statusCode": 404, "error": "Not Found", "message": "no such route"})
        fault = stand_in._take_fault(url.path)
        if fault is not None:
            time.sleep(fault.delay)
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            body = fault.body if fault.body is not None else {"statusCode": fault.status, "message": "injected"}
            return self._send(fault.status, body, headers)
        path = url.path  # still %-encoded: "a%2Fb" stays one segment (the catalog decodes the id)
        if self.command == "GET" and path == PREFIX + "/public/rsa-public-key":
            return self._send(200, {"publicKey": stand_in.public_key_pem})
        problem = stand_in._auth_problem(self.headers.get("Authorization"))
        if problem:
            return self._send(401, {"statusCode": 401, "error": "Unauthorized", "message": problem})
        with stand_in._lock:
            status, body = (stand_in.controls.route(path, raw) if self.command == "POST"
                            else stand_in.catalog.route(self.command, path, query))
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

    do_GET = do_DELETE = do_POST = _handle


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
        self.catalog = Catalog()
        self._faults: list[_Fault] = []
        self._requests: list[Request] = []
        self.rotate_key()
        self.controls = Controls(self.catalog, lambda body: self.sign(body))
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

    def _add(self, kind: str, item: dict[str, Any]) -> str:
        with self._lock:
            return self.catalog.add(kind, item)

    def add_recording(self, room_id: str, *, session_id: str | None = None, file_path: str | None = None,
                      file_url: str | None = None, size: int | None = 1_000_000, created_at: str | None = None,
                      recording_id: str | None = None) -> str:
        return self._add("room", self._room_like(room_id, session_id, file_path, file_url, size, created_at,
                                                 recording_id))

    def add_composite(self, room_id: str, *, session_id: str | None = None, file_path: str | None = None,
                      file_url: str | None = None, size: int | None = 1_000_000, created_at: str | None = None,
                      recording_id: str | None = None) -> str:
        return self._add("composite", self._room_like(room_id, session_id, file_path, file_url, size, created_at,
                                                      recording_id))

    def add_transcoding(self, room_id: str, *, session_id: str | None = None, file_path: str | None = None,
                        file_url: str | None = None, size: int | None = 1_000_000, created_at: str | None = None,
                        recording_id: str | None = None) -> str:
        item = self._room_like(room_id, session_id, file_path, file_url, size, created_at, recording_id)
        return self._add("transcoding", {**item, "status": "completed"})

    @staticmethod
    def _room_like(room_id: str, session_id: str | None, file_path: str | None, file_url: str | None,
                   size: int | None, created_at: str | None, recording_id: str | None) -> dict[str, Any]:
        stamp = created_at or now_stamp()
        file_id = file_id_of(file_path) if file_path is not None else secrets.token_hex(12)
        path = file_path if file_path is not None else f"uploads/videos/{file_id}.mp4"
        url = file_url if file_url is not None else f"https://cdn.videosdk.live/{path.lstrip('/')}"
        return {"id": recording_id or secrets.token_hex(12), "userId": "0" * 24, "roomId": room_id,
                "sessionId": session_id or secrets.token_hex(12), "createdAt": stamp, "updatedAt": stamp,
                "fileId": file_id, "file": file_object(path, url, size, file_id=file_id, created_at=stamp)}

    def add_participant_recording(self, room_id: str, *, session_id: str, participant_id: str,
                                  files: Sequence[tuple[str, str | None, int | None]], track: str | None = None,
                                  start: str | None = None, recording_id: str | None = None) -> str:
        stamp = start or now_stamp()
        return self._add("track" if track else "participant", {
            "id": recording_id or secrets.token_hex(12), "roomId": room_id, "sessionId": session_id,
            "participantId": participant_id, "participantName": f"name of {participant_id}", "kind": track,
            "fileFormat": "webm", "mode": "track" if track else "participant", "start": stamp, "end": stamp,
            "region": "in002", "webhook": {"totalCount": 1, "successCount": 0, "data": []},
            "files": [files_entry(path, url, size) for path, url, size in files]})

    def add_merge_recording(self, room_id: str, *, session_id: str, file_path: str, file_url: str | None,
                            size: int | None, start: str | None = None, merge_id: str | None = None) -> str:
        stamp = start or now_stamp()
        return self._add("merge", {
            "id": merge_id or f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-4{secrets.token_hex(2)[1:]}-"
                              f"a{secrets.token_hex(2)[1:]}-{secrets.token_hex(6)}",
            "channel1": [{"recordingId": secrets.token_hex(12), "participantId": "p1"}], "channel2": [],
            "start": stamp, "end": stamp, "status": "completed", "meetingId": room_id, "sessionId": session_id,
            "file": {"id": secrets.token_hex(12), "filePath": file_path, "fileUrl": file_url, "size": size,
                     "type": "audio", "meta": {"format": "mp3", "duration": 12.0}}})

    def add_merge(self, merge_id: str, payload: Any) -> None:
        """Any payload under the id, served as is by GET (and listed when it names its room)."""
        with self._lock:
            self.catalog.items["merge"][merge_id] = payload

    def add_transcript(self, room_id: str, *, session_id: str, transcription: dict[str, str],
                       summary: dict[str, str] | None = None, created_at: str | None = None,
                       transcript_id: str | None = None) -> str:
        stamp = created_at or now_stamp()
        return self._add("transcript", {
            "id": transcript_id or secrets.token_hex(12), "roomId": room_id, "sessionId": session_id,
            "status": "completed", "createdAt": stamp, "updatedAt": stamp,
            "transcriptionFilePaths": transcription, "summarizedFilePaths": summary or {}})

    def add_room(self, room_id: str, *, created_at: str | None = None) -> None:
        with self._lock:
            self.catalog.add_room(room_id, created_at=created_at)

    def recording_ids(self, room_id: str | None = None, kind: str = "room") -> list[str]:
        with self._lock:
            return [rid for rid, item in self.catalog.items[kind].items()
                    if room_id is None or (isinstance(item, dict) and item.get("roomId", item.get("meetingId"))
                                           == room_id)]

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

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or path in (fault.path, PREFIX + fault.path):
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
