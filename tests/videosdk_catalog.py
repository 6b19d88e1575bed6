"""What the VideoSDK stand-in holds and how it answers: every recording kind in its documented shape,
rooms and sessions, every paging shape. Pure data and routing: ``tests.videosdk_stand_in`` serves it.

Paths, item shapes and paging shapes are written out here from shared/reference/videosdk.md section 2,
deliberately not imported from the archiver, so a wrong path or shape there fails against this.

Paging shapes (``Catalog.page_shapes[list name]``; list names are the kinds plus "rooms", "sessions"):
  "pageInfo"    {"pageInfo": {"currentPage", "perPage", "lastPage", "total"}, <items>: [...]}  (default)
  "totalPages"  {"pageInfo": {"page", "perPage", "totalPages", "total"}, ...}
  "pagination"  {"pagination": {"page", "perPage", "totalPages", "total"}, ...}
  "cursor"      {"data": [...], "nextCursor": "<opaque>" | null}; the next page is ?cursor=<opaque>
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from typing import Any
from urllib.parse import unquote

# list path -> kind; by id: the list path + "/{id}"
LISTS = {"/v2/recordings": "room", "/v2/recordings/participant": "participant",
         "/v2/recordings/participant/track": "track", "/v2/recordings/participant/merge": "merge",
         "/v2/recordings/composite": "composite", "/v2/transcodings": "transcoding",
         "/ai/v1/post-transcriptions": "transcript"}
DELETABLE = {"room", "participant", "track", "composite"}
ITEMS_FIELD = {"merge": "recordings"}  # every other list says "data"
ROOMS, SESSIONS = "/v2/rooms", "/v2/sessions"


def now_stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _error(status: int, message: str) -> tuple[int, Any]:
    return status, {"statusCode": status, "error": {400: "Bad Request", 404: "Not Found"}.get(status, "Error"),
                    "message": message}


def file_id_of(path: str) -> str:
    """VideoSDK names a file after its id (uploads/videos/<24 hex>.mp4): that id, else a fresh one."""
    stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
    return stem if re.fullmatch(r"[0-9a-f]{24}", stem) else secrets.token_hex(12)


def file_object(path: str, url: str | None, size: int | None, *, file_id: str | None = None,
                created_at: str | None = None, kind: str = "video") -> dict[str, Any]:
    """A room/composite recording's ``file`` object."""
    stamp = created_at or now_stamp()
    return {"id": file_id or file_id_of(path), "type": kind, "size": size, "filePath": path, "fileUrl": url,
            "meta": {"resolution": {"width": 1920, "height": 1080}, "format": "mov,mp4,m4a,3gp,3g2,mj2",
                     "duration": 55.055}, "ratio": 1.778, "userStorage": None, "createdAt": stamp,
            "updatedAt": stamp}


def files_entry(path: str, url: str | None, size: int | None, *, file_id: str | None = None) -> dict[str, Any]:
    """One entry of a participant or track recording's ``files[]``: note ``_id``, not ``id``."""
    return {"_id": file_id or file_id_of(path), "userId": "0" * 24, "filePath": path, "fileUrl": url,
            "type": "video", "size": size, "meta": {"duration": 12.5}, "ratio": 1.0}


class Catalog:
    """Not thread-safe: the stand-in calls it under its lock."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {kind: {} for kind in LISTS.values()}
        self.rooms: dict[str, dict[str, Any]] = {}
        self.page_shapes: dict[str, str] = {}
        self.rooms_order = "newest"  # "newest" first by createdAt (what VideoSDK appears to do) or "oldest"
        self.per_page_default = 20

    # -- filling it ---------------------------------------------------------------------------------

    def add(self, kind: str, item: dict[str, Any]) -> str:
        """Hold ``item`` (its ``id`` is made when absent); its room joins the room list if new."""
        rid = item.setdefault("id", secrets.token_hex(12))
        self.items[kind][rid] = item
        room = item.get("roomId") or item.get("meetingId")
        if isinstance(room, str) and room not in self.rooms:
            self.add_room(room, created_at=item.get("createdAt") or item.get("start"))
        return rid

    def add_room(self, room_id: str, *, created_at: str | None = None) -> None:
        stamp = created_at or now_stamp()
        self.rooms[room_id] = {"id": secrets.token_hex(12), "roomId": room_id, "customRoomId": None,
                               "userId": "0" * 24, "disabled": False, "createdAt": stamp, "updatedAt": stamp,
                               "links": {"get_room": f"https://api.videosdk.live/v2/rooms/{room_id}"}}

    # -- answering ----------------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if method == "GET" and path == ROOMS:
            rooms = sorted(self.rooms.values(), key=lambda r: r["createdAt"], reverse=self.rooms_order == "newest")
            return self.page("rooms", rooms, query)
        if method == "GET" and path == SESSIONS:
            return self.page("sessions", self._sessions(query.get("roomId")), query)
        if method == "GET" and path in LISTS:
            kind = LISTS[path]
            return self.page(kind, [i for i in self.items[kind].values() if self._matches(i, query)], query,
                             ITEMS_FIELD.get(kind, "data"))
        parent, _, raw = path.rpartition("/")
        kind, ident = LISTS.get(parent), unquote(raw)
        if kind is None or not ident or ident not in self.items[kind]:
            return _error(404, "recording not found")
        if method == "DELETE":
            if kind not in DELETABLE:
                return _error(404, "no such route")
            del self.items[kind][ident]
            return 200, {"message": "recording deleted"}
        return 200, self.items[kind][ident]

    def _matches(self, item: Any, query: dict[str, str]) -> bool:
        if not isinstance(item, dict):
            return False
        room = item.get("roomId") or item.get("meetingId")
        return (("roomId" not in query or room == query["roomId"])
                and ("sessionId" not in query or item.get("sessionId") == query["sessionId"])
                and ("participantId" not in query or item.get("participantId") == query["participantId"]))

    def _sessions(self, room: str | None) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for kind_items in self.items.values():
            for item in kind_items.values():
                if isinstance(item, dict) and (item.get("roomId") or item.get("meetingId")) == room \
                        and isinstance(item.get("sessionId"), str):
                    start = item.get("start") or item.get("createdAt")
                    found.setdefault(item["sessionId"], {"id": item["sessionId"], "roomId": room, "start": start,
                                                         "end": None, "status": "completed"})
        return list(found.values())

    def page(self, name: str, items: list[Any], query: dict[str, str], field: str = "data") -> tuple[int, Any]:
        shape = self.page_shapes.get(name, "pageInfo")
        try:
            per_page = int(query.get("perPage", str(self.per_page_default)))
            if shape == "cursor":
                cursor = query.get("cursor")
                start = int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("at:")) if cursor else 0
                page = start // max(per_page, 1) + 1
            else:
                page = int(query.get("page", "1"))
                start = (page - 1) * per_page
        except ValueError:
            return _error(400, "page, perPage and cursor must be what this API handed out")
        if page < 1 or per_page < 1 or start < 0:
            return _error(400, "page/perPage must be positive")
        total, chunk = len(items), items[start:start + per_page]
        last = max(1, -(-total // per_page))
        if shape == "cursor":
            more = start + per_page < total
            token = base64.urlsafe_b64encode(f"at:{start + per_page}".encode()).decode() if more else None
            return 200, {field: chunk, "nextCursor": token}
        if shape == "totalPages":
            return 200, {"pageInfo": {"page": page, "perPage": per_page, "totalPages": last, "total": total},
                         field: chunk}
        if shape == "pagination":
            return 200, {"pagination": {"page": page, "perPage": per_page, "totalPages": last, "total": total},
                         field: chunk}
        return 200, {"pageInfo": {"currentPage": page, "perPage": per_page, "lastPage": last, "total": total},
                     field: chunk}
