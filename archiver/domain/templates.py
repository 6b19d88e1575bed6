"""awsDirPath-style destination key templates: "/meeting-recordings/${meetingId}/" and friends.

Two kinds of failure are kept apart: TemplateError is a configuration mistake found once at start-up;
RenderError is one recording whose (untrusted, webhook-supplied) values cannot safely become a key.

Syntax decisions:
- `{name}` and `${name}` are the same placeholder (VideoSDK's own examples use `${meetingId}`).
- `{name|default}` uses the literal default when the value is absent (None / missing), never when it is
  present but unsafe: an unsafe value is an attack or a bug and must surface, not be papered over.
- There is no `{{`/`}}` escape: braces in object keys are legal but useless here, and refusing them keeps a
  typo such as "{meetingId" from silently becoming literal text.
- Variable names are case-sensitive ({roomID} is an error, with a "did you mean" hint).
- Percent sequences such as "%2e%2e" are literal text: object stores take keys verbatim (SDKs encode them
  on the wire), so "%2e%2e" is a six-character name, not "..", and is allowed.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from archiver.domain.recordings import RecordingFile

__all__ = ["VARIABLES", "PathTemplate", "RenderError", "TemplateError", "parse_template"]

VARIABLES: frozenset[str] = frozenset(
    {
        "meetingId", "roomId", "sessionId", "participantId", "kind", "recordingId", "webhookType",
        "filename", "stem", "ext", "destination", "yyyy", "MM", "dd", "HH", "mm", "ss", "date",
    }
)  # fmt: skip
_ALIASES = {"roomId": "meetingId"}  # the REST API's name for the same room id

# Unicode categories refused in values and literal text: Cc (controls, NUL, ESC: log/terminal injection,
# rejected by GCS), Cf (bidi overrides and invisible formatting: keys that display differently from what they
# are), Cs (lone surrogates: not encodable as UTF-8), Zl/Zp (U+2028/U+2029 line breaks in logs and JS).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Except ZWNJ/ZWJ: Cf, but required to spell Persian and Indic names correctly and to build emoji sequences.
# They cannot reorder text or break lines, so they carry no injection risk. Private-use (Co) and unassigned
# (Cn) code points are allowed: whether a code point is unassigned depends on the Python version's tables.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})


class TemplateError(ValueError):
    """The template itself is wrong (configuration time)."""


class RenderError(ValueError):
    """This recording's values cannot produce a safe key (per job)."""


@dataclass(frozen=True)
class _Placeholder:
    written: str  # the name as written, for messages (roomId stays roomId)
    name: str  # canonical name used for lookup (roomId -> meetingId)
    default: str | None


def _bad_char(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES and ch not in _ALLOWED_FORMAT:
            return f"a control or invisible formatting character (U+{ord(ch):04X})"
    return None


def _unsafe(value: object) -> str | None:
    """Why a value may not be one path-segment fragment, or None when it may. Never echoes the value."""
    if not isinstance(value, str):
        return "is not a string"
    if value == "":
        return "is empty"
    if value == ".":
        return "is '.'"
    for bad in ("/", "\\", ".."):
        if bad in value:
            return f"contains '{bad}'"
    reason = _bad_char(value)
    return f"contains {reason}" if reason else None


@dataclass(frozen=True)
class PathTemplate:
    text: str
    fixed_prefix: str  # literal text before the first placeholder, leading "/" dropped
    is_folder: bool  # ends with "/": the source file's name is appended
    variables: frozenset[str]  # canonical names (roomId is reported as meetingId)
    parts: tuple[str | _Placeholder, ...] = field(repr=False)
    # The longest rendered key in UTF-8 bytes, or None for no limit. The limit is the storage's
    # (providers.MAX_KEY_BYTES, given by archiver.settings): this module imports nothing of ours.
    max_key_bytes: int | None = None

    @property
    def required(self) -> frozenset[str]:
        """Canonical names of the placeholders that have no default (a missing value fails the render)."""
        return frozenset(p.name for p in self.parts if isinstance(p, _Placeholder) and p.default is None)

    def render(self, values: Mapping[str, str | None]) -> str:
        out: list[str] = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else _resolve(part, values))
        if self.is_folder:
            out.append(_resolve(_Placeholder("filename", "filename", None), values))
        key = "".join(out)
        # Belt and braces: values were checked one by one, the assembled key is checked as a whole.
        if key.startswith("/") or not key.startswith(self.fixed_prefix):
            raise RenderError("rendered key does not start with the template's fixed prefix")
        if any(seg in ("", ".", "..") for seg in key.split("/")):
            raise RenderError("rendered key has an empty, '.' or '..' path segment")
        size = len(key.encode("utf-8"))
        if self.max_key_bytes is not None and size > self.max_key_bytes:
            raise RenderError(f"rendered key is {size} bytes of UTF-8; the limit is {self.max_key_bytes}")
        return key


def _resolve(ph: _Placeholder, values: Mapping[str, str | None]) -> str:
    value = values.get(ph.name)
    if value is None and ph.written != ph.name:
        value = values.get(ph.written)
    if value is None:
        if ph.default is not None:
            return ph.default
        raise RenderError(
            f"variable {{{ph.written}}} has no value for this recording (give a default: {{{ph.written}|<text>}})"
        )
    reason = _unsafe(value)
    if reason:
        raise RenderError(f"value of {{{ph.written}}} {reason}")
    return value


def _placeholder(body: str, column: int) -> _Placeholder:
    name, sep, default = body.partition("|")
    if not name:
        raise TemplateError(f"empty placeholder at column {column}")
    if name not in VARIABLES:
        hint = next((v for v in sorted(VARIABLES) if v.lower() == name.lower()), None)
        if hint:
            suffix = f" (names are case-sensitive: did you mean {{{hint}}}?)"
        else:
            close = _close_variable(name)
            suffix = f" (did you mean {{{close}}}?)" if close else f" (known: {', '.join(sorted(VARIABLES))})"
        raise TemplateError(f"unknown variable {{{name}}} at column {column}{suffix}")
    if sep:
        reason = _unsafe(default)
        if reason:
            raise TemplateError(f"default of {{{name}}} at column {column} {reason}")
    return _Placeholder(name, _ALIASES.get(name, name), default if sep else None)


def _close_variable(name: str) -> str | None:
    """The variable a misspelt name most likely means: `meeting_id` -> meetingId (same letters once case,
    '_' and '-' are ignored), `sesionId` -> sessionId (a close spelling)."""
    def squash(text: str) -> str:
        return text.replace("_", "").replace("-", "").lower()

    by_squash = {squash(v): v for v in sorted(VARIABLES)}
    if squash(name) in by_squash:
        return by_squash[squash(name)]
    close = difflib.get_close_matches(squash(name), list(by_squash), n=1, cutoff=0.75)
    return by_squash[close[0]] if close else None


def parse_template(text: str, *, max_key_bytes: int | None = None) -> PathTemplate:
    """Parse and check a template once, at configuration time. ``max_key_bytes``: the longest key a
    render may produce (UTF-8 bytes), None for no limit."""
    if not isinstance(text, str) or not text.strip():
        raise TemplateError("empty template")
    if text != text.strip():
        raise TemplateError("template has leading or trailing whitespace")
    if text == "/":
        raise TemplateError("template is only '/': name a folder such as 'recordings/'")
    start = 1 if text.startswith("/") else 0
    parts: list[str | _Placeholder] = []
    literal: list[str] = []
    shape: list[str] = []  # the template with each placeholder as NUL, for the segment checks below
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "$" and text.startswith("${", i):
            i += 1
            ch = "{"
        if ch == "{":
            close, nested = text.find("}", i + 1), text.find("{", i + 1)
            if close == -1 or -1 < nested < close:
                raise TemplateError(f"unbalanced '{{' at column {i + 1}")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_placeholder(text[i + 1 : close], i + 1))
            shape.append("\0")
            i = close + 1
            continue
        if ch == "}":
            raise TemplateError(f"unbalanced '}}' at column {i + 1}")
        if ch == "\\" or _bad_char(ch):
            what = "a backslash" if ch == "\\" else _bad_char(ch)
            raise TemplateError(f"template contains {what} at column {i + 1}")
        literal.append(ch)
        shape.append(ch)
        i += 1
    if literal:
        parts.append("".join(literal))

    is_folder = text.endswith("/")
    segments = "".join(shape).split("/")
    if is_folder:
        segments.pop()  # the trailing "" is where the file name goes
    for seg in segments:
        if seg in ("", ".", ".."):
            raise TemplateError("template has an empty ('//'), '.' or '..' path segment")
    placeholders = [p for p in parts if isinstance(p, _Placeholder)]
    if not placeholders and not is_folder:
        raise TemplateError("template has no placeholder and no trailing '/': every recording would get the same key")
    first = parts[0] if parts else ""
    return PathTemplate(
        text=text,
        fixed_prefix=first if isinstance(first, str) else "",
        is_folder=is_folder,
        variables=frozenset(p.name for p in placeholders),
        parts=tuple(parts),
        max_key_bytes=max_key_bytes,
    )


def template_values(file: RecordingFile, *, received_at: datetime, destination: str) -> dict[str, str | None]:
    """Values for one recording. Date parts are UTC so keys do not depend on the server's time zone."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")  # a naive time would silently shift dates
    t = received_at.astimezone(UTC)
    name = file.filename or None
    stem: str | None = name
    ext: str | None = None
    if name:
        head, dot, tail = name.rpartition(".")
        if dot and head and tail:  # "x.tar.webm" -> ("x.tar", "webm"); ".hidden" and "x." have no ext
            stem, ext = head, tail
    return {
        "meetingId": file.meeting_id,
        "roomId": file.meeting_id,
        "sessionId": file.session_id,
        "participantId": file.participant_id,
        "kind": file.kind,
        "recordingId": file.recording_id,
        "webhookType": file.webhook_type,
        "filename": name,
        "stem": stem,
        "ext": ext,
        "destination": destination,
        "yyyy": f"{t.year:04d}",
        "MM": f"{t.month:02d}",
        "dd": f"{t.day:02d}",
        "HH": f"{t.hour:02d}",
        "mm": f"{t.minute:02d}",
        "ss": f"{t.second:02d}",
        "date": f"{t.year:04d}-{t.month:02d}-{t.day:02d}",
    }
