"""One declaration per setting: `setting(default, check=..., env=...)` on a frozen dataclass field.

The field's name is the TOML key, its annotation the type (checked in the file, parsed from the
environment), its default the default, and its metadata the environment variable (derived as
`ARCHIVER_<SECTION>_<KEY>` unless given) and the value check. The loader (archiver.settings.sections)
reads nothing else, so a new setting is one line here plus its README row.

Why dataclasses and not pydantic-settings: pydantic-settings merges the file and the environment
before it validates, so an error could not say which of the two a bad value came from; its
environment parsing wants JSON for lists, where ours are comma-separated; and its messages would need
rewriting to keep the ones operators (and tests) already know. Plain frozen dataclasses keep
`dataclasses.replace`/`asdict`, which callers use.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Check = Callable[[Any], "str | None"]  # a value -> why it is wrong ("must be ..."), None when right


@dataclass(frozen=True)
class Spec:
    env: str | None  # the variable's name; "" derives ARCHIVER_<SECTION>_<KEY>; None: no variable
    check: Check | None = None
    own_reader: bool = False  # read by a reader of its own (a table or a string), not from its annotation


def setting(default: Any, *, check: Check | None = None, env: str | None = "", own_reader: bool = False) -> Any:
    """Declare one setting: its default, its check, and its variable (derived when ``env=""``)."""
    return dataclasses.field(default=default, metadata={"setting": Spec(env, check, own_reader)})


@dataclass(frozen=True)
class Declared:
    """One setting as the loader sees it."""

    section: str | None  # None: top level
    key: str
    kind: Any  # the resolved annotation: int, float, bool, str, tuple[str, ...], X | None
    default: Any
    variable: str | None
    check: Check | None
    own_reader: bool

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key


def declared(cls: type, section: str | None) -> list[Declared]:
    """The settings a dataclass declares, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("setting")
        if not spec:  # None: not a setting (a table of its own); False: a tuning value (domain TUNING)
            continue
        variable = spec.env
        if variable == "":
            variable = "_".join(["ARCHIVER", *([section] if section else []), f.name]).upper()
        out.append(Declared(section, f.name, hints[f.name], f.default, variable, spec.check, spec.own_reader))
    return out


def _inner(kind: Any) -> Any:
    """`float | None` -> float; other types unchanged."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        rest = [a for a in typing.get_args(kind) if a is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind


# ---- values from the TOML file: strict types (a quoted number is a mistake worth reporting) --------

def from_file(kind: Any, value: Any) -> Any:
    """The TOML value as the declared type; ValueError("must be ...") when it is not one."""
    kind = _inner(kind)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be bool, got {type(value).__name__}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be int, got {type(value).__name__}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be number, got {type(value).__name__}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"must be str, got {type(value).__name__}")
        return value
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, list):
            raise ValueError(f"must be list, got {type(value).__name__}")
        if bad := next((v for v in value if not isinstance(v, str)), None):
            raise ValueError(f"must be list of strings, got a {type(bad).__name__} item")
        return tuple(value)
    raise TypeError(f"no file reader for {kind!r}")  # such a declaration says own_reader=True


# ---- values from ARCHIVER_* variables: text ---------------------------------------------------------

def parse_bool(text: str) -> bool:
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false (also yes/no, on/off, 1/0)")


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(h.strip() for h in text.split(",") if h.strip())


def _number(kind: type, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text.strip())
        except ValueError:
            raise ValueError(f"must be {what}") from None
    return parse


def env_parser(kind: Any) -> Callable[[str], Any]:
    """The reader of a variable's text for a declared type; it raises ValueError("must be ...")."""
    kind = _inner(kind)
    if kind is bool:
        return parse_bool
    if kind is int:
        return _number(int, "an integer")
    if kind is float:
        return _number(float, "a number")
    if typing.get_origin(kind) is tuple:
        return parse_list
    return str


# ---- checks, each a value -> message; the loader prefixes the key or the variable ----------------

def at_least(low: float, unit: str = "", *, show: bool = True) -> Check:
    def check(value: Any) -> str | None:
        if value >= low:
            return None
        return f"must be at least {low:g}{' ' + unit if unit else ''}" + (f", got {value:g}" if show else "")
    return check


def between(low: int, high: int, note: str = "") -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be {low} to {high}{' ' + note if note else ''}, got {value}"
    return check


def more_than(low: float, unit: str = "") -> Check:
    def check(value: Any) -> str | None:
        return None if value > low else f"must be more than {low:g}{' ' + unit if unit else ''}, got {value:g}"
    return check


def zero_or_more(meaning: str) -> Check:
    """`0` has a meaning of its own (e.g. "no schedule"), said in the message."""
    def check(value: Any) -> str | None:
        return None if value >= 0 else f"must be 0 ({meaning}) or more, got {value:g}"
    return check


def one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}, got {value!r}"
    return check


def absolute_http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname and not parts.query and not parts.fragment:
        return None
    return f"must be an absolute URL such as https://archiver.example.com (no query), got {value!r}"


def optional(check: Check) -> Check:
    """Apply `check` unless the value is None (an optional setting left unset)."""
    return lambda value: None if value is None else check(value)
