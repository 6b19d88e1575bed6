"""[[destinations]] tables: where copies go, how their keys are made, and their provider options."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.domain.recordings import ANNOUNCED_BY
from archiver.domain.templates import PathTemplate, TemplateError, parse_template
from archiver.settings.provider_options import option_problems
from archiver.settings.urls import absolute_file_url, location_problem
from providers import MAX_KEY_BYTES, ConfigurationError, MissingSecret, StorageProvider, open_provider, split_url

# The webhook type each recording kind is planned as (archiver.domain.recordings.ANNOUNCED_BY): what a
# destination's `events` may name.
ARCHIVABLE_TYPES = frozenset(ANNOUNCED_BY.values())
# Template variables that a file announced by each type never has (shared/reference/videosdk.md,
# sections 1 and 2: room and composite recordings name no participant and no track kind, merged
# audio no participant). A template that names one of them without a default can never render for
# that type: every such file would fail with `template`. (A recording id is known for some files of
# every type, from the webhook's `id`, a lookup or reconcile, so it is not refused here.)
NEVER_SET: dict[str, frozenset[str]] = {
    "recording-stopped": frozenset({"participantId", "kind"}),
    "participant-recording-stopped": frozenset({"kind"}),
    "participant-track-recording-stopped": frozenset(),
    "merge-recording-completed": frozenset({"participantId"}),
    "composite-recording-stopped": frozenset({"participantId", "kind"}),
    "transcoding-completed": frozenset({"participantId", "kind"}),
    "transcription-stopped": frozenset({"participantId"}),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_DESTINATION_KEYS = {"name", "url", "events", "manifest", "overwrite"}


@dataclass(frozen=True)
class Destination:
    name: str
    url: str
    template: PathTemplate
    provider_url: str  # the URL without the key template: what open_provider receives
    options: Mapping[str, Any] = field(default_factory=dict)
    events: frozenset[str] | None = None
    manifest: bool = False
    overwrite: bool = False

    def wants(self, webhook_type: str) -> bool:
        return self.events is None or webhook_type in self.events

    def open(self) -> StorageProvider:
        return open_provider(self.provider_url, **self.options)



def split_destination_url(url: str) -> tuple[str, str]:
    """`s3://b/videosdk/{meetingId}/` -> ("s3://b", "videosdk/{meetingId}/"). For file URLs the folder
    is the part before the first segment with a placeholder."""
    scheme, location, path = split_url(url)
    if scheme != "file":
        return f"{scheme}://{location}", path.lstrip("/")
    segments = location.rstrip("/").split("/") if "{" not in location else location.split("/")
    cut = next((i for i, s in enumerate(segments) if "{" in s), len(segments))
    folder = "/".join(segments[:cut]) or "."
    rest = "/".join(segments[cut:])
    prefix = "file://" if folder.startswith("/") else "file:"
    return prefix + folder, rest or "{filename}"


def parse_destination(index: int, table: Any, problems: list[str], warnings: list[str] | None = None,
                      base: Path | None = None) -> Destination | None:
    """One [[destinations]] table; problems (and warnings) are appended, located as `destinations[i]`.
    `base`: the config file's folder, against which a relative `file:` folder is made absolute."""
    where = f"destinations[{index}]"
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return None
    before = len(problems)
    name, url = table.get("name"), table.get("url")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}.name: required, letters, digits, '-', '_' or '.' (got {name!r})")
    if not isinstance(url, str) or not url:
        problems.append(f"{where}.url: required (e.g. s3://bucket/recordings/{{meetingId}}/)")
        return None
    events = table.get("events")
    if events is not None and not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
        problems.append(f"{where}.events: must be a list of webhook types")
    elif events is not None:
        # A misspelt type would silently match nothing: only types that carry files make sense here.
        unknown = [e for e in events if e not in ARCHIVABLE_TYPES]
        if unknown:
            problems.append(f"{where}.events: {', '.join(map(repr, unknown))} never carries a file; use "
                            f"{', '.join(sorted(ARCHIVABLE_TYPES))}")
    for flag in ("manifest", "overwrite"):
        if flag in table and not isinstance(table[flag], bool):
            problems.append(f"{where}.{flag}: must be true or false")
    options = {k: v for k, v in table.items() if k not in _DESTINATION_KEYS}
    template: PathTemplate | None = None
    if why := location_problem(url):
        problems.append(f"{where}.url: {why}")
        return None
    try:
        provider_url, template_text = split_destination_url(url)
    except ConfigurationError as exc:
        problems.append(f"{where}.url: {exc}")
        return None
    if base is not None and provider_url != (absolute := absolute_file_url(provider_url, base)):
        provider_url, url = absolute, f"{absolute}/{template_text}"
    try:
        if not template_text:
            raise TemplateError("empty template: add a key template after the bucket, e.g. /{meetingId}/")
        template = parse_template(template_text, max_key_bytes=MAX_KEY_BYTES)
    except TemplateError as exc:
        problems.append(f"{where}.url: {exc}")
    problems += option_problems(where, provider_url, options, secret_hint=" or use the SDK's credential chain")
    if template is not None:
        accepted = frozenset(events) & ARCHIVABLE_TYPES if isinstance(events, list) else ARCHIVABLE_TYPES
        problems += _unrenderable(where, template, accepted)
        if warnings is not None and (why := colliding_keys(template)):
            warnings.append(f"{where}.url: {why}")
    if len(problems) > before or template is None or not isinstance(name, str):
        return None
    return Destination(name=name, url=url, template=template, provider_url=provider_url, options=options,
                       events=frozenset(events) if events is not None else None,
                       manifest=bool(table.get("manifest", False)), overwrite=bool(table.get("overwrite", False)))


# Variables that tell two files apart. A folder template (ending in '/') gets the file's own name
# appended, and VideoSDK's file names are unique ids (shared/reference/videosdk.md), so only a
# template that produces the whole key can make two files share one.
_PER_FILE = frozenset({"filename", "stem"})


def colliding_keys(template: PathTemplate) -> str | None:
    """Why two different files would get the same key from `template`, or None."""
    if template.is_folder or template.variables & _PER_FILE:
        return None
    in_order = dict.fromkeys(p.name for p in template.parts if not isinstance(p, str))
    named = ", ".join(f"{{{v}}}" for v in in_order)
    return (f"every file with the same {named} gets the same key {template.text!r} (a second copy fails with "
            f"`conflict`, or replaces the first with overwrite = true); end the template with '/' so the "
            f"file's name is appended, or add {{filename}}")


def _unrenderable(where: str, template: PathTemplate, accepted: frozenset[str]) -> list[str]:
    """One problem per variable that has no default and no value for some webhook type the
    destination accepts, naming the types and the two ways out."""
    problems = []
    for name in sorted(template.required):
        lacking = sorted(t for t in accepted if name in NEVER_SET.get(t, frozenset()))
        if lacking:
            problems.append(f"{where}.url: {{{name}}} has no value for files announced by {', '.join(lacking)}; "
                            f"give it a default ({{{name}|none}}) or limit the destination with "
                            f"events = [...] to types that carry it")
    return problems


def unavailable_secrets(destinations: Iterable[Destination]) -> list[str]:
    """Read each destination's secrets as a worker would, in this process. Returns one line per
    destination whose secret is unavailable here (naming the variable or key file); raises
    ConfigurationError, naming the destination, for a secret that is present but malformed."""
    lines = []
    for dest in destinations:
        try:
            dest.open().resolve_secrets()
        except MissingSecret as exc:
            lines.append(f"destination {dest.name}: {exc}")
        except ConfigurationError as exc:
            raise ConfigurationError(f"destination {dest.name}: {exc}") from None
    return lines


def require_secrets(destinations: Iterable[Destination]) -> None:
    """For processes that write, read or delete copies (worker, check, archive, verify): refuse to
    start, naming every missing variable, rather than fail each job on its first client."""
    if missing := unavailable_secrets(destinations):
        raise MissingSecret("; ".join(missing), what=", ".join(missing))
