"""The `archiver` command: runbook verbs for operators. Exit codes: 0 ok, 1 failures found, 2 usage/config."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from typing import Any

from providers import ConfigurationError, open_provider

DEFAULT_DESTINATION = "file:./archive/"


def _option(text: str) -> tuple[str, Any]:
    """`-o key=value`; the value is read as a TOML value when it is one (8, true, "x"), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def cmd_check(args: argparse.Namespace) -> int:
    try:
        provider = open_provider(args.url, **dict(args.option))
    except ConfigurationError as exc:
        print(f"archiver check: {exc}", file=sys.stderr)
        return 2
    report = provider.check()
    if args.json:
        print(json.dumps({"url": report.url, "ok": report.ok,
                          "steps": [step.__dict__ for step in report.steps]}, indent=2))
    else:
        print(report)
    return 0 if report.ok else 1


def cmd_up(args: argparse.Namespace) -> int:
    # The receiver, worker and scheduler arrive with the pipeline and intake work; until then `up`
    # proves the embedded default destination is writable, which is what they will write to.
    print(f"archiver {__import__('archiver').__version__}: embedded defaults, destination {DEFAULT_DESTINATION}")
    report = open_provider(DEFAULT_DESTINATION).check()
    print(report)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archiver", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    check = verbs.add_parser("check", help="probe a destination: write, read back, compare, delete",
                             description="Write a small probe object under the destination's prefix, read it "
                                         "back, compare and delete it. Exit 1 if any step fails.")
    check.add_argument("url", help="s3://bucket/prefix, az://container/prefix, gs://bucket/prefix, file:dir")
    check.add_argument("-o", "--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                       help="a provider option, e.g. -o region=eu-west-1 (repeatable)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=cmd_check)

    up = verbs.add_parser("up", help="run the service on embedded defaults (what `make run` does)")
    up.set_defaults(func=cmd_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
