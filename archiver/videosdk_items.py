"""VideoSDK's REST items of every recording kind -> RecordingFile values. Pure: no HTTP here.

Shapes and endpoints from shared/reference/videosdk.md section 2 ("Every kind of recording", item
shapes). Items are read tolerantly where the reference is vague (composite and transcoding items are
not documented: a room-like ``file``, a ``files[]`` list or flat ``fileUrl``/``filePath`` are all
accepted) and strictly where a field we need is missing: ``Unusable`` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from archiver.recordings import ANNOUNCED_BY, RecordingFile, RecordingKind

__all__ = ["ENDPOINTS", "Endpoints", "Unusable", "files_of", "timestamp"]


@dataclass(frozen=True)
class Endpoints:
    """Paths below the API's origin (https://api.videosdk.live): list (GET with roomId, page, perPage),
    fetch one (GET path/{id}) and delete (DELETE path/{id}, None: no delete endpoint)."""

    list: str
    fetch: str
    delete: str | None
    items_field: str = "data"  # where a list page puts its items (the merge list says "recordings")


ENDPOINTS: dict[RecordingKind, Endpoints] = {
    RecordingKind.ROOM: Endpoints("/v2/recordings", "/v2/recordings", "/v2/recordings"),
    RecordingKind.PARTICIPANT: Endpoints("/v2/recordings/participant", "/v2/recordings/participant",
                                         "/v2/recordings/participant"),
    RecordingKind.TRACK: Endpoints("/v2/recordings/participant/track", "/v2/recordings/participant/track",
                                   "/v2/recordings/participant/track"),
    RecordingKind.MERGE: Endpoints("/v2/recordings/participant/merge", "/v2/recordings/participant/merge", None,
                                   items_field="recordings"),
    RecordingKind.COMPOSITE: Endpoints("/v2/recordings/composite", "/v2/recordings/composite",
                                       "/v2/recordings/composite"),
    RecordingKind.TRANSCODING: Endpoints("/v2/transcodings", "/v2/transcodings", None),
    RecordingKind.TRANSCRIPT: Endpoints("/ai/v1/post-transcriptions", "/ai/v1/post-transcriptions", None),
}


class Unusable(ValueError):
    """An item lacks a field we cannot do without; the argument names the field."""


class NotReady(ValueError):
    """The recording exists but has no file yet (a merge still running, a transcript in progress)."""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _size(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def timestamp(value: object) -> datetime | None:
    """An ISO time from the API (UTC when it names no zone), else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Context:
    kind: RecordingKind
    meeting_id: str
    session_id: str
    participant_id: str | None
    track_kind: str | None
    recording_id: str | None
    recorded_at: datetime | None


def _context(kind: RecordingKind, item: Mapping[str, Any], meeting: str | None, session: str | None) -> _Context:
    room = _text(item.get("roomId")) or _text(item.get("meetingId")) or meeting
    if room is None:
        raise Unusable("roomId")
    track = _text(item.get("kind")) if kind is RecordingKind.TRACK else None
    special = {RecordingKind.MERGE: "merged", RecordingKind.TRANSCRIPT: "transcript"}.get(kind)
    return _Context(kind=kind, meeting_id=room, session_id=_text(item.get("sessionId")) or session or "",
                    participant_id=_text(item.get("participantId")) if kind in (
                        RecordingKind.PARTICIPANT, RecordingKind.TRACK) else None,
                    track_kind=track or special, recording_id=_text(item.get("id")),
                    recorded_at=timestamp(item.get("start")) or timestamp(item.get("createdAt")))


def _file(ctx: _Context, entry: Mapping[str, Any], *, kind: str | None = None,
          fallback_id: str | None = None) -> RecordingFile:
    url = _text(entry.get("fileUrl"))
    # fileUrl is the CDN origin plus filePath, so the URL's path stands in when filePath is absent;
    # with neither there is nothing to copy. A null fileUrl is a file in the customer's storage.
    path = _text(entry.get("filePath")) or (urlsplit(url).path.lstrip("/") if url else None)
    if path is None:
        raise Unusable("filePath")
    return RecordingFile(meeting_id=ctx.meeting_id, session_id=ctx.session_id, participant_id=ctx.participant_id,
                         kind=kind or ctx.track_kind, file_path=path, file_url=url,
                         webhook_type=ANNOUNCED_BY[ctx.kind], recording_id=ctx.recording_id,
                         recording_kind=ctx.kind,
                         file_id=_text(entry.get("id")) or _text(entry.get("_id")) or fallback_id,
                         size=_size(entry.get("size")), recorded_at=ctx.recorded_at)


def _transcript_files(ctx: _Context, item: Mapping[str, Any]) -> list[RecordingFile]:
    """``transcriptionFilePaths: {json, srt, txt, tsv, vtt}`` and ``summarizedFilePaths: {txt}``, each a
    full CDN URL; the summary's files get {kind} "summary" so a transcript and a summary of one name
    stay two files."""
    found = []
    for field, kind in (("transcriptionFilePaths", "transcript"), ("summarizedFilePaths", "summary")):
        paths = item.get(field)
        if paths is None:
            continue
        if not isinstance(paths, Mapping):
            raise Unusable(field)
        for fmt in sorted(paths):
            url = _text(paths[fmt])
            if url is not None:
                found.append(_file(ctx, {"fileUrl": url}, kind=kind))
    if not found:
        raise NotReady("transcriptionFilePaths")
    return found


def files_of(kind: RecordingKind, item: object, *, meeting_id: str | None = None,
             session_id: str | None = None) -> list[RecordingFile]:
    """The files of one REST item of ``kind``. ``meeting_id``/``session_id`` stand in when the item does
    not say (a lookup by id knows them from its webhook). Raises Unusable (a field we need is missing
    or malformed) or NotReady (no file yet)."""
    if not isinstance(item, Mapping):
        raise Unusable("item")
    if isinstance(item.get("data"), Mapping):  # a single item wrapped as {"data": {...}}
        item = item["data"]
    ctx = _context(kind, item, meeting_id, session_id)
    if kind is RecordingKind.TRANSCRIPT:
        return _transcript_files(ctx, item)
    status = _text(item.get("status"))
    if status is not None and status.lower() in ("running", "processing", "pending", "queued", "started"):
        raise NotReady(f"status {status}")
    if status is not None and status.lower() == "failed":
        raise Unusable("status (failed)")
    files = item.get("files")
    if isinstance(files, list):
        if not files:
            raise NotReady("files")
        found = []
        for entry in files:
            if not isinstance(entry, Mapping):
                raise Unusable("files[]")
            found.append(_file(ctx, entry))
        return found
    file = item.get("file")
    if isinstance(file, Mapping):
        return [_file(ctx, file, fallback_id=_text(item.get("fileId")))]
    if "fileUrl" in item or "filePath" in item:
        return [_file(ctx, item)]
    raise NotReady("file")
