"""[[notifications]] tables: the customer's applications told about outcomes (Standard Webhooks).

    [[notifications]]
    name = "app"                                   # letters, digits, '-', '_', '.'
    url = "https://app.example.com/hooks/archive"  # configured here only, never taken from input
    secret_env = "ARCHIVER_NOTIFY_APP_SECRET"      # holds a Standard Webhooks secret, whsec_<base64>
    events = ["recording.archived", "copy.failed"] # default: every event type
    # allow_http, allow_private_addresses, allowed_networks: the [source] address policy, per endpoint
    # timeout (s), max_attempts, retry_base_seconds, retry_max_seconds: delivery and its backoff

Secrets are never read from the file, exactly as for destinations: only the variable's name is.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

EVENT_TYPES = ("recording.archived", "copy.failed", "recording.discovered")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBERS = {"timeout": 10.0, "retry_base_seconds": 5.0, "retry_max_seconds": 3600.0}
_KEYS = {"name", "url", "secret_env", "events", "allow_http", "allow_private_addresses", "allowed_networks",
         "max_attempts", *_NUMBERS}


@dataclass(frozen=True)
class Notification:
    name: str
    url: str
    secret_env: str  # the environment variable holding the signing secret (read when sending)
    events: frozenset[str] = frozenset(EVENT_TYPES)
    allow_http: bool = False
    allow_private_addresses: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs exempt from the private-address refusal
    timeout: float = 10.0  # seconds for one POST (connect, send, answer)
    max_attempts: int = 15  # then the delivery is failed for good (visible in `archiver status`)
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


def parse_notifications(raw: Any, problems: list[str]) -> tuple[Notification, ...]:
    """The [[notifications]] array; every problem is appended with its location and the fix."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append("notifications: must be an array of tables ([[notifications]])")
        return ()
    found = [n for i, t in enumerate(raw) if (n := _parse_one(i, t, problems)) is not None]
    names = [n.name for n in found]
    problems += [f"notifications: name {n!r} is used more than once" for n in sorted({n for n in names
                                                                                     if names.count(n) > 1})]
    return tuple(found)


def _parse_one(index: int, table: Any, problems: list[str]) -> Notification | None:
    where = f"notifications[{index}]"
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return None
    before = len(problems)
    if "secret" in table:
        problems.append(f"{where}.secret: secrets are not read from the config file; set secret_env = \"VARIABLE\"")
    problems += [f"{where}.{k}: unknown setting (known: {', '.join(sorted(_KEYS))})"
                 for k in table if k not in _KEYS and k != "secret"]
    name, url, secret_env = table.get("name"), table.get("url"), table.get("secret_env")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}.name: required, letters, digits, '-', '_' or '.' (got {name!r})")
    if not isinstance(secret_env, str) or not _VARIABLE.match(secret_env):
        problems.append(f"{where}.secret_env: required, the name of the environment variable holding the "
                        "signing secret (whsec_...), e.g. \"ARCHIVER_NOTIFY_SECRET\"")
    flags = {k: table.get(k, False) for k in ("allow_http", "allow_private_addresses")}
    problems += [f"{where}.{k}: must be true or false" for k, v in flags.items() if not isinstance(v, bool)]
    events = table.get("events", list(EVENT_TYPES))
    if not (isinstance(events, list) and events and all(isinstance(e, str) for e in events)):
        problems.append(f"{where}.events: must be a non-empty list of {', '.join(EVENT_TYPES)}")
        events = []
    elif unknown := [e for e in events if e not in EVENT_TYPES]:
        problems.append(f"{where}.events: {', '.join(map(repr, unknown))} unknown; use {', '.join(EVENT_TYPES)}")
    networks = table.get("allowed_networks", [])
    if not (isinstance(networks, list) and all(isinstance(n, str) for n in networks)):
        problems.append(f"{where}.allowed_networks: must be a list of networks (e.g. [\"10.1.0.0/16\"])")
        networks = []
    for cidr in networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.append(f"{where}.allowed_networks: {cidr!r} is not a network (e.g. 10.1.0.0/16)")
    numbers = {}
    for key, default in _NUMBERS.items():
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{where}.{key}: must be a number of seconds above 0, got {value!r}")
        else:
            numbers[key] = float(value)
    attempts = table.get("max_attempts", 15)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        problems.append(f"{where}.max_attempts: must be an integer of at least 1, got {attempts!r}")
    if isinstance(url, str):
        problems += [f"{where}.url: {why}" for why in url_problems(url, flags["allow_http"] is True)]
    else:
        problems.append(f"{where}.url: required, the https URL of the application's webhook endpoint")
    if len(problems) > before:
        return None
    # Checked above: each is a string when no problem was added.
    assert isinstance(name, str) and isinstance(url, str) and isinstance(secret_env, str)
    return Notification(name=name, url=url, secret_env=secret_env, events=frozenset(events),
                        allow_http=flags["allow_http"], allow_private_addresses=flags["allow_private_addresses"],
                        allowed_networks=tuple(networks), max_attempts=attempts, **numbers)


def url_problems(url: str, allow_http: bool) -> list[str]:
    """What is wrong with an endpoint URL by its text alone (the addresses are checked when sending)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return ["not a URL (e.g. https://app.example.com/hooks/archive)"]
    problems = []
    if parts.scheme not in ("https", "http") or not parts.hostname:
        problems.append("must be an https URL with a host (e.g. https://app.example.com/hooks/archive)")
    elif parts.scheme == "http" and not allow_http:
        problems.append("plain http sends the payload unencrypted: use https, or set allow_http = true")
    if parts.username or parts.password:
        problems.append("credentials in the URL are not allowed (they would be sent to whoever answers)")
    if parts.fragment:
        problems.append("a fragment (#...) is never sent; remove it")
    return problems
