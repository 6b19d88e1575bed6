"""The ledger's tables: every accepted event, every recording file, every copy job and its attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class RecordingFile(Base):
    __tablename__ = "recording_files"
    __table_args__ = (UniqueConstraint("meeting_id", "session_id", "participant_id", "kind", "file_path",
                                       name="uq_recording_file"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[str] = mapped_column(String(200), index=True)
    session_id: Mapped[str] = mapped_column(String(200))
    participant_id: Mapped[str] = mapped_column(String(200), default=NONE)
    kind: Mapped[str] = mapped_column(String(50), default=NONE)
    file_path: Mapped[str] = mapped_column(String(1024))
    source_url: Mapped[str] = mapped_column(Text)
    webhook_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int | None] = mapped_column(BigInteger)
    recording_id: Mapped[str | None] = mapped_column(String(100), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set once retention deleted the recording from VideoSDK (or found it already gone): it is then
    # never considered again. The history of attempts is in `deletions`.
    deleted_from_videosdk_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CopyJob(Base):
    __tablename__ = "copy_jobs"
    __table_args__ = (UniqueConstraint("file_id", "destination", name="uq_copy_job"),
                      Index("ix_copy_jobs_state_updated", "state", "updated_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("recording_files.id"), index=True)
    destination: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending|running|succeeded|failed
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
