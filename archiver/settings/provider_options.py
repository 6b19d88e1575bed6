"""A storage URL's provider options checked at load, every problem at once.

The provider's own constructor stops at its first problem (providers.options.validate_options), so
each option is checked on its own first: four bad options are four lines in one run. Combinations
(`give one credential`) are checked by opening the provider once the options themselves are right.
Nothing here reads a secret or makes a request: the receiver and beat load this too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archiver.settings.urls import location_problem
from providers import ConfigurationError, open_provider, provider_class, split_url
from providers.options import COMMON_OPTIONS, validate_options


def option_problems(where: str, url: str, options: Mapping[str, Any], *, secret_hint: str = "") -> list[str]:
    """Problems of `options` for the provider of `url` (the URL without its key template), each
    prefixed with `where` (`destinations[0]`); [] when the provider opens with them."""
    if why := location_problem(url):
        return [f"{where}.url: {why}"]
    try:
        scheme, location, _ = split_url(url)
        spec = {**COMMON_OPTIONS, **provider_class(scheme).options_spec}
    except ConfigurationError as exc:
        return [f"{where}: {exc}"]
    problems = [f"{where}.{k}: secrets are not read from the config file; set {k}_env = \"VARIABLE\"{secret_hint}"
                for k in options if k in spec and spec[k].secret]
    env_names = {f"{name}_env" for name, opt in spec.items() if opt.secret}
    unknown = {k: v for k, v in options.items() if k not in spec and k not in env_names}
    checks = [unknown] if unknown else []
    checks += [{k: v} for k, v in options.items() if k not in unknown]
    for given in checks:
        try:
            validate_options(spec, given, f"{scheme}://{location}")
        except ConfigurationError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        return problems
    try:
        open_provider(url, **options)  # combinations, and each provider's own checks
    except ConfigurationError as exc:
        problems.append(f"{where}: {exc}")
    return problems
