"""Checks of every URL setting at load (scheme, host, form), and relative paths made absolute.

A URL that passes here is one its client can at least read: the ledger's SQLAlchemy URL names a
dialect this product ships a driver for, the broker's a transport kombu knows with a host where one
is needed. Messages never quote a broker or database URL: it may hold a password.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

# The ledger's dialects: SQLite (built in) and PostgreSQL through psycopg 3 (a dependency).
DATABASE_EXAMPLES = "sqlite:///relative/ledger.db, sqlite:////absolute/ledger.db or " \
                    "postgresql+psycopg://user:password@host:5432/db"
# Names people write for PostgreSQL that SQLAlchemy reads as another (or a missing) driver.
_POSTGRES_SPELLINGS = ("postgres", "postgresql", "postgresql+psycopg2", "postgres+psycopg", "psql", "pgsql",
                       "postgresql+pg8000", "postgresql+asyncpg")
BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel", "amqp", "amqps", "pyamqp")
BROKER_EXAMPLES = "redis://host:6379/0, rediss://..., amqp://user:password@host:5672//, or sqla+sqlite:///path.db"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _missing_separator(url: str, schemes: tuple[str, ...]) -> str | None:
    """`redis//host` or `redis:/host`: the scheme is there but not followed by '://'."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)(:/?|//)(?!/)", url)
    if m and m.group(1).lower() in schemes and not url.startswith(m.group(1) + "://"):
        return f"'{m.group(1)}' must be followed by '://' (e.g. {m.group(1)}://host...)"
    return None


def database_url_problem(url: str) -> str | None:
    """Why the ledger's URL cannot work, or None."""
    m = _SCHEME.match(url)
    if not m:
        why = _missing_separator(url, ("sqlite", *_POSTGRES_SPELLINGS))
        return f"not a database URL: {why or 'no scheme://'}; write {DATABASE_EXAMPLES}"
    scheme = m.group(1).lower()
    if scheme in _POSTGRES_SPELLINGS:
        return (f"'{scheme}://' is not a PostgreSQL driver this product ships; write postgresql+psycopg://"
                f"user:password@host:5432/db (the same URL with the scheme changed)")
    if scheme == "sqlite":
        rest = url[len("sqlite://"):]
        if rest and not rest.startswith("/"):
            return ("a SQLite URL names no host: write sqlite:///relative/ledger.db or "
                    "sqlite:////absolute/ledger.db (three or four slashes)")
        return None
    if scheme != "postgresql+psycopg":
        return f"'{scheme}://' is not a ledger this product supports; write {DATABASE_EXAMPLES}"
    return _port_problem(url, "the database client")


def broker_url_problem(url: str) -> str | None:
    """Why kombu could not use `url`, in words that never quote it (it may hold a password). kombu
    splits failover and Sentinel lists at every ";" and reads each part with urllib, whose error would
    quote the text after a ":" it takes for a port: often a piece of the password."""
    for part in (p.strip() for p in url.split(";")):
        m = _SCHEME.match(part)
        if not m:
            why = _missing_separator(part, (*BROKER_SCHEMES, "sqla+sqlite", "sqla+postgresql+psycopg"))
            return f"not a broker URL: {why or 'no scheme://'}; write {BROKER_EXAMPLES}"
        scheme = m.group(1).lower()
        if scheme.startswith("sqla+"):
            if why := database_url_problem(part[len("sqla+"):]):
                return f"the SQLAlchemy transport's URL: {why}"
            continue
        if scheme not in BROKER_SCHEMES:
            return f"'{scheme}://' is not a broker transport this product supports; write {BROKER_EXAMPLES}"
        if why := _port_problem(part, "the broker client"):
            return why
        parts = urlsplit(part)
        if not parts.hostname and scheme not in ("sentinel", "redis+socket"):
            return f"names no host; write {BROKER_EXAMPLES}"
        if scheme in ("redis", "rediss") and parts.path.strip("/") and not parts.path.strip("/").isdigit():
            return "a Redis URL's path is the database number (e.g. redis://host:6379/0)"
    return None


def _port_problem(url: str, client: str) -> str | None:
    try:
        _ = urlsplit(url).port
    except ValueError:
        return (f"not a URL {client} can read (its port is not a number): percent-encode any ';', "
                "'/', '?', '#' or '@' in the password (e.g. '@' as %40)")
    return None


def api_base_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"must be an http(s) URL with a host (e.g. https://api.videosdk.live/v2), got {url!r}"
    return None


def location_problem(url: str) -> str | None:
    """A placeholder in a storage URL's bucket or container: only the part after it is a template."""
    m = re.match(r"^([a-z0-9]+)://([^/]*)", url)
    if m and m.group(1) != "file" and any(c in m.group(2) for c in "{}$"):
        return (f"the bucket {m.group(2)!r} holds a placeholder; the bucket (container) is fixed and only the "
                f"part after it is a key template, e.g. {m.group(1)}://my-bucket/{m.group(2)}/")
    return None


# ---- relative paths: against the config file's folder, never the current one ----------------------

def absolute_sqlite(url: str, base: Path) -> str:
    """`sqlite:///./x.db` -> `sqlite:////base/x.db` (also after `sqla+`); other URLs unchanged."""
    for prefix in ("sqlite:///", "sqla+sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            path, sep, query = rest.partition("?")
            if path and not path.startswith("/") and path != ":memory:":
                return f"{prefix}{(base / path).resolve()}{sep}{query}"
    return url


def absolute_file_url(url: str, base: Path) -> str:
    """A folder URL without template: `file:./archive` -> `file:///base/archive`; others unchanged."""
    if url.startswith("file:") and not url.startswith("file:/") and url[len("file:"):]:
        return f"file://{(base / url[len('file:'):]).resolve().as_posix()}"
    return url


def absolute_path(text: str, base: Path) -> str:
    """A relative file path (not PEM text) against `base`."""
    if "-----BEGIN" in text or "\n" in text.strip() or Path(text.strip()).is_absolute():
        return text
    return str((base / text.strip()).resolve())
