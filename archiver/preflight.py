"""Before a service process starts: create what the defaults need, and refuse to start on a broker or
ledger that cannot be used, with one line saying what failed, why and what to change.

A process that cannot reach its broker or ledger at start exits at once (exit 2) rather than retrying:
the operator gets the reason in seconds, and a supervisor (systemd, Docker, Kubernetes) restarts it
with its own backoff. Only a broker lost *after* the worker was running is waited for (bounded, see
archiver.worker.lifecycle).

Pure: imports no Celery and no kombu; the broker probe is passed in (celery_app.Publisher.probe).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from archiver.ledger.database import (
    LedgerError,
    create_ledger_engine,
    current_revision,
    require_current_schema,
    upgrade,
)
from archiver.private_files import private_sqlite_file, sqlite_path
from archiver.settings.config import Settings

PROBE_SECONDS = 15.0  # a broker or ledger that has not answered by then counts as unreachable
BROKER = ("broker", "broker_url", "ARCHIVER_BROKER_URL")
LEDGER = ("ledger", "database_url", "ARCHIVER_DATABASE_URL")
T = TypeVar("T")


class StartupError(LedgerError):
    """The process cannot start; str() is one line: what failed, why, what to change.

    A LedgerError, so every verb's existing handler prints it and exits 2 (configuration error)."""


def redact(url: str) -> str:
    """The URL with any password replaced by ***; a query string (may carry tokens) dropped."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:***@{netloc.rsplit('@', 1)[1]}"
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url.split("?", 1)[0]


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (`sqlite:///x.db`, `sqla+sqlite:///x.db`), None for others and :memory:."""
    return sqlite_path(url)


def ensure_sqlite_folder(url: str, kind: tuple[str, str, str]) -> None:
    """Create a SQLite broker or ledger file owner-only (0600 in a 0700 folder, `.archiver/` on embedded
    defaults), before SQLite or kombu's transport creates it with the default 0644: it holds webhook
    bodies. Raises StartupError when it cannot be created (a file in the way, no permission, read-only)."""
    path = sqlite_file(url)
    if path is None:
        return
    try:
        private_sqlite_file(path)
    except OSError as exc:
        where = path.parent if not path.parent.is_dir() else path
        why = f"cannot create {where}: {exc.strerror or exc}"
        raise StartupError(_line(kind, url, why, _fix(kind, url, why))) from None


def within(seconds: float, call: Callable[[], T]) -> T:
    """call() in a helper thread; TimeoutError if it has not returned after `seconds` (it is then
    left to finish on its own: the caller is about to exit). Exceptions of call() are re-raised."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="preflight", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def check_ledger(settings: Settings, *, create_embedded: bool = True, require_current: bool = True,
                 create_folder: bool = True) -> None:
    """Open the ledger once: the folder of a SQLite file is created (create_folder; a verb that only
    reads the ledger passes False and must not leave an empty file behind), an empty SQLite ledger gets
    its schema (create_embedded), and a schema behind the code is refused (require_current).

    Raises StartupError (cannot connect, refused, database missing; one line) or SchemaBehind."""
    url = settings.database_url
    if create_folder:
        ensure_sqlite_folder(url, LEDGER)
    elif (path := sqlite_file(url)) is not None and not path.is_file():
        why = f"{path} does not exist"
        raise StartupError(_line(LEDGER, url, why, f"run `archiver db upgrade` to create it, or set "
                                                   f"{LEDGER[1]} ({LEDGER[2]}) to the ledger the service uses"))
    engine = create_ledger_engine(url)  # LedgerError for a string that is no database URL
    try:
        revision = within(PROBE_SECONDS, lambda: current_revision(engine))
        if revision is None and create_embedded and sqlite_file(url) is not None:
            upgrade(engine)  # embedded defaults: the ledger is created on first run by whichever process
        if require_current:
            require_current_schema(engine)
    except LedgerError:
        raise
    except Exception as exc:
        raise StartupError(_line(LEDGER, url, reason(exc, url), _fix(LEDGER, url, reason(exc, url)))) from None
    finally:
        engine.dispose()


def check_broker(url: str, probe: Callable[[float], None]) -> None:
    """probe(timeout) must connect and declare the queues; any failure becomes one StartupError line."""
    ensure_sqlite_folder(url, BROKER)
    try:
        within(PROBE_SECONDS + 1, lambda: probe(PROBE_SECONDS))
    except Exception as exc:
        why = reason(exc, url)
        raise StartupError(_line(BROKER, url, why, _fix(BROKER, url, why))) from None


def reason(exc: BaseException, url: str = "") -> str:
    """One line from a driver's error (SQLAlchemy wraps it in .orig), with any password of `url` masked."""
    inner = getattr(exc, "orig", None) or exc
    text = " ".join(str(inner).split()).rstrip(".") or type(inner).__name__
    password = urlsplit(url).password if "://" in url else None
    if password:
        text = text.replace(password, "***")
    return text[:400]


def _line(kind: tuple[str, str, str], url: str, why: str, fix: str) -> str:
    # redact(), not mask_url(): it keeps a user name without a password (postgres@host, which names
    # the role to fix) and drops the whole query string; passwords are hidden by both.
    return f"{kind[0]} {redact(url)} cannot be used: {why}; {fix}"


def unusable(kind: tuple[str, str, str], url: str, exc: BaseException) -> StartupError:
    """The one-line StartupError for a broker (BROKER) or ledger (LEDGER) that failed in mid-run."""
    why = reason(exc, url)
    return StartupError(_line(kind, url, why, _fix(kind, url, why)))


# What to change, by what the error says (drivers differ: psycopg, redis-py, py-amqp, sqlite3).
_HINTS = (
    (("password", "authentication", "access_refused", "noauth", "wrongpass", "auth ", "role "),
     "check the user name and password in {var}"),
    (("vhost",), "create the virtual host or fix the path of {var}"),
    (("does not exist",), "create the database, or set {setting} ({var}) to an existing one"),
    (("unable to open", "readonly", "read-only", "cannot create the folder", "not a directory", "file exists",
      "permission denied"),
     "set {setting} ({var}) to a file in a folder this user can create and write"),
)


def _fix(kind: tuple[str, str, str], url: str, why: str) -> str:
    _, setting, var = kind
    lowered = why.lower()
    for needles, hint in _HINTS:
        if any(n in lowered for n in needles):
            return hint.format(setting=setting, var=var)
    return f"start the {kind[0]} or set {setting} ({var}) to one that runs and answers"


def check_port(host: str, port: int) -> None:
    """Bind host:port once, as uvicorn will (SO_REUSEADDR, every address the host resolves to), and let
    it go: a port another process listens on is refused here, before a worker or beat starts, with one
    StartupError line instead of uvicorn's message among their banners. (A process that takes the port
    between this check and uvicorn's bind still makes uvicorn fail, with its own message.)"""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise StartupError(f"receiver address {host}:{port} cannot be used: {exc}; set [receiver] host "
                           "(ARCHIVER_RECEIVER_HOST) or pass --host with an address of this machine") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6:
                    continue  # no IPv6 on this machine; uvicorn skips it too
                raise StartupError(_port_line(host, port, exc)) from None


def _port_line(host: str, port: int, exc: OSError) -> str:
    why = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        fix = (f"another process listens there (`ss -ltnp 'sport = :{port}'` names it): stop it, or pass "
               f"--port (`make run PORT=8080`) or set [receiver] port (ARCHIVER_RECEIVER_PORT)")
    elif exc.errno == errno.EACCES:
        fix = "ports below 1024 need privileges: pass --port with 1024 or above, or set [receiver] port"
    else:
        fix = "pass --host/--port or set [receiver] host and port (ARCHIVER_RECEIVER_HOST/_PORT)"
    return f"receiver cannot listen on {host}:{port}: {why}; {fix}"
