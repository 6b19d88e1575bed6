"""Overload of the receiver's process, reported in a few lines and survived: descriptors, connections.

- Out of descriptors. asyncio's `BaseSelectorEventLoop._accept_connection` (asyncio/selector_events.py,
  Python 3.11-3.13) reports every accept() failing with EMFILE, ENFILE, ENOBUFS or ENOMEM through
  `loop.call_exception_handler({"message": "socket.accept() out of system resource", "exception":
  ...})`, whose default handler logs the error with its traceback, and it keeps calling accept()
  up to `backlog` times in the same pass (one line and one traceback per call: megabytes a second).
  It stops reading the listening socket and starts again one second later (ACCEPT_RETRY_DELAY), so
  the server recovers by itself once descriptors are free; only the report is replaced here, by
  an EpisodeLog, through a loop exception handler that passes every other context on unchanged.
- A burst of connections. `_accept_connection` accepts up to `backlog` connections in one pass of the
  loop (its loop bound is create_server's backlog, which is also the listen queue), and each holds a
  descriptor until its socket is closed three passes later (the accepting task's step, then
  connection_made, then _call_connection_lost), while each of those passes may accept as many again.
  So connections refused past max_connections still hold up to ACCEPT_BURST descriptors at once:
  uvicorn's default backlog of 2048 ran a process with 256 descriptors and max_connections = 40 out
  of them. The receiver listens with ACCEPT_BACKLOG.
- Garbage from clients. uvicorn's h11 protocol logs a warning for every malformed request ("Invalid
  HTTP request received.") and two for every upgrade request it cannot serve (h11_impl.py,
  `handle_events` and `_unsupported_upgrade_warning`): a line per request anyone can send.
  `RepeatFilter` lets each of these through at most once per 10 s, with the count it held back.
- Descriptors at start. `check_descriptors` compares RLIMIT_NOFILE with what max_connections needs
  (plus ACCEPT_BURST and DESCRIPTOR_RESERVE) and raises the soft limit up to the hard one when that
  is enough.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from typing import Any

log = logging.getLogger("archiver.receiver")

ACCEPT_OUT_OF_RESOURCE = "socket.accept() out of system resource"  # asyncio/selector_events.py's message
ACCEPT_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# Descriptors the receiver needs besides its connections: stdio, the listening socket, the event loop,
# the ledger and broker connections of its intake threads. Measured: 11 at rest on SQLite; the rest is
# margin for the intake threads' connections.
DESCRIPTOR_RESERVE = 64
# Connections waiting in the kernel's queue, and accepted per pass of the loop. 100: so that the default
# max_connections (512), a burst and the reserve fit the usual limit of 1024.
ACCEPT_BACKLOG = 100
ACCEPT_BURST = 4 * ACCEPT_BACKLOG  # descriptors accepted and not yet closed, at most (see above)


class EpisodeLog:
    """Reports one kind of overload in at most one line per `interval` seconds: a line when it starts,
    a line with the count every interval while it lasts, a line with the total once an interval passes
    without it. Call `note` from the event loop's thread."""

    def __init__(self, start: str, ongoing: str, end: str, *, interval: float = 10.0,
                 logger: logging.Logger = log) -> None:
        self.start, self.ongoing, self.end = start, ongoing, end  # str.format templates, see note()
        self.interval, self.logger = interval, logger
        self._tick: asyncio.TimerHandle | None = None
        self._began = 0.0
        self._recent = self._total = 0
        self._details: dict[str, Any] = {}

    def note(self, **details: Any) -> None:
        """One more occurrence; the first of an episode gives the `details` its lines' templates name."""
        self._recent += 1
        self._total += 1
        if self._tick is None:
            loop = asyncio.get_running_loop()
            self._began = loop.time()
            self._recent, self._details = 0, details
            self.logger.warning(self.start.format(**details))
            self._tick = loop.call_later(self.interval, self._on_tick, loop)

    def _on_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._recent:
            self.logger.warning(self.ongoing.format(**self._details, count=self._recent, seconds=self.interval))
            self._recent = 0
            self._tick = loop.call_later(self.interval, self._on_tick, loop)
            return
        self.logger.warning(self.end.format(**self._details, total=self._total, seconds=loop.time() - self._began))
        self._tick, self._total = None, 0


def accept_failures() -> EpisodeLog:
    return EpisodeLog(
        "receiver: out of {resource} ({error}, RLIMIT_NOFILE {limit}): new connections wait in the kernel's "
        "queue and are accepted again once some are free (retried every second); raise the limit or lower "
        "receiver.max_connections",
        "receiver: out of {resource}: accept() refused {count} times in the last {seconds:g} s",
        "receiver: accepting connections again; accept() was refused {total} times over {seconds:.0f} s")


def connection_refusals(max_connections: int) -> EpisodeLog:
    return EpisodeLog(
        f"receiver: {max_connections} connections open (receiver.max_connections): new connections are "
        "answered 503 and closed until some of these end",
        "receiver: at receiver.max_connections: {count} connections answered 503 in the last {seconds:g} s",
        "receiver: below receiver.max_connections again; {total} connections were answered 503 over "
        "{seconds:.0f} s")


# uvicorn's warnings that any client can cause, one per request (uvicorn/protocols/http/h11_impl.py).
CLIENT_WARNINGS = frozenset({
    "Invalid HTTP request received.", "Unsupported upgrade request.",
    "No supported WebSocket library detected. Please use \"pip install 'uvicorn[standard]'\", or install "
    "'websockets' or 'wsproto' manually."})


class RepeatFilter(logging.Filter):
    """Passes a record whose message is one of `messages` at most once per `interval` seconds (per
    message), saying how many it held back since the last one; every other record passes."""

    def __init__(self, messages: frozenset[str] = CLIENT_WARNINGS, interval: float = 10.0) -> None:
        super().__init__()
        self.messages, self.interval = messages, interval
        self._seen: dict[str, tuple[float, int]] = {}  # message -> (when it last passed, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or record.msg not in self.messages:
            return True
        now = time.monotonic()
        last, held = self._seen.get(record.msg, (-self.interval, 0))
        if now - last < self.interval:
            self._seen[record.msg] = (last, held + 1)
            return False
        self._seen[record.msg] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more in the last {now - last:.0f} s not logged)"
        return True


def install_repeat_filter(logger: logging.Logger) -> None:
    """Add a RepeatFilter to `logger` once, however many servers a process starts."""
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())


def install_accept_guard(loop: asyncio.AbstractEventLoop, episodes: EpisodeLog) -> None:
    """Route asyncio's report of a failed accept() to `episodes`; every other context goes to the
    handler that was installed before (or asyncio's default), as it did."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if (context.get("message") == ACCEPT_OUT_OF_RESOURCE and isinstance(exc, OSError)
                and exc.errno in ACCEPT_ERRNOS):
            episodes.note(error=f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}",
                          resource="file descriptors" if exc.errno in (errno.EMFILE, errno.ENFILE) else "memory",
                          limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def check_descriptors(max_connections: int) -> str | None:
    """Make RLIMIT_NOFILE's soft limit at least what `max_connections` needs (descriptor_need) if the
    hard limit allows; a warning (one line) when it stays lower, else None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = descriptor_need(max_connections)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY or hard >= needed else hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft >= needed:
        return None
    fits = soft - descriptor_need(0)
    return (f"warning: receiver.max_connections = {max_connections} needs about {needed} file descriptors "
            f"(with {ACCEPT_BURST} for connections being accepted and {DESCRIPTOR_RESERVE} for the process), but "
            f"this process may open only {soft} (RLIMIT_NOFILE, hard limit {hard}): past that, new connections "
            f"wait until descriptors free up. Raise the limit to {needed} (ulimit -n, systemd LimitNOFILE=, "
            f"docker --ulimit nofile=)" + (f" or lower receiver.max_connections to {fits}" if fits >= 1 else ""))


def descriptor_need(max_connections: int) -> int:
    """File descriptors a receiver with this max_connections may hold at once."""
    return max_connections + ACCEPT_BURST + DESCRIPTOR_RESERVE
