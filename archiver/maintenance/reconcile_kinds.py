"""One room, one recording kind: what VideoSDK lists against what the ledger has.

Each listed recording's files (``videosdk_items.files_of``) are matched with the ledger's rows the way
the ledger identifies a file (room, session, participant, {kind}, and VideoSDK's file id or the file's
NAME, never its whole path: a webhook's ``encoded/videos/X.mp4`` is the API's ``uploads/videos/X.mp4``).
A recording is written (``intake.record_files``, one event per recording) only when something is new:
a file the ledger lacks, a destination without a copy job, or a size or id the ledger does not know
yet. So a reconcile every few minutes leaves the ledger alone when nothing changed.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from archiver.domain.recordings import RecordingFile, RecordingKind
from archiver.domain.states import Flag, JobState
from archiver.intake.record import Origin, record_files, short_dedupe_key
from archiver.ledger.store import FileRecord, Ledger, utcnow
from archiver.maintenance.reconcile_report import KindCounts, RoomReport
from archiver.settings.config import Settings
from archiver.videosdk.api import VideoSDKClient
from archiver.videosdk.items import NotReady, Unusable, files_of

log = logging.getLogger("archiver.reconcile")

SOURCE_TYPE = "reconcile"  # the webhook_type of reconcile's events; its files keep the type of their kind
SIZE_MISMATCH = Flag.SIZE_MISMATCH
Publish = Callable[[Sequence[int]], None]


class RoomFiles:
    """The ledger's files per room: read once per room and kind, and again only after a write, so a
    room whose recordings are all archived costs one query per kind, not one per recording."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._rooms: dict[str, list[FileRecord]] = {}
        self.written: dict[str, set[int]] = {}  # rows written since the room was read (not in the list yet)

    def of(self, room: str) -> list[FileRecord]:
        if room not in self._rooms:
            self._rooms[room] = self.ledger.files(meeting_id=room)
            self.written[room] = set()
        return self._rooms[room]

    def refresh(self) -> None:
        """Forget every room something was written to: the next look reads it again."""
        for room in [r for r, ids in self.written.items() if ids]:
            self._rooms.pop(room, None)
            self.written.pop(room)


def reconcile_kind(ledger: Ledger, settings: Settings, client: VideoSDKClient, publish: Publish | None,
                   room: RoomReport, kind: RecordingKind, known: RoomFiles) -> None:
    """List ``kind`` in the room and reconcile every recording. Raises VideoSDKError (the listing)."""
    counts, seen = room.counts(str(kind)), set()
    try:
        for index, item in enumerate(client.list_items(kind, room.room)):
            try:
                files = files_of(kind, item, meeting_id=room.room)
            except NotReady:
                counts.not_ready += 1
                continue
            except Unusable as exc:
                # one odd item must not stop the rest; it is counted, so the run says something failed
                counts.failed += 1
                ident = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
                log.warning("reconcile %s: skipping %s recording %r (item %d): field %s missing or invalid",
                            room.room, kind, ident, index, exc)
                continue
            key = files[0].recording_id or files[0].file_path
            if key in seen:  # a recording deleted meanwhile shifts later pages: one may come twice
                continue
            seen.add(key)
            counts.recordings += 1
            if _reconcile_recording(ledger, settings, publish, kind, files, known, counts):
                room.new.append(f"{kind}:{files[0].recording_id or files[0].file_path}")
    finally:
        known.refresh()


def _wanted(settings: Settings, f: RecordingFile) -> list[str]:
    """The destinations that get a copy job for ``f``: intake plans one per destination that wants it."""
    return [d.name for d in settings.destinations if d.wants(f.webhook_type)]


def _reconcile_recording(ledger: Ledger, settings: Settings, publish: Publish | None, kind: RecordingKind,
                         files: list[RecordingFile], known: RoomFiles, counts: KindCounts) -> bool:
    """Record what is new about one recording; True when it had files no webhook had announced."""
    room = files[0].meeting_id
    before = known.of(room)
    matches = [match(before, f) for f in files]
    counts.listed += len(files)
    for f, row in zip(files, matches, strict=True):
        if row is not None:
            _check_sizes(ledger, row, f, counts)
    if not any(_needs_writing(settings, f, row) for f, row in zip(files, matches, strict=True)):
        counts.already_archived += len(files)
        return False
    accepted = record_files(ledger, settings, _origin(kind, files), files, publish=publish)
    had = {r.file_id: {c.job_id for c in r.copies} for r in before}
    written = known.written.setdefault(room, set())
    # accepted.job_ids holds each file's jobs in turn, one per destination that wants it (intake.plan_jobs)
    start, new_files = 0, 0
    for f, file_id in zip(files, accepted.file_ids, strict=True):
        jobs = set(accepted.job_ids[start:start + len(_wanted(settings, f))])
        start += len(_wanted(settings, f))
        new_jobs = jobs - had.get(file_id, set()) if file_id not in written else set()
        new_files += file_id not in had and file_id not in written
        counts.jobs_created += len(new_jobs)
        counts.newly_queued += bool(new_jobs)
        counts.already_archived += not new_jobs and (file_id in had or file_id in written)
        written.add(file_id)
    counts.new_files += new_files
    return bool(new_files)


def _needs_writing(settings: Settings, f: RecordingFile, row: FileRecord | None) -> bool:
    if row is None:
        return True
    if set(_wanted(settings, f)) - {c.destination for c in row.copies}:
        return True
    return ((f.size is not None and row.size != f.size) or (f.recording_id is not None and row.recording_id is None)
            or (f.file_id is not None and row.videosdk_file_id is None)
            or (f.file_url is not None and row.source_url is None))


def _name(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


def match(rows: Sequence[FileRecord], f: RecordingFile) -> FileRecord | None:
    """The ledger's row of ``f``, by the ledger's own rule (archiver.ledger.files: same room,
    participant and {kind}; same session or one unknown on either side; same name, or VideoSDK's file
    id where one side names the file by it)."""
    name = _name(f.file_path) or f.filename
    stem = name.rsplit(".", 1)[0]
    for row in rows:
        if (row.participant_id, row.kind) != (f.participant_id, f.kind):
            continue
        if f.session_id and row.session_id not in (f.session_id, ""):
            continue
        row_name = row.file_name or _name(row.file_path)
        if row_name == name or row.videosdk_file_id == stem or (f.file_id and (
                row.videosdk_file_id == f.file_id or row_name.startswith(f.file_id + "."))):
            return row
    return None


def _check_sizes(ledger: Ledger, row: FileRecord, f: RecordingFile, counts: KindCounts) -> None:
    """Flag succeeded copies whose size differs from VideoSDK's; clear size_mismatch and size_unproven
    once they agree. Writes only when a flag changes."""
    if f.size is None or _name(row.file_path).lower().endswith(".m3u8"):
        return  # an HLS playlist's copy includes its segments: VideoSDK's size of the playlist says nothing
    for copy in row.copies:
        if copy.state != JobState.SUCCEEDED or copy.bytes is None:
            continue
        if copy.bytes != f.size:
            counts.mismatches += 1
            # verify's own flags (a copy missing or changed in its bucket) say more; they stay
            if copy.error_code in (None, Flag.SIZE_UNPROVEN):
                counts.new_mismatches += 1
                ledger.flag_copy(copy.job_id, Flag.SIZE_MISMATCH, f"copy has {copy.bytes} bytes, VideoSDK reports "
                                 f"{f.size} bytes for {f.recording_kind} recording {f.recording_id}")
        elif copy.error_code in (Flag.SIZE_MISMATCH, Flag.SIZE_UNPROVEN):
            ledger.clear_flag(copy.job_id, copy.error_code)  # VideoSDK's size proves the length now


def _bare(url: str | None) -> str | None:
    # a customer's storage URL may be signed: its query string is a credential and stays out of the ledger
    return urlunsplit(urlsplit(url)._replace(query="", fragment="")) if url else None


def _origin(kind: RecordingKind, files: list[RecordingFile]) -> Origin:
    first = files[0]
    ident = first.recording_id or f"{first.meeting_id}:{first.file_id or first.file_path}"
    key = f"reconcile:{kind}:{ident}"
    body = json.dumps({"reconcile": str(kind), "recordingId": first.recording_id, "roomId": first.meeting_id,
                       "sessionId": first.session_id or None,
                       "recordedAt": first.recorded_at.isoformat() if first.recorded_at else None,
                       "files": [{"filePath": f.file_path, "fileUrl": _bare(f.file_url), "fileId": f.file_id,
                                  "size": f.size} for f in files]})
    # date parts of keys come from received_at: the recording's own time keeps them the same on every run
    return Origin(body=body, dedupe_key=short_dedupe_key("reconcile", key), webhook_type=SOURCE_TYPE,
        meeting_id=first.meeting_id, session_id=first.session_id or None,
        received_at=first.recorded_at or utcnow(), verified=True, source="reconcile")
