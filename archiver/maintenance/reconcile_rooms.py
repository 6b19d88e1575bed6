"""Rooms reconcile looks at: the ledger's, the configured ones, the operator's, and VideoSDK's room list.

A room that never sent a webhook is in no ledger; ``GET /v2/rooms`` is how it is found. The list is
paged through only as far as the reconcile window reaches: VideoSDK's order is not documented, so it
is read from the answers. When the rooms come newest first (createdAt never rises and falls at least
once), paging stops after the first page that ends older than the window, since every later room is
older still. Otherwise every page is read up to ROOM_SCAN_LIMIT rooms (the report says so when the
limit cut the list short). A room is kept when its createdAt or updatedAt is in the window, or when
it names no time at all (it costs a few calls; missing it could cost a recording).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from archiver.ledger.store import Ledger
from archiver.settings.config import Settings
from archiver.videosdk.api import VideoSDKClient
from archiver.videosdk.items import timestamp

log = logging.getLogger("archiver.reconcile")

ROOM_SCAN_LIMIT = 2000  # rooms read from /v2/rooms per run when its order does not bound the walk
NEWEST_FIRST, UNORDERED, UNKNOWN = "newest-first", "unordered", "unknown"


@dataclass
class Discovery:
    """What ``GET /v2/rooms`` gave: ``rooms`` in the window; ``capped`` when ROOM_SCAN_LIMIT cut the
    list short (rooms beyond it were not looked at); ``skipped``: room items that could not be read."""

    rooms: list[str] = field(default_factory=list)
    pages: int = 0
    examined: int = 0
    skipped: int = 0
    order: str = UNKNOWN
    capped: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rooms"] = len(self.rooms)
        return data


def _room(item: object, index: int) -> tuple[str, datetime | None, datetime | None] | None:
    """(roomId, createdAt, updatedAt) of one room item, or None (logged) when it cannot be read."""
    problem = None
    if not isinstance(item, Mapping):
        problem = "the item is not an object"
    elif not isinstance(item.get("roomId"), str) or not item["roomId"].strip():
        problem = "field roomId is missing or not text"
    else:
        times = []
        for name in ("createdAt", "updatedAt"):
            value = item.get(name)
            if value is not None and timestamp(value) is None:
                problem = f"field {name} is not an ISO time"
            times.append(timestamp(value))
        if problem is None:
            return item["roomId"], times[0], times[1]
    log.warning("GET /v2/rooms: skipping room item %d: %s", index, problem)
    return None


class _Order:
    """Reads the list's order from the createdAt values seen so far."""

    def __init__(self) -> None:
        self.previous: datetime | None = None
        self.fell = self.rose = False

    def see(self, created: datetime | None) -> None:
        if created is None:
            return
        if self.previous is not None:
            self.fell |= created < self.previous
            self.rose |= created > self.previous
        self.previous = created

    @property
    def name(self) -> str:
        return UNORDERED if self.rose else NEWEST_FIRST if self.fell else UNKNOWN


def discover_rooms(client: VideoSDKClient, since: datetime, *, limit: int | None = None) -> Discovery:
    """Rooms VideoSDK lists that were created or updated since ``since``, reading at most ``limit``
    (default ROOM_SCAN_LIMIT) when the order does not bound the walk. Raises VideoSDKError."""
    limit = ROOM_SCAN_LIMIT if limit is None else limit
    found = Discovery()
    order = _Order()
    pages = client.room_pages()
    try:
        for items in pages:
            found.pages += 1
            oldest_on_page: datetime | None = None
            for item in items:
                found.examined += 1
                room = _room(item, found.examined)
                if room is None:
                    found.skipped += 1
                    continue
                room_id, created, updated = room
                order.see(created)
                oldest_on_page = created if created is not None else oldest_on_page
                newest = max((t for t in (created, updated) if t is not None), default=None)
                if (newest is None or newest >= since) and room_id not in found.rooms:
                    found.rooms.append(room_id)
            found.order = order.name
            if order.name == NEWEST_FIRST and oldest_on_page is not None and oldest_on_page < since:
                break  # newest first: every room on later pages is older than the window
            if found.examined >= limit:
                found.capped = True
                log.warning("GET /v2/rooms: stopped after %d rooms (the list is %s, so the window cannot bound "
                            "it); rooms beyond them are reconciled only when the ledger, [videosdk] rooms or "
                            "--room names them", found.examined, order.name)
                break
    finally:
        pages.close()  # stop paging: nothing more is fetched
    return found


def rooms_to_scan(ledger: Ledger, settings: Settings, since: datetime, extra: Iterable[str] = (),
                  discovered: Iterable[str] = ()) -> dict[str, list[str]]:
    """Every room to reconcile -> why (ledger, config, option, rooms-api), sorted by room id."""
    reasons: dict[str, list[str]] = {}
    for why, rooms in (("ledger", ledger.meetings_since(since)), ("config", settings.videosdk.rooms),
                       ("option", extra), ("rooms-api", discovered)):
        for room in rooms:
            if room.strip() and why not in reasons.setdefault(room, []):
                reasons[room].append(why)
    return dict(sorted(reasons.items()))
