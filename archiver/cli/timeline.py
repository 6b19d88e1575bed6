"""`archiver status --meeting ID`'s recording timeline: the meeting's recording events as a table."""

from __future__ import annotations

from collections.abc import Sequence

from archiver.cli.common import format_table
from archiver.ledger.store import Ledger
from archiver.ledger.timeline import StateEvent, recording_timeline

COLUMNS = ("received_at", "event", "session", "participant", "track", "files", "source")


def timeline_rows(events: Sequence[StateEvent]) -> list[dict[str, str | None]]:
    return [{"received_at": e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
             "event": e.webhook_type + ("  <- FAILED" if e.failed else ""), "session": e.session_id,
             "participant": e.participant_id, "track": e.kind,
             "files": ", ".join(path.rsplit("/", 1)[-1] for path in e.files) or None,
             "source": e.source + ("" if e.verified else " (unsigned)")} for e in events]


def render_timeline(ledger: Ledger, meeting_id: str) -> str:
    """The timeline section printed under the meeting's copy jobs."""
    events = recording_timeline(ledger, meeting_id)
    if not events:
        return f"recording timeline of {meeting_id}: no recording events received"
    return f"recording timeline of {meeting_id} (UTC):\n" + format_table(timeline_rows(events), COLUMNS)
