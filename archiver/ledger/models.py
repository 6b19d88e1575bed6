"""The ledger's tables: every accepted event, every recording file, every copy job and its attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from archiver.domain.states import JobState, LookupState

# "No participant"/"no kind" is stored as "" rather than NULL so the uniqueness of a recording file
# holds on every database (NULLs never compare equal inside a UNIQUE constraint).
NONE = ""


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_type: Mapped[str] = mapped_column(String(100), index=True)
    meeting_id: Mapped[str | None] = mapped_column(String(200), index=True)
    session_id: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    signature_verified: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(20))  # webhook | replay | reconcile | cli
    body: Mapped[str] = mapped_column(Text)


class FileRow(Base):
    """A row of recording_files (the ORM model); the domain value is archiver.domain.recordings.RecordingFile."""

    __tablename__ = "recording_files"
    # One row per file, whatever path form names it: a webhook says "encoded/videos/X.mp4" where the
    # REST API says "uploads/videos/X.mp4" for the same file (reference section 2), so the identity is
    # the file's name within its recording, not its whole path.
    __table_args__ = (UniqueConstraint("meeting_id", "session_id", "participant_id", "kind", "file_name",
                                       name="uq_recording_file_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[str] = mapped_column(String(200), index=True)
    session_id: Mapped[str] = mapped_column(String(200))
    participant_id: Mapped[str] = mapped_column(String(200), default=NONE)
    kind: Mapped[str] = mapped_column(String(50), default=NONE)
    file_path: Mapped[str] = mapped_column(String(1024))  # the form it was first seen in
    file_name: Mapped[str] = mapped_column(String(1024))  # basename of file_path: the identity
    videosdk_file_id: Mapped[str | None] = mapped_column(String(100), index=True)  # when known
    recording_kind: Mapped[str] = mapped_column(String(20), default="room")  # archiver.domain.recordings.RecordingKind
    storage: Mapped[str] = mapped_column(String(20), default="videosdk")  # videosdk | customer
    source_url: Mapped[str | None] = mapped_column(Text)  # None: only in the customer's storage
    webhook_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int | None] = mapped_column(BigInteger)
    recording_id: Mapped[str | None] = mapped_column(String(100), index=True)
    recorded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # start or createdAt
    # When VideoSDK's API, asked with our credentials, listed this file (a lookup, reconcile, or the
    # worker's check before copying a webhook's file): proof that it is our account's recording.
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set once retention deleted the recording from VideoSDK (or found it already gone): it is then
    # never considered again. The history of attempts is in `deletions`.
    deleted_from_videosdk_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CopyJob(Base):
    __tablename__ = "copy_jobs"
    __table_args__ = (UniqueConstraint("file_id", "destination", name="uq_copy_job"),
                      Index("ix_copy_jobs_state_updated", "state", "updated_at"),
                      Index("ix_copy_jobs_destination_key", "destination", "object_key"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("recording_files.id"), index=True)
    destination: Mapped[str] = mapped_column(String(100))
    # pending | running | succeeded | failed | held (waiting for a source: the customer's storage)
    state: Mapped[str] = mapped_column(String(20), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    object_key: Mapped[str | None] = mapped_column(String(1024))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(String(200))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Lookup(Base):
    """A recording a webhook named only by id (merge, transcript, composite): its files are fetched
    through the REST API. Durable, so a lookup whose broker message was lost is started again by
    the sweeper, and retried until it finds the files or fails for good."""

    __tablename__ = "lookups"
    __table_args__ = (UniqueConstraint("recording_kind", "resource_id", name="uq_lookup"),
                      Index("ix_lookups_state_updated", "state", "updated_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    recording_kind: Mapped[str] = mapped_column(String(20))
    resource_id: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), default=LookupState.PENDING)  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CopyPiece(Base):
    """One piece of a multi-file copy (an HLS playlist's segments and variant playlists), committed
    at the destination: a retried job copies only the pieces not recorded here."""

    __tablename__ = "copy_pieces"
    __table_args__ = (UniqueConstraint("job_id", "path", name="uq_copy_piece"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("copy_jobs.id"), index=True)
    path: Mapped[str] = mapped_column(String(1024))  # relative to the playlist's folder
    object_key: Mapped[str] = mapped_column(String(1024))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobAttempt(Base):
    __tablename__ = "job_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("copy_jobs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(20))  # succeeded | retrying | failed | lost
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    bytes: Mapped[int | None] = mapped_column(BigInteger)


class Deletion(Base):
    """One attempt by retention to delete a recording from VideoSDK (dry runs are not recorded)."""

    __tablename__ = "deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("recording_files.id"), index=True)
    recording_id: Mapped[str] = mapped_column(String(100), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(20))  # deleted | already_gone | failed
    detail: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """One notification to one configured endpoint (archiver.ledger.outbox): written in the transaction
    that decided the outcome, delivered later, at least once, always with the same `webhook_id`."""

    __tablename__ = "notification_outbox"
    __table_args__ = (UniqueConstraint("webhook_id", name="uq_outbox_webhook_id"),
                      Index("ix_outbox_state_due", "state", "next_attempt_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(64))  # "msg_" + a digest of endpoint, type and subject
    endpoint: Mapped[str] = mapped_column(String(100))  # [[notifications]] name
    event_type: Mapped[str] = mapped_column(String(50))  # recording.archived | copy.failed | recording.discovered
    subject: Mapped[str] = mapped_column(String(200))  # which outcome: e.g. "file:12:attempt:40"
    payload: Mapped[str] = mapped_column(Text)  # the exact JSON body sent, signed as is
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending | delivering | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)  # the endpoint's HTTP status, if it answered
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
