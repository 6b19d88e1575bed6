"""The `archiver` command: runbook verbs for operators.

Exit codes: 0 success, 1 the verb found failures or mismatches, 2 usage or configuration error
(the message says what to fix).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from archiver.cli.common import USAGE
from archiver.ledger.database import LedgerError
from archiver.observability.logs import configure_logging
from archiver.settings.config import ConfigError
from providers import ConfigurationError

# One module per group of verbs; each has register(verbs).
VERB_MODULES = ("service", "jobs", "storage", "configuration", "demo", "sync")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; say what to run for help
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archiver", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="path of archiver.toml (default: $ARCHIVER_CONFIG or ./archiver.toml)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    for name in VERB_MODULES:
        importlib.import_module(f"archiver.cli.{name}").register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config:  # the worker pool, the Celery app and child processes read the same file
        os.environ["ARCHIVER_CONFIG"] = os.path.abspath(args.config)
    configure_logging()
    try:
        return int(args.func(args))
    except (ConfigError, ConfigurationError, LedgerError) as exc:
        print(f"archiver {args.verb}: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
