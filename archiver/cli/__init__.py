"""The `archiver` command: runbook verbs for operators, on click (rich tables and progress on a terminal).

Lives here: `app` (the group, the options every verb takes, exit codes), `common` (parameter types,
output, confirmation, opening the ledger and broker), and one module per group of verbs. `cli` is the
top-level click group: other modules extend it with `cli.add_command(...)`; a module with
`register(group)` listed in VERB_MODULES is added at import. May import every other stage.

Exit codes: 0 success, 1 the verb found failures or mismatches, 2 usage or configuration error
(the message says what to fix).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import click

from archiver.cli.app import USAGE, State, VerbGroup
from archiver.ledger.database import LedgerDriverError, LedgerError
from archiver.observability.logs import configure_logging
from archiver.settings.config import ConfigError
from providers import ConfigurationError

# One module per group of verbs; each has register(group). Optional ones are added when present.
VERB_MODULES = ("service", "up", "status", "jobs", "archive", "storage", "configuration", "demo", "sync",
                "retention", "recording", "db")


def _version() -> str:
    try:
        return version("videosdk-archiver")
    except PackageNotFoundError:
        return "unknown"


@click.group("archiver", cls=VerbGroup, help=__doc__.split("\n\n")[0] + "\n\n" + __doc__.rsplit("\n\n", 1)[1])
@click.version_option(_version(), "--version", prog_name="archiver", message="%(prog)s %(version)s")
def cli() -> None:
    """The `archiver` command."""


for _name in VERB_MODULES:
    importlib.import_module(f"archiver.cli.{_name}").register(cli)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `archiver ARGV` and return the exit code. A usage error (unknown verb or option, a bad value)
    prints click's message and raises SystemExit(2), as the console script and argparse always did."""
    configure_logging()
    current = State()
    try:
        result = cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="archiver",
                          standalone_mode=False, obj=current)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C (and EOF at a prompt) into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return 130
        print(f"archiver {current.verb}: cancelled, nothing done", file=sys.stderr)
        return 1
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(USAGE) from None
    except (ConfigError, ConfigurationError, LedgerError) as exc:
        print(f"archiver {current.verb}: {exc}", file=sys.stderr)
        return USAGE
    except LedgerDriverError as exc:  # the ledger went away after the verb's first probe: still one line
        from archiver.preflight import LEDGER, unusable

        url = current.settings.database_url if current.settings else "the ledger"
        print(f"archiver {current.verb}: {unusable(LEDGER, url, exc)}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _broker_failure(exc):
            raise
        from archiver.preflight import BROKER, unusable

        url = current.settings.broker_url if current.settings else "the broker"
        print(f"archiver {current.verb}: {unusable(BROKER, url, exc)}; nothing new was recorded", file=sys.stderr)
        return USAGE
    return int(result or 0)


def _broker_failure(exc: BaseException) -> bool:
    """The broker went away after the verb's first probe: kombu's OperationalError, or the Publisher's
    BrokerUnreachable. Looked up, not imported: only archiver.worker imports kombu, and both modules are
    loaded whenever a verb published."""
    errors, app = sys.modules.get("kombu.exceptions"), sys.modules.get("archiver.worker.app")
    return ((errors is not None and isinstance(exc, errors.OperationalError))
            or (app is not None and isinstance(exc, app.BrokerUnreachable)))


if __name__ == "__main__":
    sys.exit(main())
