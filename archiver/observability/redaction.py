"""One way to print a broker, database or API URL: `mask_url` hides every password and token in it.

The URL names a service and may carry its credentials: a password in the userinfo (which may itself
contain `@`, `/`, `?` or `#`, raw or percent-encoded), a `?password=` (or `token`, `key`, `sig`, ...)
query parameter, a fragment, and several URLs joined by `;` (Redis Sentinel, kombu failover). Every
place that shows or logs such a URL calls this function: `archiver config show`, the `archiver up`
banner, the ledger's schema message. Source URLs from webhooks are another matter: `redact_source`
drops their query string (signed-URL tokens) entirely, parsing them with httpx as the download does.

The rules err on hiding too much: everything before the last `@` is userinfo (drivers and SQLAlchemy
read a password up to that `@`; a `@` in a query value then hides a host, which costs only display), a
userinfo without `:` may be a bare token and is hidden whole, and any query parameter whose name
contains one of SENSITIVE is masked.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx

MASK = "***"
# Substrings of query parameter names whose values are credentials (password, pass, passwd, pwd,
# token, access_token, key, apikey, sslkey, secret, sig, signature, sas, auth, credential).
SENSITIVE = ("pass", "pwd", "token", "key", "secret", "sig", "sas", "auth", "cred")
# A new URL starts after ";" only where a scheme follows: a ";" inside a password stays in it.
_SPLIT = re.compile(r";(?=\s*[A-Za-z][A-Za-z0-9+.\-]*://)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*:)(//)?")


def redact_source(url: str | httpx.URL) -> str:
    """A source URL without credentials, query string or fragment (signed CDN URLs carry tokens),
    parsed by httpx as the download parses it; "<unparseable URL>" for what httpx cannot parse."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<unparseable URL>"
    port = f":{parsed.port}" if parsed.port is not None else ""
    host = parsed.raw_host.decode("ascii", "replace")
    if ":" in host:
        host = f"[{host}]"
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


def mask_url(url: str) -> str:
    """`url` with every password, token and fragment replaced by ***; hosts, ports, paths and other
    query parameters kept. Several URLs joined by `;` are masked one by one. Never raises."""
    if not isinstance(url, str):
        return MASK
    return ";".join(_mask_one(part) for part in _SPLIT.split(url))


def _mask_one(url: str) -> str:
    match = _SCHEME.match(url)
    scheme = match.group(0) if match else ""
    rest = url[len(scheme):]
    userinfo, at, rest = rest.rpartition("@")
    if at:
        # A userinfo without ":" may be a bare token (https://TOKEN@host): hidden whole.
        user, colon, _password = userinfo.partition(":")
        userinfo = f"{user}:{MASK}" if colon and "/" not in user and "?" not in user and "#" not in user else MASK
    rest, hash_, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    shown = scheme + (f"{userinfo}@" if at else "") + rest
    if question:
        shown += "?" + "&".join(_mask_parameter(p) for p in query.split("&"))
    if hash_:
        shown += "#" + (MASK if fragment else "")
    return shown


def _mask_parameter(parameter: str) -> str:
    name, equals, value = parameter.partition("=")
    if equals and value and any(word in unquote(name).lower() for word in SENSITIVE):
        return f"{name}={MASK}"
    return parameter
