"""config show (effective settings, secrets redacted) and config validate."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from archiver.cli.common import OK, settings_of
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


def cmd_show(args: argparse.Namespace) -> int:
    print(json.dumps(effective(settings_of(args)), indent=2, default=str))
    return OK


def cmd_validate(args: argparse.Namespace) -> int:
    settings = settings_of(args)  # raises ConfigError listing every problem: exit 2
    # The machine running validate may not be a worker: a secret it lacks is reported, not fatal.
    # One that is present but malformed is a ConfigurationError (exit 2).
    warnings = unavailable_secrets(settings.destinations)
    print(f"{settings.origin}: valid; {len(settings.destinations)} destination(s): "
          f"{', '.join(d.name for d in settings.destinations)}")
    print("\n".join(whereabouts(settings)))
    for line in settings.warnings:
        print(f"warning: {line}")
    for line in warnings:
        print(f"warning: {line}; every worker needs it (the receiver and beat do not)")
    return OK


def register(verbs: Any) -> None:
    config = verbs.add_parser("config", help="show or validate the configuration")
    sub = config.add_subparsers(dest="config_verb", required=True, metavar="CONFIG_VERB")
    show = sub.add_parser("show", help="print the effective settings (file + ARCHIVER_* variables), secrets redacted")
    show.set_defaults(func=cmd_show)
    validate = sub.add_parser("validate", help="check the configuration; exit 2 listing every problem")
    validate.set_defaults(func=cmd_validate)
