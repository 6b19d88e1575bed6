"""The click plumbing every verb shares: the `archiver` group, the options each verb takes, exit codes.

`archiver` is a `VerbGroup`; every verb is a `Verb`, which adds `--config PATH` and `--json` to its own
options, so both are accepted after the verb as well as before it (`archiver status --config x.toml`).
A misspelt verb gets "did you mean" from `VerbGroup.resolve_command` (difflib); a misspelt option gets
it from click. Other modules extend the command with `archiver.cli.cli.add_command(...)`.

Exit codes: OK 0, FOUND_PROBLEMS 1 (the verb found failures or mismatches), USAGE 2 (usage or
configuration error; the message says what to fix).
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import click

from archiver.settings.config import Settings, load_settings

OK, FOUND_PROBLEMS, USAGE = 0, 1, 2
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@dataclass
class State:
    """What the group and the verb's shared options decided; one per invocation (the root's ctx.obj)."""

    config: str | None = None  # --config, made absolute; also exported as ARCHIVER_CONFIG for child processes
    json: bool = False  # --json: machine-readable output on stdout
    verb: str = ""  # the top-level verb, for "archiver VERB: message" lines
    settings: Settings | None = None


def state() -> State:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def settings() -> Settings:
    """The settings of --config (or $ARCHIVER_CONFIG / ./archiver.toml / defaults), loaded once.
    Raises ConfigError listing every problem (main() prints it, exit 2)."""
    current = state()
    if current.settings is None:
        current.settings = load_settings(current.config)
    return current.settings


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        state().config = os.path.abspath(value)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        state().json = True


def config_option() -> click.Option:
    return click.Option(["--config"], metavar="PATH", expose_value=False, is_eager=True, callback=_set_config,
                        help="path of archiver.toml (default: $ARCHIVER_CONFIG or ./archiver.toml)")


def json_option() -> click.Option:
    return click.Option(["--json"], is_flag=True, expose_value=False, callback=_set_json,
                        help="print machine-readable JSON on stdout")


class Verb(click.Command):
    """A verb: its own options plus --config and --json; the callback returns the exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        if kwargs.get("help") and not kwargs.get("short_help"):  # the list of verbs shows the first clause
            kwargs["short_help"] = re.split(r"[:;(]", kwargs["help"], maxsplit=1)[0].strip()
        super().__init__(*args, **kwargs)
        self.params += [config_option(), json_option()]

    def invoke(self, ctx: click.Context) -> Any:
        top = ctx
        while top.parent is not None and top.parent.parent is not None:
            top = top.parent
        current = state()
        current.verb = top.info_name or ""
        if current.config:  # the worker pool, the Celery app and child processes read the same file
            os.environ["ARCHIVER_CONFIG"] = current.config
        return super().invoke(ctx)


class VerbGroup(click.Group):
    """A group whose unknown verbs get "did you mean" (click's own hint varies by version)."""

    command_class = Verb

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        kwargs.setdefault("subcommand_metavar", "VERB [ARGS]...")
        super().__init__(*args, **kwargs)
        if not any("--config" in p.opts for p in self.params):
            self.params.append(config_option())

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                           list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise click.UsageError(f"no verb {name!r}{hint} (see {ctx.command_path} --help)", ctx)
        resolved = super().resolve_command(ctx, args)
        if ctx.parent is None and resolved[0] and isinstance(ctx.obj, State):  # "archiver VERB: ..." lines,
            ctx.obj.verb = resolved[0]  # whatever the verb's class
        return resolved

    def invoke(self, ctx: click.Context) -> Any:
        current = state()
        if current.config:  # before the verb: verbs added by other modules read ARCHIVER_CONFIG too
            os.environ["ARCHIVER_CONFIG"] = current.config
        return super().invoke(ctx)


VerbGroup.group_class = VerbGroup


def verb(name: str, **kwargs: Any) -> Any:
    """`@verb("status", help=...)`: a click command of class Verb (takes --config and --json)."""
    return click.command(name, cls=Verb, **kwargs)


def parse(group: click.Group, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Parse `archiver ARGV` without running it: (the verb's path, e.g. ["db", "upgrade"], its parameters).
    Raises click.UsageError (or a subclass) for what the command line would refuse."""
    ctx = group.make_context("archiver", list(argv), obj=State())
    path: list[str] = []
    command: click.Command = group
    args = _rest(ctx)
    while isinstance(command, click.Group):
        if not args:
            raise click.UsageError(f"{' '.join(['archiver', *path])} needs a verb", ctx)
        name, sub, args = command.resolve_command(ctx, args)
        assert name is not None and sub is not None
        path.append(name)
        try:
            ctx = sub.make_context(name, args, parent=ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise click.UsageError(f"{' '.join(['archiver', *path])} needs a verb", ctx) from None
        command, args = sub, _rest(ctx)
    return path, dict(ctx.params)


def _rest(ctx: click.Context) -> list[str]:
    """The tokens a group left for its verb: click 8 splits them (protected_args, deprecated in 8.2 and
    gone in 9, where args holds them all)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", ()), *ctx.args]
