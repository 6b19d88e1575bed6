"""A meeting's recording timeline: the recording events the ledger holds for one meeting, in order.

Every accepted webhook is an event row (archiver.intake.record), state-only ones included
(``recording-starting`` ... ``recording-stopped``, ``-failed``, and the participant, track,
composite and merge families). This reads them back as ``StateEvent`` records: what happened to
which recording and when, for `archiver status --meeting ID` beside the files and their copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from archiver.ledger.models import Event
from archiver.ledger.store import Ledger

# every recording event family of the reference names "recording-" (recording-*, participant-recording-*,
# participant-track-recording-*, composite-recording-*, merge-recording-*)
_RECORDING_EVENTS = "%recording-%"


@dataclass(frozen=True)
class StateEvent:
    received_at: datetime  # when the archiver received it (VideoSDK's bodies carry no time)
    webhook_type: str  # e.g. "participant-recording-started"
    session_id: str | None
    participant_id: str | None
    kind: str | None  # a track's kind (audio, video, screen_audio, screen_video)
    files: tuple[str, ...]  # the file paths a stopped event announced
    source: str  # webhook | replay | cli | lookup | reconcile
    verified: bool  # the signature was checked

    @property
    def failed(self) -> bool:
        return self.webhook_type.endswith("-failed")

    def to_json(self) -> dict[str, Any]:
        return {"received_at": self.received_at.isoformat(), "webhook_type": self.webhook_type,
                "session_id": self.session_id, "participant_id": self.participant_id, "kind": self.kind,
                "files": list(self.files), "source": self.source, "verified": self.verified}


def _data(body: str) -> dict[str, Any]:
    # bodies are webhooks (validated at intake) or an API origin's description: read what is there
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    data = parsed.get("data") if isinstance(parsed, dict) else None
    return data if isinstance(data, dict) else {}


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def _files(data: dict[str, Any]) -> tuple[str, ...]:
    details = data.get("fileDetails")
    entries = details if isinstance(details, list) else [data]
    return tuple(p for e in entries if isinstance(e, dict) and isinstance(p := e.get("filePath"), str))


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone=True columns; they were stored as UTC
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def recording_timeline(ledger: Ledger, meeting_id: str) -> list[StateEvent]:
    """The meeting's recording events, oldest first. A redelivered webhook was stored once."""
    query = (select(Event).where(Event.meeting_id == meeting_id, Event.webhook_type.like(_RECORDING_EVENTS))
             .order_by(Event.received_at, Event.id))
    with ledger.reads() as db:
        rows = list(db.scalars(query))
        found = []
        for row in rows:
            data = _data(row.body)
            found.append(StateEvent(_utc(row.received_at), row.webhook_type, row.session_id,
                                    _text(data, "participantId"), _text(data, "kind"), _files(data), row.source,
                                    row.signature_verified))
    return found
