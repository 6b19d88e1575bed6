"""archiver.toml + ARCHIVER_* environment variables -> validated Settings.

Loading validates everything at once and reports every problem with its location
(`destinations[1].url: unknown variable {roomID}`, `ARCHIVER_LEASE_SECONDS: must be an integer`).
Secrets are never read from the file: a secret provider option must come as
`<option>_env = "VARIABLE"` or from the SDK's own credential chain. Relative paths (a SQLite ledger or
broker, a `file:` folder, a webhook key file) are relative to the config file's folder, so the ledger
does not depend on the folder a command runs in; without a config file, to the current folder.

The settings themselves are declared once, in archiver.settings.model.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from archiver.settings.destinations import Destination, parse_destination
from archiver.settings.model import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    DEFAULT_DESTINATION_URL,
    RETENTION_MODES,
    SECTIONS,
    ReceiverSettings,
    ReconcileSettings,
    RetentionSettings,
    RetrySettings,
    Settings,
    SourceSettings,
    StorageSource,
    VideoSDKSettings,
)
from archiver.settings.notifications import parse_notifications
from archiver.settings.provider_options import option_problems
from archiver.settings.sections import read_settings, unknown_keys, unknown_variables, variables
from archiver.settings.urls import absolute_file_url, absolute_path, absolute_sqlite, broker_url_problem

__all__ = [
    "DEFAULT_BROKER_URL", "DEFAULT_DATABASE_URL", "DEFAULT_DESTINATION_URL", "ENVIRONMENT", "RETENTION_MODES",
    "ConfigError", "Destination", "ReceiverSettings", "ReconcileSettings", "RetentionSettings", "RetrySettings",
    "Settings", "SourceSettings", "StorageSource", "VideoSDKSettings", "broker_url_problem", "config_path",
    "load_settings",
]  # fmt: skip

# (section, key) -> (environment variable, parser); derived from the declarations, never written here.
_CLASSES: dict[str | None, type] = {None: Settings}
_CLASSES.update(SECTIONS)
ENVIRONMENT = variables(_CLASSES)


class ConfigError(ValueError):
    """Every problem of a configuration, each located; `warnings` (e.g. a misspelt variable that may be
    why a value is not what was meant) are listed after them."""

    def __init__(self, problems: list[str], origin: str, warnings: list[str] | None = None) -> None:
        self.problems = problems
        self.warnings = warnings or []
        super().__init__(f"{origin}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n  "
                         + "\n  ".join(problems) + "".join(f"\n  warning: {w}" for w in self.warnings))


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if env := (os.environ if environ is None else environ).get("ARCHIVER_CONFIG"):
        return Path(env)
    default = Path("archiver.toml")
    return default if default.exists() else None


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of `path` (else $ARCHIVER_CONFIG, else ./archiver.toml, else the defaults) with the
    ARCHIVER_* variables of `environ` (default os.environ) over them. Raises ConfigError listing every
    problem; things that work but look unintended come back as `Settings.warnings`."""
    environ = os.environ if environ is None else environ
    origin = "defaults"
    raw: dict[str, Any] = {}
    resolved = config_path(str(path) if path else None, environ)
    if resolved is not None:
        resolved = resolved.absolute()
        origin = str(resolved)
        try:
            raw = tomllib.loads(resolved.read_text())
        except FileNotFoundError:
            raise ConfigError([f"config file {resolved} does not exist"], origin) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"not valid TOML: {exc}"], origin) from None
    problems: list[str] = []
    # Variables the file names for secrets (`*_env` keys of destinations, storage, notifications) are read too.
    named = {v for k, v in _walk(raw) if k.endswith("_env") and isinstance(v, str)}
    warnings = unknown_variables(environ, [*(variable for variable, _ in ENVIRONMENT.values()), *named])
    settings = _build(raw, environ, problems, warnings, resolved.parent if resolved else None)
    if problems:
        from_variables = any(p.startswith("ARCHIVER_") for p in problems)
        where = origin if not from_variables else ("ARCHIVER_* variables" if resolved is None
                                                   else f"{origin} and ARCHIVER_* variables")
        raise ConfigError(problems, where, warnings)
    return dataclasses.replace(settings, origin=origin, warnings=tuple(warnings))


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a TOML document, at any depth."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key, inner
            yield from _walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner)


def _build(raw: dict[str, Any], environ: Mapping[str, str], problems: list[str], warnings: list[str],
           base: Path | None) -> Settings:
    problems += unknown_keys(raw, [f.name for f in dataclasses.fields(Settings)
                                   if f.name not in ("origin", "warnings")], "")
    sections = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            problems.append(f"{name}: must be a table")
            table = {}
        declared_keys = [f.name for f in dataclasses.fields(cls) if f.metadata.get("setting") is not False]
        problems += unknown_keys(table, declared_keys, f"{name}.")
        overrides = {"storage": _storage_source(table, problems, base)} if name == "videosdk" else None
        sections[name] = read_settings(cls, name, table, environ, problems, overrides)
    settings: Settings = read_settings(Settings, None, raw, environ, problems, sections)
    dest_tables = raw.get("destinations", [{"name": "local", "url": DEFAULT_DESTINATION_URL}])
    if not isinstance(dest_tables, list):
        problems.append("destinations: must be an array of tables ([[destinations]])")
        dest_tables = []
    destinations = [d for i, t in enumerate(dest_tables) if (d := parse_destination(i, t, problems, warnings, base))]
    names = [str(t["name"]) for t in dest_tables if isinstance(t, dict) and isinstance(t.get("name"), str)]
    problems += [f"destinations: name {n!r} is used more than once" for n in sorted({n for n in names
                                                                                    if names.count(n) > 1})]
    notifications = parse_notifications(raw.get("notifications"), problems)
    settings = dataclasses.replace(settings, destinations=tuple(destinations), notifications=notifications)
    return _absolute(settings, base) if base is not None else settings


def _absolute(settings: Settings, base: Path) -> Settings:
    """Relative paths against the config file's folder (destinations are made absolute as parsed)."""
    videosdk = settings.videosdk
    if videosdk.webhook_public_key:
        videosdk = dataclasses.replace(videosdk, webhook_public_key=absolute_path(videosdk.webhook_public_key, base))
    return dataclasses.replace(settings, broker_url=absolute_sqlite(settings.broker_url, base),
                               database_url=absolute_sqlite(settings.database_url, base), videosdk=videosdk)


def _storage_source(table: Mapping[str, Any], problems: list[str], base: Path | None) -> StorageSource | None:
    """``storage = "s3://bucket"`` or ``[videosdk.storage]`` with ``url`` and provider options (secrets only
    as ``<option>_env``, exactly as for destinations)."""
    if table.get("storage") is None:
        return None
    value = table["storage"]
    where = "videosdk.storage"
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict) or not isinstance(value.get("url"), str):
        problems.append(f"{where}: must be a storage URL (e.g. \"s3://bucket\") or a table with url = ...")
        return None
    url, options = value["url"], {k: v for k, v in value.items() if k != "url"}
    if base is not None:
        url = absolute_file_url(url, base)
    if found := option_problems(where, url, options):
        problems += found
        return None
    return StorageSource(url=url, options=options)
