"""Shared by every verb: settings, table printing, exit codes (0 ok, 1 found problems, 2 usage/config)."""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.settings.config import Settings, load_settings

OK, FOUND_PROBLEMS, USAGE = 0, 1, 2


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def provider_option(text: str) -> tuple[str, Any]:
    """`-o key=value`; the value is read as a TOML value when it is one (8, true, "x"), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


_UNITS = {"m": 60, "h": 3600, "d": 86400}


def since(text: str) -> datetime:
    """`--since 24h` / `30m` / `7d`, or an ISO date or time (UTC when no zone is given)."""
    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 30m, 24h, 7d or an ISO time, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
