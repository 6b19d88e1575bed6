"""VideoSDK's REST items of every recording kind -> RecordingFile values. Pure: no HTTP here.

Shapes and endpoints from shared/reference/videosdk.md section 2 ("Every kind of recording", item
shapes). Items are read tolerantly where the reference is vague (composite and transcoding items are
not documented: a room-like ``file``, a ``files[]`` list or flat ``fileUrl``/``filePath`` are all
accepted) and strictly where it is not: a documented field that is missing when we need it, or present
with the wrong type, raises ``Unusable`` naming the field (``files[2].size``), so the caller can skip
that one item with a message an operator can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

from archiver.domain.recordings import ANNOUNCED_BY, RecordingFile, RecordingKind

__all__ = ["DELETABLE", "ENDPOINTS", "Endpoints", "NotReady", "Unusable", "files_of", "timestamp"]


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
# The kinds VideoSDK documents a DELETE for: the only ones retention can remove.
DELETABLE = frozenset(kind for kind, endpoints in ENDPOINTS.items() if endpoints.delete is not None)
_NOT_READY = frozenset({"running", "processing", "pending", "queued", "started", "in_progress", "inprogress"})


class Unusable(ValueError):
    """An item lacks a field we cannot do without, or has one of the wrong type; the argument names it."""


class NotReady(ValueError):
    """The recording exists but has no file yet (a merge still running, a transcript in progress)."""


def _text(value: object, field: str) -> str | None:
    """A documented text field: None when absent, null or blank; Unusable when it is not text."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unusable(field)
    return value if value.strip() else None


def _size(value: object, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Unusable(field)
    return value


def timestamp(value: object) -> datetime | None:
    """An ISO time from the API (UTC when it names no zone), else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _time(item: Mapping[str, Any], field: str) -> datetime | None:
    value = item.get(field)
    if value is None:
        return None
    parsed = timestamp(value)
    if parsed is None:  # a time we cannot read would date keys by the moment we happened to look
        raise Unusable(field)
    return parsed


def _url(value: object, field: str) -> str | None:
    """An absolute http(s) URL, or None for null (the file is in the customer's storage)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unusable(field)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c <= " " or c == "\x7f" for c in value):
        raise Unusable(field)
    return value


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
    room = _text(item.get("roomId"), "roomId") or _text(item.get("meetingId"), "meetingId") or meeting
    if room is None:
        raise Unusable("roomId")
    participant = None
    if kind in (RecordingKind.PARTICIPANT, RecordingKind.TRACK):
        # part of a file's identity (a webhook names it too): without it the file would be a second row
        participant = _text(item.get("participantId"), "participantId")
        if participant is None:
            raise Unusable("participantId")
    track = _text(item.get("kind"), "kind") if kind is RecordingKind.TRACK else None
    if kind is RecordingKind.TRACK and track is None:
        raise Unusable("kind")
    special = {RecordingKind.MERGE: "merged", RecordingKind.TRANSCRIPT: "transcript"}.get(kind)
    return _Context(kind=kind, meeting_id=room, session_id=_text(item.get("sessionId"), "sessionId") or session or "",
                    participant_id=participant, track_kind=track or special,
                    recording_id=_text(item.get("id"), "id"),
                    recorded_at=_time(item, "start") or _time(item, "createdAt"))


def _file(ctx: _Context, entry: Mapping[str, Any], where: str, *, kind: str | None = None,
          fallback_id: str | None = None) -> RecordingFile:
    url = _url(entry.get("fileUrl"), f"{where}fileUrl")
    # fileUrl is the CDN origin plus filePath, so the URL's path stands in when filePath is absent;
    # with neither there is nothing to copy. A null fileUrl is a file in the customer's storage.
    path = _text(entry.get("filePath"), f"{where}filePath") or (urlsplit(url).path.lstrip("/") if url else None)
    if path is None:
        raise Unusable(f"{where}filePath")
    file_id = _text(entry.get("id"), f"{where}id") or _text(entry.get("_id"), f"{where}_id") or fallback_id
    return RecordingFile(meeting_id=ctx.meeting_id, session_id=ctx.session_id, participant_id=ctx.participant_id,
                         kind=kind or ctx.track_kind, file_path=path, file_url=url,
                         webhook_type=ANNOUNCED_BY[ctx.kind], recording_id=ctx.recording_id,
                         recording_kind=ctx.kind, file_id=file_id, size=_size(entry.get("size"), f"{where}size"),
                         recorded_at=ctx.recorded_at)


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
            url = _url(paths[fmt], f"{field}.{fmt}")
            if url is not None:
                found.append(_file(ctx, {"fileUrl": url}, f"{field}.{fmt}.", kind=kind))
    if not found:
        raise NotReady("transcriptionFilePaths")
    return found


def _encryption_files(ctx: _Context, item: Mapping[str, Any]) -> list[RecordingFile]:
    """``encryption: {keyUrl, metaUrl}``: the media cannot be decrypted without both (reference
    section 4), so each is a file of the recording, as the webhook's parser makes them."""
    value = item.get("encryption")
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise Unusable("encryption")
    found = []
    for name in ("keyUrl", "metaUrl"):
        url = _url(value.get(name), f"encryption.{name}")
        if url is not None:
            found.append(_file(ctx, {"fileUrl": url, "filePath": urlsplit(url).path}, f"encryption.{name}."))
    return found


def files_of(kind: RecordingKind, item: object, *, meeting_id: str | None = None,
             session_id: str | None = None) -> list[RecordingFile]:
    """The files of one REST item of ``kind``. ``meeting_id``/``session_id`` stand in when the item does
    not say (a lookup by id knows them from its webhook). Raises Unusable (a field we need is missing
    or malformed; its argument names the field) or NotReady (no file yet)."""
    if not isinstance(item, Mapping):
        raise Unusable("item (not an object)")
    if isinstance(item.get("data"), Mapping):  # a single item wrapped as {"data": {...}}
        item = cast(Mapping[str, Any], item["data"])
    ctx = _context(kind, item, meeting_id, session_id)
    if kind is RecordingKind.TRANSCRIPT:
        return _transcript_files(ctx, item)
    status = _text(item.get("status"), "status")
    if status is not None and status.lower() in _NOT_READY:
        raise NotReady(f"status {status}")
    if status is not None and status.lower() == "failed":
        raise Unusable("status (failed)")
    files = item.get("files")
    if files is not None and not isinstance(files, list):
        raise Unusable("files")
    found: list[RecordingFile] = []
    if isinstance(files, list):
        if not files:
            raise NotReady("files")
        for index, entry in enumerate(files):
            if not isinstance(entry, Mapping):
                raise Unusable(f"files[{index}]")
            found.append(_file(ctx, entry, f"files[{index}]."))
    elif item.get("file") is not None:
        file = item["file"]
        if not isinstance(file, Mapping):
            raise Unusable("file")
        found.append(_file(ctx, file, "file.", fallback_id=_text(item.get("fileId"), "fileId")))
    elif "fileUrl" in item or "filePath" in item:
        found.append(_file(ctx, item, ""))
    else:
        raise NotReady("file")
    return found + _encryption_files(ctx, item)
