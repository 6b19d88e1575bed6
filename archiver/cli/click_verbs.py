"""Until the whole `archiver` command is on click: verbs written as click groups, run from the
argparse dispatcher. ``run(argv)`` runs the click verb argv names (after any global ``--config``) and
returns its exit code, or None when the verb is an argparse one.

CLICK_VERBS maps a verb to the module whose ``register(group)`` adds it to a click group.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from archiver.cli.common import USAGE
from archiver.ledger.database import LedgerError
from archiver.observability.logs import configure_logging
from archiver.settings.config import ConfigError
from providers import ConfigurationError

CLICK_VERBS = {"recording": "recording", "room": "recording"}


def _split(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the global --config value, the arguments from the verb on)."""
    args, config = list(argv), None
    while args and args[0].startswith("--config"):
        if args[0] == "--config" and len(args) > 1:
            config, args = args[1], args[2:]
        elif args[0].startswith("--config="):
            config, args = args[0].split("=", 1)[1], args[1:]
        else:
            break
    return config, args


def run(argv: Sequence[str]) -> int | None:
    config, args = _split(argv)
    if not args or args[0] not in CLICK_VERBS:
        return None
    root = click.Group("archiver")
    importlib.import_module(f"archiver.cli.{CLICK_VERBS[args[0]]}").register(root)
    if config:  # as the argparse verbs do: child processes and load_settings(None) read the same file
        os.environ["ARCHIVER_CONFIG"] = os.path.abspath(config)
    configure_logging()
    try:
        result = root.main(args=args, prog_name="archiver", standalone_mode=False, obj={"config": config})
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except (ConfigError, ConfigurationError, LedgerError) as exc:
        print(f"archiver {args[0]}: {exc}", file=sys.stderr)
        return USAGE
    return int(result or 0)
