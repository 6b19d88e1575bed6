"""archiver.toml + ARCHIVER_* environment variables -> validated Settings.

Loading validates everything at once and reports every problem with its location
(`destinations[1].url: unknown variable {roomID}`). Secrets are never read from the file: a secret
provider option must come as `<option>_env = "VARIABLE"` or from the SDK's own credential chain.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.templates import PathTemplate, TemplateError, parse_template
from providers import ConfigurationError, StorageProvider, open_provider, provider_class, split_url
from providers.options import COMMON_OPTIONS

DEFAULT_BROKER_URL = "sqla+sqlite:///./.archiver/broker.db"
DEFAULT_DATABASE_URL = "sqlite:///./.archiver/ledger.db"
DEFAULT_DESTINATION_URL = "file:./archive/{meetingId}/{sessionId}/"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_DESTINATION_KEYS = {"name", "url", "events", "manifest", "overwrite"}


class ConfigError(ValueError):
    def __init__(self, problems: list[str], origin: str) -> None:
        self.problems = problems
        super().__init__(f"{origin}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n  "
                         + "\n  ".join(problems))


@dataclass(frozen=True)
class SourceSettings:
    allow_hosts: tuple[str, ...] = ("cdn.videosdk.live", "*.videosdk.live")
    allow_private_addresses: bool = False
    allow_http: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs exempt from the private-address refusal


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 10
    max_delay: float = 600.0  # seconds between two attempts, at most
    base_delay: float = 5.0


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


@dataclass(frozen=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    database_url: str = DEFAULT_DATABASE_URL
    visibility_timeout: int = 3600
    lease_seconds: int = 60  # a dead worker's job is taken over this long after its last heartbeat
    source: SourceSettings = SourceSettings()
    retry: RetrySettings = RetrySettings()
    destinations: tuple[Destination, ...] = ()
    origin: str = "defaults"

    def destination(self, name: str) -> Destination:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        raise KeyError(name)


# (section, key) -> (environment variable, parser)
def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _hosts(text: str) -> list[str]:
    return [h.strip() for h in text.split(",") if h.strip()]


ENVIRONMENT: dict[tuple[str | None, str], tuple[str, Callable[[str], Any]]] = {
    (None, "broker_url"): ("ARCHIVER_BROKER_URL", str),
    (None, "database_url"): ("ARCHIVER_DATABASE_URL", str),
    (None, "visibility_timeout"): ("ARCHIVER_VISIBILITY_TIMEOUT", int),
    (None, "lease_seconds"): ("ARCHIVER_LEASE_SECONDS", int),
    ("source", "allow_hosts"): ("ARCHIVER_SOURCE_ALLOW_HOSTS", _hosts),
    ("source", "allow_private_addresses"): ("ARCHIVER_SOURCE_ALLOW_PRIVATE", _bool),
    ("source", "allow_http"): ("ARCHIVER_SOURCE_ALLOW_HTTP", _bool),
    ("source", "allowed_networks"): ("ARCHIVER_SOURCE_ALLOWED_NETWORKS", _hosts),
    ("retry", "max_attempts"): ("ARCHIVER_RETRY_MAX_ATTEMPTS", int),
    ("retry", "max_delay"): ("ARCHIVER_RETRY_MAX_DELAY", float),
    ("retry", "base_delay"): ("ARCHIVER_RETRY_BASE_DELAY", float),
}


def config_path(explicit: str | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("ARCHIVER_CONFIG"):
        return Path(env)
    default = Path("archiver.toml")
    return default if default.exists() else None


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    origin = "defaults"
    raw: dict[str, Any] = {}
    resolved = config_path(str(path) if path else None)
    if resolved is not None:
        origin = str(resolved)
        try:
            raw = tomllib.loads(resolved.read_text())
        except FileNotFoundError:
            raise ConfigError([f"config file {resolved} does not exist"], origin) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"not valid TOML: {exc}"], origin) from None
    problems: list[str] = []
    for (section, key), (variable, parse) in ENVIRONMENT.items():
        if variable in environ:
            try:
                value = parse(environ[variable])
            except ValueError:
                kind = {int: "an integer", float: "a number", _bool: "true or false"}.get(parse, "valid")
                problems.append(f"{variable}: must be {kind}, got {environ[variable]!r}")
                continue
            (raw.setdefault(section, {}) if section else raw)[key] = value
    settings = _build(raw, problems, origin)
    if problems:
        raise ConfigError(problems, origin)
    return settings


def _build(raw: dict[str, Any], problems: list[str], origin: str) -> Settings:
    known = {"broker_url", "database_url", "visibility_timeout", "lease_seconds", "source", "retry", "destinations"}
    problems += [f"{key}: unknown setting (known: {', '.join(sorted(known))})" for key in raw if key not in known]
    top = {k: _typed(raw, k, t, k, problems) for k, t in
           (("broker_url", str), ("database_url", str), ("visibility_timeout", int), ("lease_seconds", int))}
    if top["visibility_timeout"] is not None and top["visibility_timeout"] < 10:
        problems.append("visibility_timeout: must be at least 10 seconds")
    if top["lease_seconds"] is not None and top["lease_seconds"] < 3:
        problems.append("lease_seconds: must be at least 3 seconds")
    source = _section(raw, "source", SourceSettings, {"allow_hosts": list, "allow_private_addresses": bool,
                                                      "allow_http": bool, "allowed_networks": list}, problems)
    retry = _section(raw, "retry", RetrySettings, {"max_attempts": int, "max_delay": (int, float),
                                                   "base_delay": (int, float)}, problems)
    dest_tables = raw.get("destinations", [{"name": "local", "url": DEFAULT_DESTINATION_URL}])
    if not isinstance(dest_tables, list):
        problems.append("destinations: must be an array of tables ([[destinations]])")
        dest_tables = []
    destinations = [d for i, t in enumerate(dest_tables) if (d := _destination(i, t, problems))]
    names = [t.get("name") for t in dest_tables if isinstance(t, dict) and isinstance(t.get("name"), str)]
    problems += [f"destinations: name {n!r} is used more than once" for n in sorted({n for n in names
                                                                                    if names.count(n) > 1})]
    return Settings(**{k: v for k, v in top.items() if v is not None}, source=source, retry=retry,
                    destinations=tuple(destinations), origin=origin)


def _typed(table: Mapping[str, Any], key: str, kind: Any, where: str, problems: list[str]) -> Any:
    if key not in table:
        return None
    value = table[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "number"
        problems.append(f"{where}: must be {name}, got {type(value).__name__}")
        return None
    return value


def _section(raw: dict[str, Any], name: str, cls: Any, keys: dict[str, Any], problems: list[str]) -> Any:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name}: must be a table")
        return cls()
    problems += [f"{name}.{k}: unknown setting (known: {', '.join(keys)})" for k in table if k not in keys]
    values = {k: v for k, t in keys.items() if (v := _typed(table, k, t, f"{name}.{k}", problems)) is not None}
    for key in ("allow_hosts", "allowed_networks"):
        if key in values:
            values[key] = tuple(values[key])
    for cidr in values.get("allowed_networks", ()):
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            problems.append(f"{name}.allowed_networks: {cidr!r} is not a network (e.g. 10.1.0.0/16)")
    if values.get("max_attempts", 1) < 1:
        problems.append(f"{name}.max_attempts: must be at least 1")
    return cls(**values)


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


def _destination(index: int, table: Any, problems: list[str]) -> Destination | None:
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
    for flag in ("manifest", "overwrite"):
        if flag in table and not isinstance(table[flag], bool):
            problems.append(f"{where}.{flag}: must be true or false")
    options = {k: v for k, v in table.items() if k not in _DESTINATION_KEYS}
    template: PathTemplate | None = None
    try:
        provider_url, template_text = split_destination_url(url)
    except ConfigurationError as exc:
        problems.append(f"{where}.url: {exc}")
        return None
    try:
        if not template_text:
            raise TemplateError("empty template: add a key template after the bucket, e.g. /{meetingId}/")
        template = parse_template(template_text)
    except TemplateError as exc:
        problems.append(f"{where}.url: {exc}")
    try:
        spec = {**COMMON_OPTIONS, **provider_class(split_url(url)[0]).options_spec}
        problems += [f"{where}.{k}: secrets are not read from the config file; set {k}_env = \"VARIABLE\" "
                     "or use the SDK's credential chain" for k in options if k in spec and spec[k].secret]
        open_provider(provider_url, **options)  # validates every option; no network until first use
    except ConfigurationError as exc:
        problems.append(f"{where}: {exc}")
    if len(problems) > before or template is None:
        return None
    return Destination(name=name, url=url, template=template, provider_url=provider_url, options=options,
                       events=frozenset(events) if events is not None else None,
                       manifest=bool(table.get("manifest", False)), overwrite=bool(table.get("overwrite", False)))
