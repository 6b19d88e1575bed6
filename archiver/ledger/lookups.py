"""Lookups: recordings a webhook named only by id, fetched through VideoSDK's REST API by a worker.

A lookup row is written in the same transaction as its event, so a lookup whose broker message is
lost is still pending in the ledger, and the sweeper starts it again. States: pending (to run or
retrying), done (its files are recorded), failed (for good; the error says why and what to do).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from archiver.domain.states import LookupState
from archiver.ledger.database import dml
from archiver.ledger.files import insert_or_get
from archiver.ledger.models import Lookup
from archiver.ledger.records import LookupRecord, _aware, utcnow


def add(db: Session, event_id: int, recording_kind: str, resource_id: str) -> tuple[int, bool]:
    now = utcnow()
    row = dict(event_id=event_id, recording_kind=recording_kind, resource_id=resource_id, state=LookupState.PENDING,
               attempts=0, created_at=now, updated_at=now)
    return insert_or_get(db, Lookup, row, ("recording_kind", "resource_id"))


def _record(row: Lookup) -> LookupRecord:
    return LookupRecord(row.id, row.event_id, row.recording_kind, row.resource_id, row.state, row.attempts,
                        row.error_code, row.error_message, _aware(row.updated_at))  # type: ignore[arg-type]


class Lookups:
    """The ledger's lookups table (reached as ``Ledger.lookups``)."""

    def __init__(self, sessions: sessionmaker[Session], reads: sessionmaker[Session]) -> None:
        self.sessions, self.reads = sessions, reads

    def get(self, lookup_id: int) -> LookupRecord | None:
        with self.reads() as db:
            row = db.get(Lookup, lookup_id)
            return _record(row) if row is not None else None

    def list(self, *, state: str | None = None) -> list[LookupRecord]:
        query = select(Lookup).order_by(Lookup.id)
        if state is not None:
            query = query.where(Lookup.state == state)
        with self.reads() as db:
            return [_record(row) for row in db.scalars(query)]

    def start(self, lookup_id: int) -> LookupRecord | None:
        """Count an attempt of a pending lookup; None when it is done or failed already."""
        with self.sessions.begin() as db:
            taken = dml(db, update(Lookup).where(Lookup.id == lookup_id, Lookup.state == LookupState.PENDING)
                               .values(attempts=Lookup.attempts + 1, updated_at=utcnow())).rowcount
            row = db.get(Lookup, lookup_id) if taken else None
            return _record(row) if row is not None else None

    def finish(self, lookup_id: int, *, state: str, code: str | None = None, message: str | None = None) -> None:
        """state: done, failed (for good) or pending (to be retried: code/message say why)."""
        with self.sessions.begin() as db:
            db.execute(update(Lookup).where(Lookup.id == lookup_id)
                       .values(state=state, error_code=code, error_message=(message or None) and message[:4000],
                               updated_at=utcnow()))

    def retry(self, lookup_ids: Sequence[int] | None = None) -> builtins.list[int]:  # list: the method below
        """Operator retry: failed lookups (or the given ones) back to pending with a fresh budget."""
        with self.sessions.begin() as db:
            query = select(Lookup.id).where(Lookup.state == LookupState.FAILED)
            if lookup_ids is not None:
                query = select(Lookup.id).where(Lookup.id.in_(list(lookup_ids)), Lookup.state != LookupState.DONE)
            ids = list(db.scalars(query))
            if ids:
                db.execute(update(Lookup).where(Lookup.id.in_(ids))
                           .values(state=LookupState.PENDING, attempts=0, updated_at=utcnow()))
            return ids

    def stale(self, pending_for: timedelta) -> builtins.list[int]:
        """Pending lookups untouched this long: their message was lost (or their worker died)."""
        with self.reads() as db:
            return list(db.scalars(select(Lookup.id).where(Lookup.state == LookupState.PENDING,
                                                           Lookup.updated_at < utcnow() - pending_for)))
