"""Reading declared settings (archiver.settings.fields) from a TOML table and ARCHIVER_* variables.

Every problem names where the bad value came from: the dotted key (`retry.max_attempts: ...`, the
file is named in ConfigError's heading) or the variable (`ARCHIVER_RETRY_MAX_ATTEMPTS: ...`), since a
variable overrides the file and is what the operator has to change.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from archiver.settings.fields import Declared, declared, env_parser, from_file

# ARCHIVER_* names that are not settings but are read elsewhere: by config_path, by docker-compose.yml
# (interpolation on the host) or by the test suite and benchmarks (prefixes).
NOT_SETTINGS = frozenset({"ARCHIVER_CONFIG", "ARCHIVER_CONFIG_NAME", "ARCHIVER_IMAGE_TAG", "ARCHIVER_RECEIVER_BIND"})
RESERVED_PREFIXES = ("ARCHIVER_TEST_", "ARCHIVER_BENCH_")


def suggestion(name: str, known: Iterable[str], *, cutoff: float = 0.75) -> str | None:
    """The closest known name to a misspelt one, ignoring case, '_' and '-' (meeting_id ~ meetingId)."""
    known = list(known)
    squash: Callable[[str], str] = lambda s: s.replace("_", "").replace("-", "").lower()  # noqa: E731
    same = [k for k in known if squash(k) == squash(name)]
    if same:
        return same[0]
    close = difflib.get_close_matches(squash(name), [squash(k) for k in known], n=1, cutoff=cutoff)
    return next((k for k in known if close and squash(k) == close[0]), None)


def unknown_keys(table: Mapping[str, Any], known: Iterable[str], prefix: str) -> list[str]:
    """One problem per key of `table` that is not in `known`, with a suggestion when one is close."""
    known = list(known)
    problems = []
    for key in table:
        if key in known:
            continue
        hint = suggestion(key, known)
        problems.append(f"{prefix}{key}: unknown setting{f', did you mean {hint!r}?' if hint else ''} "
                        f"(known: {', '.join(sorted(known))})")
    return problems


def read_settings(cls: type, section: str | None, table: Mapping[str, Any], environ: Mapping[str, str],
                  problems: list[str], overrides: Mapping[str, Any] | None = None) -> Any:
    """An instance of the settings dataclass `cls`: each declared setting from its variable when set,
    else from `table`, else its default; a value that fails its type or check is reported and left at
    its default. `overrides` are values read elsewhere (custom readers)."""
    values: dict[str, Any] = dict(overrides or {})
    for d in declared(cls, section):
        if d.own_reader:
            continue  # read by its own reader, passed in overrides
        found = _value(d, table, environ, problems)
        if found is None:
            continue
        value, where = found
        if d.check and (why := d.check(value)):
            problems.append(f"{where}: {why}" + (f" ({d.dotted})" if where == d.variable else ""))
            continue
        values[d.key] = value
    return cls(**values)


def _value(d: Declared, table: Mapping[str, Any], environ: Mapping[str, str],
           problems: list[str]) -> tuple[Any, str] | None:
    if d.variable and d.variable in environ:
        text = environ[d.variable]
        try:
            return env_parser(d.kind)(text), d.variable
        except ValueError as exc:
            problems.append(f"{d.variable}: {exc}, got {text!r}")
            return None
    if d.key in table:
        try:
            return from_file(d.kind, table[d.key]), d.dotted
        except ValueError as exc:
            problems.append(f"{d.dotted}: {exc}")
    return None


def variables(classes: Mapping[str | None, type]) -> dict[tuple[str | None, str], tuple[str, Callable[[str], Any]]]:
    """(section, key) -> (variable, parser) for every declared setting that has a variable."""
    return {(d.section, d.key): (d.variable, env_parser(d.kind))
            for section, cls in classes.items() for d in declared(cls, section) if d.variable}


def unknown_variables(environ: Mapping[str, str], known: Iterable[str]) -> list[str]:
    """A warning per ARCHIVER_* variable that no setting reads (a typo would be silently ignored)."""
    known = sorted(set(known) | NOT_SETTINGS)
    warnings = []
    for name in sorted(environ):
        if not name.startswith("ARCHIVER_") or name in known or name.startswith(RESERVED_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        warnings.append(f"{name} is not a setting and is ignored; "
                        + (f"did you mean {close[0]}?" if close else "see the README's Configuration reference"))
    return warnings
