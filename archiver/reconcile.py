"""Compare VideoSDK's list of recordings with the ledger: archive what no webhook announced, learn
each file's size and recording id, and flag copies whose size differs from VideoSDK's.

Webhook delivery is at-least-once at best and may lose events; this is the safety net. It only
covers what the REST API lists: room (composite) recordings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from archiver.config import Settings
from archiver.intake import Origin, plan_jobs, record_files
from archiver.ledger.records import SIZE_UNPROVEN
from archiver.ledger.store import FileRecord, Ledger, utcnow
from archiver.metrics import RECONCILE_FINDS
from archiver.recordings import RecordingFile, RecordingKind
from archiver.videosdk_api import RecordingInfo, VideoSDKAuthError, VideoSDKClient, VideoSDKError

log = logging.getLogger("archiver.reconcile")

# The ledger row says where the file came from; the jobs are planned as for the webhook that
# should have announced it, so destination `events` filters and {webhookType} keys treat a
# reconciled room recording exactly like one a webhook delivered.
SOURCE_TYPE, ANNOUNCED_AS = "reconcile", "recording-stopped"
SIZE_MISMATCH = "size_mismatch"


@dataclass
class RoomReport:
    room: str
    recordings: int = 0
    new_files: int = 0  # files no webhook (or earlier reconcile) had put in the ledger
    jobs_created: int = 0
    mismatches: int = 0  # succeeded copies whose size differs from VideoSDK's
    new_mismatches: int = 0  # of which flagged by this run
    error: str | None = None
    new: list[str] = field(default_factory=list)  # recording ids of the new files


@dataclass
class ReconcileReport:
    rooms: list[RoomReport]

    def total(self, name: str) -> int:
        return sum(getattr(r, name) for r in self.rooms)

    @property
    def failed_rooms(self) -> int:
        return sum(r.error is not None for r in self.rooms)

    @property
    def found_anything(self) -> bool:
        return bool(self.total("new_files") or self.total("jobs_created") or self.total("mismatches")
                    or self.failed_rooms)

    def to_json(self) -> dict[str, Any]:
        return {"rooms_scanned": len(self.rooms), "recordings_seen": self.total("recordings"),
                "files_new": self.total("new_files"), "jobs_created": self.total("jobs_created"),
                "mismatches": self.total("mismatches"), "rooms_failed": self.failed_rooms,
                "rooms": [asdict(r) for r in self.rooms]}


def rooms_to_scan(ledger: Ledger, settings: Settings, since: datetime, extra: Iterable[str] = ()) -> list[str]:
    rooms = set(ledger.meetings_since(since)) | set(settings.videosdk.rooms) | set(extra)
    return sorted(r for r in rooms if r.strip())


def reconcile(ledger: Ledger, settings: Settings, client: VideoSDKClient,
              publish: Callable[[Sequence[int]], None] | None, *, since: datetime,
              rooms: Iterable[str] = ()) -> ReconcileReport:
    """Reconcile every room seen in the ledger since `since`, the configured ones and `rooms`.
    `publish` puts created jobs on the broker (Publisher.copies); a failing room is reported and the
    others go on, except after an authentication failure, which every further call would repeat."""
    report = ReconcileReport([RoomReport(room) for room in rooms_to_scan(ledger, settings, since, rooms)])
    auth_error: str | None = None
    for room in report.rooms:
        if auth_error is not None:
            room.error = auth_error
            continue
        try:
            _reconcile_room(ledger, settings, client, publish, room)
        except VideoSDKError as exc:
            room.error = f"{exc.code}: {exc}"
            if isinstance(exc, VideoSDKAuthError):
                auth_error = room.error
            log.warning("reconcile %s: %s", room.room, room.error)
    _count(report)
    return report


def _reconcile_room(ledger: Ledger, settings: Settings, client: VideoSDKClient,
                    publish: Callable[[Sequence[int]], None] | None, room: RoomReport) -> None:
    known = ledger.files(meeting_id=room.room)
    seen: set[str] = set()
    for recording in client.list_recordings(room.room):
        if recording.id in seen:  # a recording deleted meanwhile shifts later pages: one may come twice
            continue
        seen.add(recording.id)
        room.recordings += 1
        existing = _match(known, recording)
        if existing is None:
            room.new_files += 1
            room.new.append(recording.id)
        room.jobs_created += _record(ledger, settings, publish, room.room, recording, existing)
        if existing is not None:
            current, new = _check_sizes(ledger, existing, recording)
            room.mismatches += current
            room.new_mismatches += new


def _bare(path: str) -> str:
    return path.lstrip("/")


def _match(known: Sequence[FileRecord], recording: RecordingInfo) -> FileRecord | None:
    """The ledger's row for this recording. Webhooks give filePath as "/encoded/videos/x.mp4" or
    "uploads/videos/x.mp4", the API without the leading slash: paths are compared without it, and
    the row keeps the form it was first stored in (intake, which we do not change, stores the
    webhook's form), so the unique key of the existing row is hit and no second row is made."""
    for f in known:
        if recording.id and f.recording_id == recording.id:
            return f
    for f in known:
        if (f.participant_id is None and f.kind is None and _bare(f.file_path) == _bare(recording.file_path)
                and (recording.session_id is None or f.session_id == recording.session_id)):
            return f
    return None


def _record(ledger: Ledger, settings: Settings, publish: Callable[[Sequence[int]], None] | None, room: str,
            recording: RecordingInfo, existing: FileRecord | None) -> int:
    """Put the file in the ledger (or fill in its size and recording id) with a job for every
    destination that has none; returns how many jobs were created. Writes nothing when there is
    nothing to add, so a reconcile every few minutes does not churn the ledger."""
    session = existing.session_id if existing else (recording.session_id or "")
    path = existing.file_path if existing else recording.file_path
    received_at = recording.created_at or utcnow()  # the date parts of keys: when the recording was made
    file = RecordingFile(meeting_id=room, session_id=session, participant_id=None, kind=None, file_path=path,
                         file_url=recording.file_url, webhook_type=ANNOUNCED_AS, recording_id=recording.id or None,
                         recording_kind=RecordingKind.ROOM, size=recording.size, recorded_at=recording.created_at)
    have = {c.destination for c in existing.copies} if existing else set()
    jobs = [j for j in plan_jobs(file, settings.destinations, received_at=received_at) if j.destination not in have]
    learned = existing is None or (recording.size is not None and existing.size != recording.size) or (
        bool(recording.id) and existing.recording_id != recording.id)
    if not jobs and not learned:
        return 0
    body = json.dumps({"recordingId": recording.id, "roomId": room, "sessionId": recording.session_id,
                       "filePath": recording.file_path, "fileUrl": recording.file_url, "size": recording.size,
                       "createdAt": recording.created_at.isoformat() if recording.created_at else None})
    origin = Origin(body=body, dedupe_key=_dedupe_key(recording), webhook_type=SOURCE_TYPE, meeting_id=room,
                    session_id=session or None, received_at=received_at, verified=True, source="reconcile")
    accepted = record_files(ledger, settings, origin, [file], publish=publish)
    before = {c.job_id for c in existing.copies} if existing else set()
    return len(set(accepted.job_ids) - before)


def _dedupe_key(recording: RecordingInfo) -> str:
    key = f"reconcile:{recording.id or recording.file_url}"
    # events.dedupe_key holds 64 characters; VideoSDK's ids are 24, but nothing promises that
    return key if len(key) <= 64 else "reconcile:" + hashlib.sha256(key.encode()).hexdigest()[:54]


def _check_sizes(ledger: Ledger, existing: FileRecord, recording: RecordingInfo) -> tuple[int, int]:
    """Flag succeeded copies whose size differs from VideoSDK's, clear the flag once they agree;
    returns (mismatched copies, of which newly flagged)."""
    if recording.size is None:
        return 0, 0
    flagged = new = 0
    for copy in existing.copies:
        if copy.state != "succeeded" or copy.bytes is None:
            continue
        if copy.bytes != recording.size:
            flagged += 1
            new += copy.error_code != SIZE_MISMATCH
            ledger.flag_copy(copy.job_id, SIZE_MISMATCH, f"copy has {copy.bytes} bytes, VideoSDK reports "
                             f"{recording.size} bytes for recording {recording.id}")
        elif copy.error_code in (SIZE_MISMATCH, SIZE_UNPROVEN):
            # VideoSDK's size agrees: a length the source never proved is proven now.
            ledger.clear_flag(copy.job_id, copy.error_code)
    return flagged, new


def _count(report: ReconcileReport) -> None:
    # Only first sightings: a mismatch that persists is reported by every run but counted once.
    for kind, value in (("new_file", report.total("new_files")), ("size_mismatch", report.total("new_mismatches"))):
        if value:
            RECONCILE_FINDS.labels(kind=kind).inc(value)


def window(settings: Settings) -> datetime:
    return utcnow() - timedelta(hours=settings.reconcile.window_hours)
