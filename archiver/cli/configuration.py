"""config show (effective settings, secrets redacted) and config validate."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from archiver.cli.app import OK, settings, state, verb
from archiver.observability.redaction import mask_url
from archiver.private_files import sqlite_path
from archiver.settings.config import Settings
from archiver.settings.destinations import unavailable_secrets


def effective(settings: Settings) -> dict[str, Any]:
    data = asdict(settings)
    data["broker_url"] = mask_url(settings.broker_url)
    data["database_url"] = mask_url(settings.database_url)
    data["videosdk"]["api_base"] = mask_url(settings.videosdk.api_base)
    data["destinations"] = [{"name": d.name, "url": d.url, "events": sorted(d.events) if d.events else None,
                             "manifest": d.manifest, "overwrite": d.overwrite,
                             "provider": repr(d.open())}  # the provider's repr redacts every secret
                            for d in settings.destinations]
    data["notifications"] = [{**asdict(n), "url": mask_url(n.url), "events": sorted(n.events)}
                             for n in settings.notifications]  # the secret itself is only named (secret_env)
    return data


def whereabouts(settings: Settings) -> list[str]:
    """Which config file and which ledger this process uses: two lines for banners and validate."""
    if settings.origin == "defaults":
        config = "none found (built-in defaults; relative paths are relative to the current folder)"
    else:
        config = f"{settings.origin} (relative paths are relative to its folder)"
    path = sqlite_path(settings.database_url)
    ledger = f"SQLite file {path.resolve()}" if path else mask_url(settings.database_url)
    return [f"config file: {config}", f"ledger: {ledger}"]


@verb("show", help="print the effective settings (file + ARCHIVER_* variables) as JSON, secrets redacted")
def show() -> int:
    print(json.dumps(effective(settings()), indent=2, default=str))
    return OK


@verb("validate", help="check the configuration; exit 2 listing every problem")
def validate() -> int:
    current = settings()  # raises ConfigError listing every problem: exit 2
    # The machine running validate may not be a worker: a secret it lacks is reported, not fatal.
    # One that is present but malformed is a ConfigurationError (exit 2).
    warnings = unavailable_secrets(current.destinations)
    if state().json:
        config, ledger = (line.split(": ", 1)[1] for line in whereabouts(current))
        print(json.dumps({"origin": current.origin, "valid": True, "config_file": config, "ledger": ledger,
                          "destinations": [d.name for d in current.destinations],
                          "warnings": [*current.warnings, *(f"{w}; every worker needs it" for w in warnings)]},
                         indent=2))
        return OK
    print(f"{current.origin}: valid; {len(current.destinations)} destination(s): "
          f"{', '.join(d.name for d in current.destinations)}")
    print("\n".join(whereabouts(current)))
    for line in current.warnings:
        print(f"warning: {line}")
    for line in warnings:
        print(f"warning: {line}; every worker needs it (the receiver and beat do not)")
    return OK


def register(group: click.Group) -> None:
    @group.group("config", help="show or validate the configuration")
    def config() -> None:
        pass

    config.add_command(show)
    config.add_command(validate)
