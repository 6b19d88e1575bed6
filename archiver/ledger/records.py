"""What the ledger takes in and hands out: plain records, no database session attached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.ledger.models import CopyJob, FileRow
from archiver.observability.redaction import redact_source


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class NewJob:
    """A job to create for a file: its destination and rendered key, or why the key could not be made."""

    destination: str
    object_key: str | None
    error: str | None = None  # a template render error fails the job at once, visibly
    held: str | None = None  # why the job waits (state "held"): the file has no source we can read yet
    manifest: bool = False  # the destination writes KEY.json beside the copy: that key is taken too


@dataclass(frozen=True)
class Accepted:
    event_id: int
    duplicate: bool
    file_ids: tuple[int, ...]
    job_ids: tuple[int, ...]  # every job of the event's files, new or not
    created: tuple[int, ...]  # the pending jobs this call created (what was published)
    lookups: tuple[int, ...] = ()  # the lookups this call created (what was published)


@dataclass(frozen=True)
class JobRecord:
    job_id: int
    destination: str
    state: str
    attempts: int
    object_key: str | None
    bytes: int | None
    sha256: str | None
    etag: str | None
    error_code: str | None
    error_message: str | None
    meeting_id: str
    session_id: str
    participant_id: str | None
    kind: str | None
    file_path: str
    source_url: str | None  # None: only in the customer's storage
    webhook_type: str
    recording_id: str | None
    size: int | None
    received_at: datetime
    updated_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    verified_at: datetime | None = None
    recording_kind: str = "room"
    videosdk_file_id: str | None = None
    storage: str = "videosdk"
    confirmed: bool = False  # VideoSDK's API, asked with our credentials, lists the file

    def to_json(self) -> dict[str, Any]:
        """The job as shown (`archiver status --json`, the demo): the source URL without its query
        string, which carries the CDN's signed-URL token. `source_url` itself keeps it: the worker
        downloads from it."""
        data = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}
        data["source_url"] = redact_source(self.source_url) if self.source_url is not None else None
        data["error"] = f"{self.error_code}: {self.error_message}" if self.error_code else None
        return data


@dataclass(frozen=True)
class CopyState:
    """One copy of a file, as reconcile, verify and retention judge it."""

    job_id: int
    destination: str
    state: str
    bytes: int | None
    error_code: str | None
    verified_at: datetime | None


@dataclass(frozen=True)
class FileRecord:
    file_id: int
    meeting_id: str
    session_id: str
    participant_id: str | None
    kind: str | None
    file_path: str
    webhook_type: str
    size: int | None
    recording_id: str | None
    deleted_from_videosdk_at: datetime | None
    copies: tuple[CopyState, ...]
    recording_kind: str = "room"
    file_name: str = ""
    videosdk_file_id: str | None = None
    storage: str = "videosdk"
    source_url: str | None = None


@dataclass(frozen=True)
class LookupRecord:
    lookup_id: int
    event_id: int
    recording_kind: str
    resource_id: str
    state: str  # pending | done | failed
    attempts: int
    error_code: str | None
    error_message: str | None
    updated_at: datetime


def job_record(job: CopyJob, f: FileRow) -> JobRecord:
    return JobRecord(
        job_id=job.id, destination=job.destination, state=job.state, attempts=job.attempts,
        object_key=job.object_key, bytes=job.bytes, sha256=job.sha256, etag=job.etag,
        error_code=job.error_code, error_message=job.error_message, meeting_id=f.meeting_id,
        session_id=f.session_id, participant_id=f.participant_id or None, kind=f.kind or None,
        file_path=f.file_path, source_url=f.source_url, webhook_type=f.webhook_type,
        recording_id=f.recording_id, size=f.size, received_at=_aware(f.received_at),  # type: ignore[arg-type]
        updated_at=_aware(job.updated_at), lease_owner=job.lease_owner,  # type: ignore[arg-type]
        lease_expires_at=_aware(job.lease_expires_at), verified_at=_aware(job.verified_at),
        recording_kind=f.recording_kind, videosdk_file_id=f.videosdk_file_id, storage=f.storage,
        confirmed=f.confirmed_at is not None)


def file_record(f: FileRow, copies: tuple[CopyState, ...]) -> FileRecord:
    return FileRecord(f.id, f.meeting_id, f.session_id, f.participant_id or None, f.kind or None, f.file_path,
                      f.webhook_type, f.size, f.recording_id, _aware(f.deleted_from_videosdk_at), copies,
                      recording_kind=f.recording_kind, file_name=f.file_name, videosdk_file_id=f.videosdk_file_id,
                      storage=f.storage, source_url=f.source_url)
