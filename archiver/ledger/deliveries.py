"""The delivery side of the notification outbox: claim due messages, record what the endpoint said.

A message is claimed like a copy job: one conditional UPDATE takes it (pending and due, or delivering
under a lease that ran out because its sender died), so two senders never POST it at once, and a
sender that died mid-POST leaves it to be sent again, with the same webhook-id, once its lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from archiver.ledger.database import dml
from archiver.ledger.models import OutboxMessage
from archiver.ledger.records import _aware, utcnow


@dataclass(frozen=True)
class Message:
    message_id: int
    webhook_id: str
    endpoint: str
    event_type: str
    payload: str
    attempts: int  # counting the one this claim starts


@dataclass(frozen=True)
class Backlog:
    """What `archiver status` and the backlog gauge show. Ages in seconds."""

    pending: int  # waiting to be sent (or being sent now)
    failed: int  # given up after max_attempts
    delivered: int
    oldest_pending_seconds: float | None
    last_errors: tuple[tuple[str, str, str], ...]  # (endpoint, webhook id, error) of failing messages


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(and_(OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= now),
               and_(OutboxMessage.state == "delivering", OutboxMessage.lease_expires_at < now))


class Deliveries:
    def __init__(self, sessions: sessionmaker[Session], reads: sessionmaker[Session]) -> None:
        self.sessions, self.reads = sessions, reads

    def claim_due(self, worker: str, lease: timedelta, limit: int = 20) -> list[Message]:
        """Take up to ``limit`` due messages for ``worker`` (each attempt counted), oldest first."""
        now = utcnow()
        taken: list[Message] = []
        with self.reads() as db:
            ids = list(db.scalars(select(OutboxMessage.id).where(_due(now)).order_by(OutboxMessage.id).limit(limit)))
        for message_id in ids:
            with self.sessions.begin() as db:
                got = dml(db, update(OutboxMessage).where(OutboxMessage.id == message_id, _due(now))
                                 .values(state="delivering", lease_owner=worker, lease_expires_at=now + lease,
                                         attempts=OutboxMessage.attempts + 1, updated_at=now)).rowcount
                if got:
                    row = db.get(OutboxMessage, message_id)
                    assert row is not None
                    taken.append(Message(row.id, row.webhook_id, row.endpoint, row.event_type, row.payload,
                                         row.attempts))
        return taken

    def delivered(self, message_id: int, worker: str, status: int) -> bool:
        now = utcnow()
        return self._finish(message_id, worker, state="delivered", last_status=status, last_error=None,
                            delivered_at=now, next_attempt_at=now)

    def retry(self, message_id: int, worker: str, *, status: int | None, error: str, delay: float | None) -> bool:
        """Not delivered: again after ``delay`` seconds, or (None) failed for good."""
        state = "pending" if delay is not None else "failed"
        return self._finish(message_id, worker, state=state, last_status=status, last_error=error[:4000],
                            next_attempt_at=utcnow() + timedelta(seconds=delay or 0))

    def _finish(self, message_id: int, worker: str, **values: object) -> bool:
        with self.sessions.begin() as db:
            return bool(dml(db, update(OutboxMessage).where(
                OutboxMessage.id == message_id, OutboxMessage.lease_owner == worker,
                OutboxMessage.state == "delivering").values(lease_owner=None, lease_expires_at=None,
                                                             updated_at=utcnow(), **values)).rowcount)

    def next_due(self) -> datetime | None:
        """When the next message becomes sendable (its retry time or its sender's lease end)."""
        with self.reads() as db:
            pending = db.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.state == "pending"))
            leased = db.scalar(select(func.min(OutboxMessage.lease_expires_at))
                               .where(OutboxMessage.state == "delivering"))
        times = [t for t in (_aware(pending), _aware(leased)) if t is not None]
        return min(times) if times else None

    def requeue_failed(self) -> int:
        """Operator retry: failed messages get a fresh attempt budget (same webhook-id)."""
        with self.sessions.begin() as db:
            return int(dml(db, update(OutboxMessage).where(OutboxMessage.state == "failed").values(
                state="pending", attempts=0, next_attempt_at=utcnow(), updated_at=utcnow())).rowcount)

    def messages(self, *, webhook_id: str | None = None) -> list[OutboxMessage]:
        with self.reads() as db:
            query = select(OutboxMessage).order_by(OutboxMessage.id)
            if webhook_id is not None:
                query = query.where(OutboxMessage.webhook_id == webhook_id)
            rows = list(db.scalars(query))
            db.expunge_all()
            return rows

    def backlog(self, errors: int = 5) -> Backlog:
        now = utcnow()
        with self.reads() as db:
            counts = dict(db.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)).all())
            oldest = _aware(db.scalar(select(func.min(OutboxMessage.created_at))
                                      .where(OutboxMessage.state.in_(("pending", "delivering")))))
            failing = db.execute(select(OutboxMessage.endpoint, OutboxMessage.webhook_id, OutboxMessage.last_error)
                                 .where(OutboxMessage.last_error.is_not(None),
                                        OutboxMessage.state.in_(("pending", "failed")))
                                 .order_by(OutboxMessage.updated_at.desc()).limit(errors)).all()
        return Backlog(pending=counts.get("pending", 0) + counts.get("delivering", 0), failed=counts.get("failed", 0),
                       delivered=counts.get("delivered", 0),
                       oldest_pending_seconds=(now - oldest).total_seconds() if oldest else None,
                       last_errors=tuple((e, w, str(m)) for e, w, m in failing))
