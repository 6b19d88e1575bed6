"""Pieces of a multi-file copy (an HLS playlist's segments, keys, init sections and variant playlists)
that are committed at the destination, so a retried job copies only what is missing.

A piece is recorded right after its commit, and only by the worker holding the job's lease: a worker
that lost its lease can no longer add to the record of a job another worker now owns.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from archiver.domain.states import JobState
from archiver.ledger.database import dml
from archiver.ledger.files import insert_or_get
from archiver.ledger.models import CopyJob, CopyPiece
from archiver.ledger.records import utcnow


@dataclass(frozen=True)
class PieceRecord:
    path: str  # relative to the playlist's folder, as the playlist names it (percent-decoded)
    object_key: str
    bytes: int
    sha256: str


class Pieces:
    """The ledger's copy_pieces table (reached as ``Ledger.pieces``)."""

    def __init__(self, sessions: sessionmaker[Session], reads: sessionmaker[Session]) -> None:
        self.sessions, self.reads = sessions, reads

    def of(self, job_id: int) -> dict[str, PieceRecord]:
        """The committed pieces of a job, by path."""
        query = select(CopyPiece).where(CopyPiece.job_id == job_id).order_by(CopyPiece.id)
        with self.reads() as db:
            return {p.path: PieceRecord(p.path, p.object_key, p.bytes, p.sha256) for p in db.scalars(query)}

    def record(self, job_id: int, worker: str, piece: PieceRecord) -> bool:
        """Record a committed piece while ``worker`` holds the job's lease; False if it does not (any more).
        A piece recorded before (a copy found gone and written again) gets the new values."""
        now = utcnow()
        with self.sessions.begin() as db:
            leased = dml(db, update(CopyJob).where(CopyJob.id == job_id, CopyJob.lease_owner == worker,
                                                      CopyJob.state == JobState.RUNNING)
                                .values(updated_at=now)).rowcount
            if not leased:
                return False
            values = dict(job_id=job_id, path=piece.path, object_key=piece.object_key, bytes=piece.bytes,
                          sha256=piece.sha256, created_at=now)
            piece_id, fresh = insert_or_get(db, CopyPiece, values, ("job_id", "path"))
            if not fresh:
                db.execute(update(CopyPiece).where(CopyPiece.id == piece_id)
                           .values(object_key=piece.object_key, bytes=piece.bytes, sha256=piece.sha256,
                                   created_at=now))
            return True
