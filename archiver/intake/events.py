"""Parse and validate VideoSDK webhook bodies into typed events.

The only source of truth for shapes is the reference table (shared/reference/videosdk.md, section 1).
Documented types are validated strictly (every documented field present with the right type), unknown
types and unknown extra fields are accepted, because VideoSDK sends more than it documents and an
unrecognised event must be acknowledged, not rejected. Error messages name field paths only, never
input values, so they are safe to log and to return to the caller.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from archiver.domain.recordings import RecordingFile, RecordingKind, is_merge
from archiver.intake.field_limits import storage_problems

__all__ = [
    "KNOWN_TYPES",
    "RECORDING_TYPES",
    "EventValidationError",
    "Lookup",
    "RecordingFile",
    "WebhookEvent",
    "dedupe_key",
    "parse_event",
]


@dataclass(frozen=True)
class _Spec:
    required: tuple[str, ...]  # string fields that must be present (and non-empty)
    optional: tuple[str, ...] = ()  # string fields that may be absent but must be strings when present
    files: str | None = None  # "single": data.filePath/fileUrl; "details": data.fileDetails[]; "maybe": either, or none
    kind: RecordingKind | None = None  # the kind of recording whose files (or lookup) this type announces
    lookup: bool = False  # the files are looked up through the REST API by data.id (when the body names none)


_ROOM = ("meetingId", "sessionId")
_PART = (*_ROOM, "participantId")
_TRACK = (*_PART, "kind")
_WITH_ID = ("id", *_ROOM)
_STATES = ("starting", "started", "stopping")

# fileFormat is listed as 'fileFormat ("webm")' on state-only participant events. It carries nothing the
# archiver needs, so a missing one is tolerated (typed when present) rather than turning a harmless
# state notification into a rejected delivery. merge-recording-failed's message is documented optional.
# Recording events may carry a resource `id` (reference section 1): typed when present, kept as the
# recording id. Composite events are named in secondary sources only: "like the room events, plus a
# resource id"; a stopped/completed one without a file is looked up by that id.
_SPECS: dict[str, _Spec] = {
    **{f"recording-{s}": _Spec(_ROOM, ("id",)) for s in _STATES},
    "recording-stopped": _Spec(_ROOM, ("id",), files="single", kind=RecordingKind.ROOM),
    "recording-failed": _Spec(_ROOM, ("id",)),
    **{f"participant-recording-{s}": _Spec(_PART, ("fileFormat", "id")) for s in _STATES},
    "participant-recording-stopped": _Spec(_PART, ("id",), files="details", kind=RecordingKind.PARTICIPANT),
    "participant-recording-failed": _Spec(_PART, ("id",)),
    **{f"participant-track-recording-{s}": _Spec(_TRACK, ("fileFormat", "id")) for s in (*_STATES, "failed")},
    "participant-track-recording-stopped": _Spec(_TRACK, ("id",), files="details", kind=RecordingKind.TRACK),
    "merge-recording-completed": _Spec(_WITH_ID, kind=RecordingKind.MERGE, lookup=True),
    "merge-recording-failed": _Spec(_WITH_ID, ("message",)),
    **{f"transcription-{s}": _Spec(_WITH_ID, ("type",)) for s in ("started", "failed")},
    # only type "post" produces files (the transcript and summary); "realtime" is a state
    "transcription-stopped": _Spec(_WITH_ID, ("type",), kind=RecordingKind.TRANSCRIPT, lookup=True),
    **{f"composite-recording-{s}": _Spec(_ROOM, ("id",)) for s in _STATES},
    "composite-recording-stopped": _Spec(_WITH_ID, files="maybe", kind=RecordingKind.COMPOSITE, lookup=True),
    "composite-recording-failed": _Spec(_ROOM, ("id",)),
    "composite-merge-started": _Spec(_ROOM, ("id",)),
    "composite-merge-completed": _Spec(_WITH_ID, files="maybe", kind=RecordingKind.COMPOSITE, lookup=True),
    "composite-merge-failed": _Spec(_ROOM, ("id", "message")),
}

RECORDING_TYPES: frozenset[str] = frozenset(_SPECS)
# Named in the reference as "acknowledge and ignore"; the hls-*/livestream-*/... families cannot be listed.
_IGNORED_NAMED = frozenset({"session-started", "session-ended", "participant-joined", "participant-left"})
KNOWN_TYPES: frozenset[str] = RECORDING_TYPES | _IGNORED_NAMED
_FAILURE_TYPES = frozenset(t for t in _SPECS if t.endswith("-failed"))


class EventValidationError(ValueError):
    """The body is not a webhook of the documented shape; .fields lists every offending path."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = list(fields)
        super().__init__("invalid webhook: " + "; ".join(self.fields))


@dataclass(frozen=True)
class Lookup:
    """A recording that the webhook names only by id: its files are fetched through the REST API."""

    kind: RecordingKind
    resource_id: str


@dataclass(frozen=True)
class WebhookEvent:
    webhook_type: str
    data: Mapping[str, Any]
    meeting_id: str | None
    session_id: str | None
    participant_id: str | None
    files: tuple[RecordingFile, ...]
    failure: bool
    lookup: Lookup | None
    archivable: bool

    @property
    def merge_id(self) -> str | None:
        """The merge's id for merge events (the lookup id of a completed one, the id of a failed one)."""
        if self.lookup is not None and self.lookup.kind is RecordingKind.MERGE:
            return self.lookup.resource_id
        return _optional_str(self.data, "id") if is_merge(self.webhook_type) else None


class _NonFiniteNumber(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity, which are not JSON and would not round-trip canonically.
    raise _NonFiniteNumber(name)


def _load(body: bytes | bytearray | str | Mapping[str, Any]) -> Any:
    if isinstance(body, Mapping):
        return body
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if not isinstance(body, bytes | str):
        return body  # already-decoded non-object; the caller reports "must be a JSON object"
    try:
        # Strict UTF-8 (RFC 8259), not json's UTF-16/32 sniffing: callers store body.decode() afterwards.
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        problem = f"body: not valid JSON (line {exc.lineno}, col {exc.colno})"
    except UnicodeDecodeError:
        problem = "body: not valid JSON (not UTF-8 text)"
    except _NonFiniteNumber:
        problem = "body: not valid JSON (NaN/Infinity are not JSON numbers)"
    except RecursionError:
        problem = "body: not valid JSON (nested too deeply)"
    except ValueError:  # e.g. an integer longer than Python's int-from-string digit limit
        problem = "body: not valid JSON (unrepresentable value)"
    raise EventValidationError([problem]) from None


def _string(
    data: Mapping[str, Any], name: str, path: str, errors: list[str], *, required: bool, nonempty: bool = True
) -> str | None:
    if name not in data or (not required and data[name] is None):
        if required:
            errors.append(f"{path}: required")
        return None
    value = data[name]
    if not isinstance(value, str):
        errors.append(f"{path}: must be a string")
        return None
    if nonempty and not value:
        errors.append(f"{path}: must not be empty")
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON "\ud800" decodes to a lone surrogate no store or database accepts
        errors.append(f"{path}: must be valid Unicode (lone surrogate)")
        return None
    return value


def _url(data: Mapping[str, Any], path: str, errors: list[str], name: str = "fileUrl") -> str | None:
    """An absolute http(s) URL, or None when the field is null (the file is in the customer's storage)."""
    if name in data and data[name] is None:
        return None
    value = _string(data, name, path, errors, required=True)
    if value is None:
        return None
    # Shape only: which hosts may be fetched (SSRF policy) is decided by the downloader, not here.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c <= " " or c == "\x7f" for c in value):
        errors.append(f"{path}: must be an absolute http(s) URL")
        return None
    return value


_Pair = tuple[str, str | None]  # (filePath, fileUrl or None)


def _file_details(data: Mapping[str, Any], errors: list[str]) -> list[_Pair]:
    if "fileDetails" not in data:
        errors.append("data.fileDetails: required")
        return []
    details = data["fileDetails"]
    if not isinstance(details, list):
        errors.append("data.fileDetails: must be an array")
        return []
    if not details:
        # A *-stopped event exists to announce files; an empty list means VideoSDK produced nothing we can
        # archive, and acknowledging it as "nothing to do" would hide a lost recording. Rejecting it makes the
        # anomaly visible (logged 4xx) while the scheduled reconcile still finds any file that does exist.
        errors.append("data.fileDetails: must not be empty")
        return []
    found: list[_Pair] = []
    for i, entry in enumerate(details):
        base = f"data.fileDetails[{i}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{base}: must be an object")
            continue
        before = len(errors)
        file_path = _string(entry, "filePath", f"{base}.filePath", errors, required=True)
        file_url = _url(entry, f"{base}.fileUrl", errors)
        if file_path is not None and len(errors) == before:
            found.append((file_path, file_url))
    return found


def _single(data: Mapping[str, Any], errors: list[str]) -> list[_Pair]:
    before = len(errors)
    file_path = _string(data, "filePath", "data.filePath", errors, required=True)
    file_url = _url(data, "data.fileUrl", errors)
    return [(file_path, file_url)] if file_path is not None and len(errors) == before else []


def _encryption(data: Mapping[str, Any], errors: list[str]) -> list[_Pair]:
    """``encryption: {keyUrl, metaUrl}``: without both files the media cannot be decrypted, so each is a
    file of the recording, archived beside it (named by its URL's last path segment)."""
    value = data.get("encryption")
    if value is None:
        return []
    if not isinstance(value, Mapping):
        errors.append("data.encryption: must be an object")
        return []
    found: list[_Pair] = []
    for name in ("keyUrl", "metaUrl"):
        if value.get(name) is None:
            continue
        url = _url(value, f"data.encryption.{name}", errors, name=name)
        if url is not None:
            found.append((urlsplit(url).path, url))
    return found


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def _envelope(obj: Mapping[str, Any], errors: list[str]) -> str | None:
    # VideoSDK's own SDK accepts `type` where the documented envelope says `webhookType`.
    name = "webhookType" if "webhookType" in obj or "type" not in obj else "type"
    return _string(obj, name, name, errors, required=True)


def parse_event(body: bytes | str | Mapping[str, Any]) -> WebhookEvent:
    """Decode and validate one webhook body; raises EventValidationError listing every problem."""
    obj = _load(body)
    if not isinstance(obj, Mapping):
        raise EventValidationError(["body: must be a JSON object"])
    errors: list[str] = []
    webhook_type = _envelope(obj, errors)
    data = obj.get("data")
    if "data" not in obj:
        errors.append("data: required")
    elif not isinstance(data, Mapping):
        errors.append("data: must be an object")
    if errors:
        raise EventValidationError(errors)
    assert webhook_type is not None and isinstance(data, Mapping)  # narrowed by the checks above
    if too_big := storage_problems(obj, documented=webhook_type in _SPECS):  # 400, never a database error
        raise EventValidationError(too_big)

    spec = _SPECS.get(webhook_type)
    if spec is None:
        # Unknown or "acknowledge and ignore" type: never rejected, ids picked up only if well-typed.
        return WebhookEvent(webhook_type=webhook_type, data=MappingProxyType(dict(data)),
                            meeting_id=_optional_str(data, "meetingId"), session_id=_optional_str(data, "sessionId"),
                            participant_id=_optional_str(data, "participantId"), files=(), failure=False,
                            lookup=None, archivable=False)

    fields = {name: _string(data, name, f"data.{name}", errors, required=True) for name in spec.required}
    for name in spec.optional:
        fields[name] = _string(data, name, f"data.{name}", errors, required=False, nonempty=False)
    pairs: list[_Pair] = []
    if spec.files == "details" or (spec.files == "maybe" and "fileDetails" in data):
        pairs = _file_details(data, errors)
    elif spec.files == "single" or (spec.files == "maybe" and ("filePath" in data or "fileUrl" in data)):
        pairs = _single(data, errors)
    if pairs:
        pairs += _encryption(data, errors)
    if errors:
        raise EventValidationError(errors)

    meeting_id, session_id = fields["meetingId"], fields["sessionId"]
    assert meeting_id is not None and session_id is not None
    participant_id, resource_id = fields.get("participantId"), fields.get("id")
    kind = spec.kind or RecordingKind.ROOM
    files = tuple(
        RecordingFile(meeting_id=meeting_id, session_id=session_id, participant_id=participant_id,
                      kind=fields.get("kind"), file_path=path, file_url=url, webhook_type=webhook_type,
                      recording_id=resource_id or None, recording_kind=kind)
        for path, url in pairs)
    lookup = None
    # A transcription's files exist only for post-call transcription ("realtime" is a state).
    post = spec.kind is not RecordingKind.TRANSCRIPT or fields.get("type") in (None, "post")
    if spec.lookup and not files and resource_id and spec.kind is not None and post:
        lookup = Lookup(spec.kind, resource_id)
    return WebhookEvent(
        webhook_type=webhook_type,
        data=MappingProxyType(dict(data)),
        meeting_id=meeting_id,
        session_id=session_id,
        participant_id=participant_id,
        files=files,
        failure=webhook_type in _FAILURE_TYPES,
        lookup=lookup,
        # A lookup names no file yet; the worker must fetch it by id, so it is still work to do.
        archivable=bool(files) or lookup is not None,
    )


def _as_json(obj: Any) -> Any:
    # Mapping inputs may hold MappingProxyType or other non-dict mappings that json cannot encode directly.
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def dedupe_key(body: bytes | str | Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of the body: equal for redeliveries that differ only in whitespace,
    key order or escaping. ensure_ascii keeps the canonical form encodable even with lone surrogates."""
    obj = _load(body)
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_as_json)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
