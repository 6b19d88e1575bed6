"""Strict option validation: an unknown option or a wrong-typed value is a ConfigurationError naming it.

Every secret option `x` may instead be given as `x_env = "VARIABLE"`, so no config file ever has to
hold a credential. Validation only checks the variable's name: the option's value is an `EnvSecret`
placeholder until the provider makes its first client (`StorageProvider.resolve_secrets`), so a process
that never opens a client (the receiver, beat, `config show`) neither needs nor reads the secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from providers.errors import ConfigurationError

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class EnvSecret:
    """Stands for a secret option's value until it is read from the environment variable `variable`.
    Truthy and not None, so presence checks of option combinations treat it as given."""

    variable: str

    def __repr__(self) -> str:
        return f"<from ${self.variable}>"


@dataclass(frozen=True)
class Option:
    kind: str  # str | int | float | bool | size | dict | list
    default: Any = None
    secret: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""


COMMON_OPTIONS: dict[str, Option] = {
    "part_size": Option("size", doc="bytes per part/block/chunk (int or '16MiB')"),
    "concurrency": Option("int", doc="parts in memory and in flight at once"),
    "timeout": Option("float", 60.0, doc="connect/read timeout per request, seconds"),
    "single_request_max": Option("size", doc="objects of a known length up to this size are written with one "
                                 "create-only request instead of a multipart upload; capped at part_size x "
                                 "concurrency, so holding one costs no more memory than streaming it"),
}


def parse_size(value: Any, name: str, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _UNITS[(m.group(2) or "b").lower()]
    else:
        raise ConfigurationError(f"option '{name}' for {where} must be a size such as 8388608 or '8MiB', "
                                 f"got {value!r}")
    if size <= 0:
        raise ConfigurationError(f"option '{name}' for {where} must be positive, got {value!r}")
    return size


def _check_kind(name: str, opt: Option, value: Any, where: str) -> Any:
    kind = opt.kind
    if kind == "size":
        return parse_size(value, name, where)
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "dict": isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in value.items()),
        "list": isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        shown = "<redacted>" if opt.secret else repr(value)
        expected = {"dict": "a table of strings", "list": "a list of strings"}.get(kind, kind)
        raise ConfigurationError(f"option '{name}' for {where} must be {expected}, got {shown} "
                                 f"({type(value).__name__})")
    if opt.choices and value not in opt.choices:
        raise ConfigurationError(f"option '{name}' for {where} must be one of {', '.join(opt.choices)}, "
                                 f"got {value!r}")
    if kind in ("int", "float") and value <= 0:
        raise ConfigurationError(f"option '{name}' for {where} must be positive, got {value!r}")
    return float(value) if kind == "float" else value


def validate_options(spec: Mapping[str, Option], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Return every option of `spec` with its value (given, the default, or an EnvSecret for `<name>_env`).
    Reads no environment variable."""
    env_names = {f"{name}_env": name for name, opt in spec.items() if opt.secret}
    unknown = sorted(k for k in given if k not in spec and k not in env_names)
    if unknown:
        raise ConfigurationError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(repr(u) for u in unknown)} for {where}; "
                                 f"known: {', '.join(sorted(spec))}")
    values = {name: opt.default for name, opt in spec.items()}
    for key, value in given.items():
        if key in env_names:
            name = env_names[key]
            if name in given:
                raise ConfigurationError(f"give either '{name}' or '{key}' for {where}, not both")
            if not isinstance(value, str) or not _VARIABLE.match(value):
                raise ConfigurationError(f"option '{key}' for {where} must name an environment variable "
                                         "(letters, digits and _, not starting with a digit)")
            values[name] = EnvSecret(value)
        elif value is not None:
            values[key] = _check_kind(key, spec[key], value, where)
    return values


def redacted(spec: Mapping[str, Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """The options as safe to print: secrets set are shown as '<redacted>', unset ones are left out."""
    shown: dict[str, Any] = {}
    for name, value in values.items():
        if value is not None and value != spec[name].default:
            shown[name] = "<redacted>" if spec[name].secret else value
    return shown
