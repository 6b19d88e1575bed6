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
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from archiver.limits_edge import storage_problems

__all__ = [
    "KNOWN_TYPES",
    "RECORDING_TYPES",
    "EventValidationError",
    "RecordingFile",
    "WebhookEvent",
    "dedupe_key",
    "parse_event",
]


@dataclass(frozen=True)
class _Spec:
    required: tuple[str, ...]  # string fields that must be present (and non-empty)
    optional: tuple[str, ...] = ()  # string fields that may be absent but must be strings when present
    files: str | None = None  # "single": data.filePath/fileUrl; "details": data.fileDetails[]


_ROOM = ("meetingId", "sessionId")
_PART = (*_ROOM, "participantId")
_TRACK = (*_PART, "kind")
_MERGE = ("id", *_ROOM)

# fileFormat is listed as 'fileFormat ("webm")' on state-only participant events. It carries nothing the
# archiver needs, so a missing one is tolerated (typed when present) rather than turning a harmless
# state notification into a rejected delivery. merge-recording-failed's message is documented optional.
_SPECS: dict[str, _Spec] = {
    **{t: _Spec(_ROOM) for t in ("recording-starting", "recording-started", "recording-stopping")},
    "recording-stopped": _Spec((*_ROOM, "filePath", "fileUrl"), files="single"),
    "recording-failed": _Spec(_ROOM),
    **{
        f"participant-recording-{s}": _Spec(_PART, optional=("fileFormat",))
        for s in ("starting", "started", "stopping")
    },
    "participant-recording-stopped": _Spec(_PART, files="details"),
    "participant-recording-failed": _Spec(_PART),
    **{f"participant-track-recording-{s}": _Spec(_TRACK) for s in ("starting", "started", "stopping", "failed")},
    "participant-track-recording-stopped": _Spec(_TRACK, files="details"),
    "merge-recording-completed": _Spec(_MERGE),
    "merge-recording-failed": _Spec(_MERGE, optional=("message",)),
}

RECORDING_TYPES: frozenset[str] = frozenset(_SPECS)
# Named in the reference as "acknowledge and ignore"; the hls-*/livestream-*/... families cannot be listed.
_IGNORED_NAMED = frozenset({"session-started", "session-ended", "participant-joined", "participant-left"})
KNOWN_TYPES: frozenset[str] = RECORDING_TYPES | _IGNORED_NAMED

_FAILURE_TYPES = frozenset(
    {
        "recording-failed",
        "participant-recording-failed",
        "participant-track-recording-failed",
        "merge-recording-failed",
    }
)
_MERGE_TYPES = frozenset({"merge-recording-completed", "merge-recording-failed"})


class EventValidationError(ValueError):
    """The body is not a webhook of the documented shape; .fields lists every offending path."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = list(fields)
        super().__init__("invalid webhook: " + "; ".join(self.fields))


@dataclass(frozen=True)
class RecordingFile:
    """One archivable file announced by a webhook (or found by reconcile, which also knows recording_id)."""

    meeting_id: str
    session_id: str
    participant_id: str | None
    kind: str | None
    file_path: str
    file_url: str
    webhook_type: str
    recording_id: str | None = None

    @property
    def filename(self) -> str:
        """Base name of file_path; falls back to the (percent-decoded) last URL path segment.

        The result is untrusted text: templates re-check it before it becomes part of a key.
        """
        name = posixpath.basename(self.file_path)
        if not name:
            name = unquote(posixpath.basename(urlsplit(self.file_url).path))
        return name


@dataclass(frozen=True)
class WebhookEvent:
    webhook_type: str
    data: Mapping[str, Any]
    meeting_id: str | None
    session_id: str | None
    participant_id: str | None
    files: tuple[RecordingFile, ...]
    failure: bool
    merge_id: str | None
    archivable: bool


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


def _url(data: Mapping[str, Any], path: str, errors: list[str]) -> str | None:
    value = _string(data, "fileUrl", path, errors, required=True)
    if value is None:
        return None
    # Shape only: which hosts may be fetched (SSRF policy) is decided by the downloader, not here.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c <= " " or c == "\x7f" for c in value):
        errors.append(f"{path}: must be an absolute http(s) URL")
        return None
    return value


def _file_details(data: Mapping[str, Any], errors: list[str]) -> list[tuple[str, str]]:
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
    found: list[tuple[str, str]] = []
    for i, entry in enumerate(details):
        base = f"data.fileDetails[{i}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{base}: must be an object")
            continue
        file_path = _string(entry, "filePath", f"{base}.filePath", errors, required=True)
        file_url = _url(entry, f"{base}.fileUrl", errors)
        if file_path is not None and file_url is not None:
            found.append((file_path, file_url))
    return found


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def parse_event(body: bytes | str | Mapping[str, Any]) -> WebhookEvent:
    """Decode and validate one webhook body; raises EventValidationError listing every problem."""
    obj = _load(body)
    if not isinstance(obj, Mapping):
        raise EventValidationError(["body: must be a JSON object"])
    errors: list[str] = []
    webhook_type = _string(obj, "webhookType", "webhookType", errors, required=True)
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
        return WebhookEvent(
            webhook_type=webhook_type,
            data=MappingProxyType(dict(data)),
            meeting_id=_optional_str(data, "meetingId"),
            session_id=_optional_str(data, "sessionId"),
            participant_id=_optional_str(data, "participantId"),
            files=(),
            failure=False,
            merge_id=None,
            archivable=False,
        )

    fields: dict[str, str | None] = {}
    for name in spec.required:
        if spec.files == "single" and name == "fileUrl":
            fields[name] = _url(data, "data.fileUrl", errors)
        else:
            fields[name] = _string(data, name, f"data.{name}", errors, required=True)
    for name in spec.optional:
        _string(data, name, f"data.{name}", errors, required=False, nonempty=False)
    pairs: list[tuple[str, str]] = []
    if spec.files == "details":
        pairs = _file_details(data, errors)
    elif spec.files == "single" and fields["filePath"] is not None and fields["fileUrl"] is not None:
        pairs = [(fields["filePath"], fields["fileUrl"])]
    if errors:
        raise EventValidationError(errors)

    meeting_id, session_id = fields["meetingId"], fields["sessionId"]
    assert meeting_id is not None and session_id is not None
    participant_id = fields.get("participantId")
    kind = fields.get("kind")
    files = tuple(
        RecordingFile(
            meeting_id=meeting_id,
            session_id=session_id,
            participant_id=participant_id,
            kind=kind,
            file_path=path,
            file_url=url,
            webhook_type=webhook_type,
        )
        for path, url in pairs
    )
    return WebhookEvent(
        webhook_type=webhook_type,
        data=MappingProxyType(dict(data)),
        meeting_id=meeting_id,
        session_id=session_id,
        participant_id=participant_id,
        files=files,
        failure=webhook_type in _FAILURE_TYPES,
        merge_id=fields["id"] if webhook_type in _MERGE_TYPES else None,
        # A completed merge names no file; the worker must look it up by id, so it is still work to do.
        archivable=bool(files) or webhook_type == "merge-recording-completed",
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
