"""The stand-in's recording controls: start/stop of room, participant and track recordings, room
creation, and the webhooks VideoSDK sends for them, signed and delivered in order from a thread.

Calls, bodies and webhook shapes are written out from shared/reference/videosdk.md (section 2
"Starting and stopping recordings", section 1 "Recording events"), deliberately not imported from
the archiver, so a wrong path, field name or event shape there fails against this. A body field the
reference does not list is a 400 naming it.

On start: <prefix>recording-starting, <prefix>recording-started. On end: <prefix>recording-stopping,
then <prefix>recording-stopped with the file(s) (``media_url(filePath)`` is their fileUrl) and the
recording is added to the catalog, as VideoSDK's REST list would then show it. Webhooks go to the
start call's ``webhookUrl`` and to the room's webhook ``endPoint`` when its ``events`` match.
"""

from __future__ import annotations

import fnmatch
import json
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.videosdk_catalog import Catalog, file_object, files_entry, now_stamp

# path -> (level, fields the body may carry, fields it must carry)
_START = {"room": ("roomId", "awsDirPath", "webhookUrl", "config", "templateUrl", "transcription", "preSignedUrl",
                   "fileFormat"),
          "participant": ("roomId", "participantId", "fileFormat", "webhookUrl", "bucketDirPath"),
          "track": ("roomId", "participantId", "kind", "fileFormat", "webhookUrl", "bucketDirPath")}
ROUTES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "/v2/recordings/start": ("start", "room", _START["room"]),
    "/v2/recordings/end": ("end", "room", ("roomId",)),
    "/v2/recordings/participant/start": ("start", "participant", _START["participant"]),
    "/v2/recordings/participant/end": ("end", "participant", ("roomId", "participantId")),
    "/v2/recordings/participant/track/start": ("start", "track", _START["track"]),
    "/v2/recordings/participant/track/end": ("end", "track", ("roomId", "participantId", "kind")),
}
REQUIRED = {"room": ("roomId",), "participant": ("roomId", "participantId"),
            "track": ("roomId", "participantId", "kind")}
PREFIX = {"room": "recording-", "participant": "participant-recording-", "track": "participant-track-recording-"}
ROOM_FIELDS = ("autoStartConfig", "webhook", "customRoomId", "region", "autoCloseConfig", "geoFence")


@dataclass(frozen=True)
class Delivery:
    url: str
    webhook_type: str
    body: bytes
    status: int | None  # None: the receiver could not be reached


def _bad(message: str) -> tuple[int, Any]:
    return 400, {"statusCode": 400, "error": "Bad Request", "message": message}


class Controls:
    """Called under the stand-in's lock; webhooks leave from a thread of its own, in order."""

    def __init__(self, catalog: Catalog, sign: Callable[[bytes], str]) -> None:
        self.catalog, self.sign = catalog, sign
        self.media_url: Callable[[str], str | None] = lambda path: f"https://cdn.videosdk.live/{path}"
        self.active: dict[tuple[str, ...], dict[str, Any]] = {}
        self.room_webhooks: dict[str, dict[str, Any]] = {}  # roomId -> the room's webhook {endPoint, events}
        self.created_rooms: list[dict[str, Any]] = []  # bodies of POST /v2/rooms, as received
        self.sessions: dict[str, str] = {}  # roomId -> the session its recordings belong to
        self._outbox: queue.Queue[tuple[str, str, bytes]] = queue.Queue()
        self._delivered: list[Delivery] = []
        self._done = threading.Condition()
        threading.Thread(target=self._deliver, name="videosdk-webhooks", daemon=True).start()

    def route(self, path: str, raw: bytes) -> tuple[int, Any]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _bad("body is not JSON")
        if not isinstance(body, dict):
            return _bad("body must be a JSON object")
        if path == "/v2/rooms":
            return self._create_room(body)
        if path not in ROUTES:
            return 404, {"statusCode": 404, "error": "Not Found", "message": "no such route"}
        action, level, allowed = ROUTES[path]
        unknown = sorted(set(body) - set(allowed))
        missing = [f for f in REQUIRED[level] if not isinstance(body.get(f), str) or not body[f]]
        if unknown or missing:
            return _bad(f"unknown fields {unknown}, missing {missing}")
        key = (level, *(body[f] for f in REQUIRED[level]))
        if action == "start":
            if key in self.active:
                return _bad("recording already running")
            self.active[key] = {**body, "id": secrets.token_hex(12)}
            self._announce(level, self.active[key], ("starting", "started"))
            return 200, {"message": "recording started"}
        if key not in self.active:
            return _bad("no recording is running")
        started = self.active.pop(key)
        self._announce(level, started, ("stopping", "stopped"))
        return 200, {"message": "recording stopped"}

    def _create_room(self, body: dict[str, Any]) -> tuple[int, Any]:
        unknown = sorted(set(body) - set(ROOM_FIELDS))
        webhook = body.get("webhook")
        if unknown or (webhook is not None and (not isinstance(webhook, dict) or set(webhook) - {"endPoint", "events"}
                                                or not isinstance(webhook.get("events"), list))):
            return _bad(f"unknown fields {unknown} or a webhook other than {{endPoint, events: [...]}}")
        room_id = f"{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}"
        self.created_rooms.append(body)
        self.catalog.add_room(room_id)
        if webhook is not None:
            self.room_webhooks[room_id] = webhook
        return 200, {"roomId": room_id, "id": secrets.token_hex(12), "customRoomId": body.get("customRoomId"),
                     "autoStartConfig": body.get("autoStartConfig"), "webhook": webhook, "createdAt": now_stamp()}

    def _announce(self, level: str, start: dict[str, Any], states: tuple[str, ...]) -> None:
        room = start["roomId"]
        session = self.sessions.setdefault(room, secrets.token_hex(12))
        data: dict[str, Any] = {"meetingId": room, "sessionId": session, "id": start["id"]}
        if level != "room":
            data["participantId"] = start["participantId"]
            data["kind" if level == "track" else "fileFormat"] = start.get("kind") or start.get("fileFormat", "webm")
        for state in states:
            event = {"webhookType": PREFIX[level] + state, "data": dict(data)}
            if state == "stopped":
                event["data"].pop("fileFormat", None)
                event["data"].update(self._files(level, start, session))
            for url in self._targets(room, start.get("webhookUrl"), event["webhookType"]):
                self._outbox.put((url, event["webhookType"], json.dumps(event).encode()))

    def _files(self, level: str, start: dict[str, Any], session: str) -> dict[str, Any]:
        extension = start.get("fileFormat") or ("mp4" if level == "room" else "webm")
        name = f"{secrets.token_hex(12)}.{extension}"
        if level == "room":
            path = f"encoded/videos/{name}"
            self.catalog.add("room", {"id": start["id"], "roomId": start["roomId"], "sessionId": session,
                                      "createdAt": now_stamp(), "file": file_object(f"uploads/videos/{name}",
                                                                                    self.media_url(path), None)})
            return {"filePath": path, "fileUrl": self.media_url(path)}
        path = "/".join(p for p in ("individual-recordings", session, start["participantId"], start.get("kind"),
                                    name) if p)
        self.catalog.add(level, {"id": start["id"], "roomId": start["roomId"], "sessionId": session,
                                 "participantId": start["participantId"], "kind": start.get("kind"),
                                 "start": now_stamp(), "files": [files_entry(path, self.media_url(path), None)]})
        return {"fileDetails": [{"filePath": path, "fileUrl": self.media_url(path)}]}

    def _targets(self, room: str, webhook_url: str | None, webhook_type: str) -> list[str]:
        urls = [webhook_url] if webhook_url else []
        hook = self.room_webhooks.get(room)
        if hook and hook.get("endPoint") and any(fnmatch.fnmatchcase(webhook_type, p) for p in hook["events"]):
            urls.append(hook["endPoint"])
        return list(dict.fromkeys(urls))

    # -- delivery ---------------------------------------------------------------------------------

    def _deliver(self) -> None:
        while True:
            url, webhook_type, body = self._outbox.get()
            try:
                status: int | None = httpx.post(url, content=body, timeout=30, headers={
                    "content-type": "application/json", "videosdk-signature": self.sign(body)}).status_code
            except httpx.HTTPError:
                status = None
            with self._done:
                self._delivered.append(Delivery(url, webhook_type, body, status))
                self._done.notify_all()

    def deliveries(self, count: int = 0, timeout: float = 30) -> list[Delivery]:
        """Every webhook delivered so far, after waiting up to ``timeout`` s for at least ``count``."""
        with self._done:
            self._done.wait_for(lambda: len(self._delivered) >= count, timeout)
            return list(self._delivered)
