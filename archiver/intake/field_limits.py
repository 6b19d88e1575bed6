"""What the ledger can store, checked when a webhook arrives: a value that cannot be stored is a 400.

Every webhook field that reaches a bounded ledger column has its limit here, read from the column
itself (archiver/ledger/models.py), so the two cannot drift. Without this check PostgreSQL refused
such a value inside the intake transaction (SQLite stores it regardless): the answer was 503, which
says "retry later" about a delivery that can never succeed. NUL characters are refused for the same
reason (PostgreSQL text cannot hold them). Messages name the field and the limit, never the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column

from archiver.domain.recordings import is_merge
from archiver.ledger.models import Event, FileRow

# A merge's data.id is stored as the recording id (recording_files.recording_id) and was once part of
# a dedupe key f"merge:{id}" (ledgers from before lookups hold such keys): it must fit both.
MERGE_KEY_PREFIX = "merge:"


def _length(*columns: Any) -> int:
    lengths = [column.type.length for column in columns]
    return min(length for length in lengths if length is not None)


def _column(model: Any, name: str) -> Column[Any]:
    return model.__table__.c[name]  # type: ignore[no-any-return]


# field name (at the top level for webhookType, under data. or data.fileDetails[i]. otherwise) ->
# the most characters every column it reaches can hold.
FIELD_LIMITS: dict[str, int] = {
    "webhookType": _length(_column(Event, "webhook_type"), _column(FileRow, "webhook_type")),
    "meetingId": _length(_column(Event, "meeting_id"), _column(FileRow, "meeting_id")),
    "sessionId": _length(_column(Event, "session_id"), _column(FileRow, "session_id")),
    "participantId": _length(_column(FileRow, "participant_id")),
    "kind": _length(_column(FileRow, "kind")),
    "filePath": _length(_column(FileRow, "file_path")),
    "id": min(_length(_column(FileRow, "recording_id")),
              _length(_column(Event, "dedupe_key")) - len(MERGE_KEY_PREFIX)),
}


# What an event of a type that is not documented keeps: only the events table's columns.
STORED_FOR_EVERY_TYPE = ("meetingId", "sessionId")


def storage_problems(obj: Mapping[str, Any], *, documented: bool) -> list[str]:
    """One message per field of a decoded webhook body whose string value the ledger would store but
    cannot: longer than its column, or holding a NUL character. Of a type that is not `documented`
    only the ids the events table keeps are checked (its other fields are never stored); `data.id` is
    stored for merge types only. Fields of the wrong type are left to the shape checks."""
    problems = _check(obj, ("webhookType",), "")
    data = obj.get("data")
    if not isinstance(data, Mapping):
        return problems
    merge = is_merge(str(obj.get("webhookType", "")))
    names = tuple(k for k in FIELD_LIMITS if k != "webhookType" and (k != "id" or merge)) if documented \
        else STORED_FOR_EVERY_TYPE
    problems += _check(data, names, "data.")
    details = data.get("fileDetails")
    if documented and isinstance(details, list):
        for i, entry in enumerate(details):
            if isinstance(entry, Mapping):
                problems += _check(entry, ("filePath",), f"data.fileDetails[{i}].")
    return problems


def _check(table: Mapping[str, Any], names: tuple[str, ...], base: str) -> list[str]:
    problems = []
    for name in names:
        value = table.get(name)
        if not isinstance(value, str):
            continue
        if len(value) > FIELD_LIMITS[name]:
            problems.append(f"{base}{name}: longer than {FIELD_LIMITS[name]} characters, the most the ledger stores")
        elif "\x00" in value:
            problems.append(f"{base}{name}: must not contain NUL characters (\\u0000)")
    return problems
