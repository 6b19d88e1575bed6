"""The one model of "a recording and its files", for every kind VideoSDK produces. Pure: no SDK, no Celery.

Every origin (a webhook, a REST lookup by id, reconcile's listings) describes what it found as
``RecordingFile`` values; ``archiver.intake.record.record_files`` is the one path that puts them in the ledger.
Facts from shared/reference/videosdk.md sections 1, 2 and 4.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from urllib.parse import unquote, urlsplit

__all__ = ["ANNOUNCED_BY", "TRACK_KINDS", "RecordingFile", "RecordingKind", "Storage", "is_customer_storage_url"]


class RecordingKind(StrEnum):
    """What VideoSDK calls each recording resource (reference section 2, "Every kind of recording")."""

    ROOM = "room"  # composite of the meeting: GET /v2/recordings
    PARTICIPANT = "participant"  # GET /v2/recordings/participant
    TRACK = "track"  # GET /v2/recordings/participant/track
    MERGE = "merge"  # merged participant audio: GET /v2/recordings/participant/merge
    COMPOSITE = "composite"  # the newer composite product: GET /v2/recordings/composite
    TRANSCODING = "transcoding"  # HLS to MP4: GET /v2/transcodings
    TRANSCRIPT = "transcript"  # post-call transcript and summary: GET /ai/v1/post-transcriptions


class Storage(StrEnum):
    VIDEOSDK = "videosdk"  # on VideoSDK's CDN: fetched from file_url
    CUSTOMER = "customer"  # written by VideoSDK into the customer's own bucket (fileUrl null or on its host)


# The webhook type that announces each kind. Files found by a REST lookup or by reconcile are planned
# as if that webhook had announced them, so a destination's `events` filter and {webhookType} treat
# them alike. Transcodings have no documented webhook: "transcoding-completed" names them for `events`.
ANNOUNCED_BY: dict[RecordingKind, str] = {
    RecordingKind.ROOM: "recording-stopped",
    RecordingKind.PARTICIPANT: "participant-recording-stopped",
    RecordingKind.TRACK: "participant-track-recording-stopped",
    RecordingKind.MERGE: "merge-recording-completed",
    RecordingKind.COMPOSITE: "composite-recording-stopped",
    RecordingKind.TRANSCODING: "transcoding-completed",
    RecordingKind.TRANSCRIPT: "transcription-stopped",
}
MERGE_TYPE_PREFIX = "merge-recording-"  # merge-recording-completed and merge-recording-failed


def is_merge(webhook_type: str) -> bool:
    """The one test of "is this a merge event": the types whose data.id names a merge (stored as its id)."""
    return webhook_type.startswith(MERGE_TYPE_PREFIX)


TRACK_KINDS = frozenset({"audio", "video", "screen_audio", "screen_video"})

# Hosts of the clouds VideoSDK can write a customer's recordings to (reference section 5): a fileUrl
# there is the customer's own object, not VideoSDK's CDN.
_CUSTOMER_HOST_SUFFIXES = (".blob.core.windows.net", ".amazonaws.com")
_CUSTOMER_HOSTS = frozenset({"storage.googleapis.com", "storage.cloud.google.com"})


def is_customer_storage_url(url: str | None) -> bool:
    """True for a null fileUrl or one on a cloud storage host (the customer's bucket)."""
    if url is None:
        return True
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return host in _CUSTOMER_HOSTS or host.endswith(_CUSTOMER_HOST_SUFFIXES)


@dataclass(frozen=True)
class RecordingFile:
    """One archivable file of one recording, from any origin.

    ``kind`` is the template variable {kind}: a track's kind (audio, video, screen_audio, screen_video),
    "merged" for merged audio, "transcript"/"summary" for transcript files, else None. ``file_url`` is
    None when the file is only in the customer's storage (then ``file_path`` names the object there).
    ``file_id`` is VideoSDK's id of the file (``file.id`` / ``files[]._id``), ``recording_id`` the id of
    the recording resource (what DELETE takes); both None when the origin did not say (webhooks).
    ``size`` is bytes as VideoSDK reports it; ``recorded_at`` the recording's start or createdAt.
    """

    meeting_id: str
    session_id: str
    participant_id: str | None
    kind: str | None
    file_path: str
    file_url: str | None
    webhook_type: str
    recording_id: str | None = None
    recording_kind: RecordingKind = RecordingKind.ROOM
    file_id: str | None = None
    size: int | None = None
    recorded_at: datetime | None = field(default=None, compare=False)

    @property
    def filename(self) -> str:
        """Base name of file_path; falls back to the (percent-decoded) last URL path segment.

        The result is untrusted text: templates re-check it before it becomes part of a key.
        """
        name = posixpath.basename(self.file_path)
        if not name and self.file_url:
            name = unquote(posixpath.basename(urlsplit(self.file_url).path))
        return name

    @property
    def storage(self) -> Storage:
        return Storage.CUSTOMER if is_customer_storage_url(self.file_url) else Storage.VIDEOSDK
