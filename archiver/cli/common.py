"""Shared by every verb: parameter types, table and JSON output, confirmation, opening the ledger and the
broker with one line (exit 2) when they cannot be used."""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from archiver.cli.app import FOUND_PROBLEMS, OK, USAGE, settings, state
from archiver.settings.config import Settings

__all__ = ["FOUND_PROBLEMS", "OK", "USAGE", "Since", "confirm", "emit", "fail", "format_table", "open_publisher",
           "open_runtime", "show_table"]


class ProviderOption(click.ParamType):
    """`-o key=value`; the value is read as a TOML value when it is one (8, true, "x"), else as a string."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key:
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        try:
            parsed = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = raw
        return key.strip(), parsed


_UNITS = {"m": 60, "h": 3600, "d": 86400}


class Since(click.ParamType):
    """`--since 24h` / `30m` / `7d`, or an ISO date or time (UTC when no zone is given)."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if text[:-1].isdigit() and text[-1:] in _UNITS:
            return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"expected a duration like 30m, 24h, 7d or an ISO time, got {text!r}", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Seconds(click.ParamType):
    name = "SECONDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if not seconds > 0:
            self.fail(f"expected a number of seconds > 0, got {value!r}", param, ctx)
        return seconds


def fail(message: str, code: int = USAGE) -> int:
    """Print `archiver VERB: message` on stderr (one line: what is wrong and what to do); return code."""
    click.echo(f"archiver {state().verb}: {message}", err=True)
    return code


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Plain aligned columns (what scripts and logs get off a terminal)."""
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def show_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A rich table on a terminal, plain aligned columns otherwise."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*(c.upper() for c in columns), title=title, title_justify="left")
        for row in rows:
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        Console().print(table)
        return
    if title:
        print(title)
    print(format_table(rows, columns))


def emit(data: Any, rows: Sequence[dict[str, Any]] = (), columns: Sequence[str] = (), summary: str | None = None,
         title: str | None = None) -> None:
    """`data` as JSON under --json; else the rows as a table (when there are any) and the summary line."""
    if state().json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    if rows:
        show_table(rows, columns, title)
    if summary:
        print(summary)


def interactive() -> bool:
    """Whether a person can answer a question (both stdin and stderr are terminals)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str, *, yes: bool, flag: str = "--yes") -> int | None:
    """Ask before a destructive step: None to go ahead (--yes, or the person said yes), else the exit
    code to stop with. Without a terminal it refuses (USAGE, one line saying to pass --yes or --dry-run)
    rather than hang or guess; a person who says no gets FOUND_PROBLEMS (nothing was done)."""
    if yes:
        return None
    if not interactive():
        return fail(f"{question.rstrip('?')}: refusing without a terminal to confirm on; pass {flag} to go "
                    "ahead or --dry-run to see what would happen")
    if click.confirm(question, default=False, err=True):
        return None
    click.echo("nothing done", err=True)
    return FOUND_PROBLEMS


def open_runtime(current: Settings | None = None) -> Any:
    """The Runtime (ledger) after one bounded probe: a ledger that cannot be reached or is behind raises
    StartupError/SchemaBehind, one line naming the URL (password hidden), the cause and the setting."""
    from archiver.preflight import check_ledger
    from archiver.runtime import Runtime

    current = current or settings()
    check_ledger(current, create_embedded=False, create_folder=False)
    return Runtime.create(current)


def open_publisher(current: Settings | None = None) -> Any:
    """The broker's Publisher after one bounded probe (StartupError, one line, when it cannot be used)."""
    from archiver.preflight import check_broker
    from archiver.worker.app import Publisher, create_app

    current = current or settings()
    publisher = Publisher(create_app(current))
    check_broker(current.broker_url, publisher.probe)
    return publisher
