"""New work of accepted webhooks, put on the broker after the commit, in batches, off the request path.

A 202 means the event, its files and its jobs are committed in the ledger: the ledger, not a broker
message, is what makes a webhook durable (the pending job is the outbox row). After the commit the
receiver hands the new job and lookup ids to a `Relay`, whose thread sends them in batches: with
the receiver's publisher, one broker message per batch, which a worker turns into one message per
job (archiver.worker.relay). So a webhook costs the receiver neither a broker round trip nor a
Celery message of its own, and a broker outage does not refuse webhooks: the ids wait here and are
sent when the broker is back (retries with backoff up to MAX_BACKOFF).

What can go wrong, and why nothing is lost or done twice:
- the process dies before sending them: the jobs stay pending in the ledger, and the next receiver
  process to start sends them (`catch_up`: the never-started pending work created before it started,
  within the last requeue_after, at most CATCH_UP_MAX of each kind, oldest first); the lease sweeper
  enqueues anything older or beyond that after [retry] requeue_after_seconds, as it does for ids
  dropped past MAX_HELD;
- a batch is sent twice (the broker took it, then the send raised), a fan-out is redelivered, or
  `catch_up` sends work whose message is still on the broker (nothing records "sent"): a worker claims
  a job only while it is pending (Ledger.claim) and starts a lookup only while it is pending
  (Lookups.start), so a second message is skipped (at worst it starts a retry before its backoff ends).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from archiver.ledger.store import Ledger
from archiver.ledger.unpublished import never_started

log = logging.getLogger("archiver.receiver")

# (copy job ids, lookup ids) -> None; raises when the broker cannot take them (nothing is then assumed sent)
Send = Callable[[Sequence[int], Sequence[int]], None]

LINGER = 0.05  # seconds a batch waits for more ids once one came: fewer, larger messages under load
MAX_BATCH = 500  # ids per message
MIN_BACKOFF, MAX_BACKOFF = 0.5, 10.0  # seconds between two tries while the broker refuses
MAX_HELD = 1_000_000  # ids held while the broker is down (~40 MB); older ones are left to the sweeper
CATCH_UP_MAX = 10_000  # jobs (and lookups) a starting process sends again; the rest is the sweeper's
# () -> (copy job ids, lookup ids) to send again once, when the relay starts
Find = Callable[[], tuple[Sequence[int], Sequence[int]]]


def unsent_before(ledger: Ledger, started: datetime, requeue_after: float) -> Find:
    """What receiver processes that died before `started` (this one's start) may have held unsent:
    pending work no worker ever started, created before `started`, changed within the last
    `requeue_after` seconds (older is the sweeper's)."""
    return lambda: never_started(ledger.reads, since=started - timedelta(seconds=requeue_after), before=started,
                                 limit=CATCH_UP_MAX)


class Relay:
    """Ids handed over by `add` (any thread), sent by one daemon thread started on first use (so a
    receiver process forked after building its app runs its own). `flush` waits until all are sent."""

    def __init__(self, send: Send, *, linger: float = LINGER, max_batch: int = MAX_BATCH,
                 max_held: int = MAX_HELD) -> None:
        self._send = send
        self.linger, self.max_batch, self.max_held = linger, max_batch, max_held
        self._copies: deque[int] = deque()
        self._lookups: deque[int] = deque()
        self._in_flight = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._problem: str | None = None  # why the last send failed, while it keeps failing
        self.sent = 0  # ids sent so far
        self.dropped = 0  # ids given up (MAX_HELD, or still held at close): the sweeper's

    def add(self, copies: Sequence[int], lookups: Sequence[int] = ()) -> None:
        """Queue new work for the broker; returns at once and never raises."""
        if not copies and not lookups:
            return
        with self._changed:
            self._copies.extend(copies)
            self._lookups.extend(lookups)
            if (over := len(self._copies) + len(self._lookups) - self.max_held) > 0:
                self._drop(over)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="intake-relay", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def catch_up(self, find: Find) -> threading.Thread:
        """Send once the ids `find` returns, found in a thread of their own (the receiver serves
        meanwhile; returned, to be joined by tests). If `find` fails (the ledger is down), the sweeper
        has them later."""
        thread = threading.Thread(target=self._add_found, args=(find,), name="intake-relay-catch-up", daemon=True)
        thread.start()
        return thread

    def _add_found(self, find: Find) -> None:
        try:
            copies, lookups = find()
        except Exception as exc:
            log.warning("could not look for accepted work a stopped receiver process may not have put on the "
                        "broker (%s: %s); the sweeper enqueues it after [retry] requeue_after_seconds",
                        type(exc).__name__, (str(exc).splitlines() or [""])[0][:200])
            return
        if copies or lookups:
            log.info("putting on the broker %d jobs and %d lookups that were pending, never started, when this "
                     "receiver process started (a stopped one may have held them unsent)", len(copies), len(lookups))
            self.add(copies, lookups)

    def pending(self) -> int:
        """Ids accepted and not yet on the broker (being sent included)."""
        with self._changed:
            return len(self._copies) + len(self._lookups) + self._in_flight

    def problem(self) -> str | None:
        """Why sending fails (the broker is unreachable), while ids wait; None when it works."""
        with self._changed:
            return self._problem

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until every id added so far is sent; whether they were."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._copies or self._lookups or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._changed.wait(left)
            return True

    def close(self, timeout: float) -> None:
        """Send what is held (up to `timeout` seconds), then stop; what is left is the sweeper's."""
        self.flush(timeout)
        with self._changed:
            self._closed = True
            left = len(self._copies) + len(self._lookups)
            self._changed.notify_all()
        if left:
            self.dropped += left
            log.warning("%d accepted jobs/lookups were not put on the broker before the receiver stopped; they "
                        "are pending in the ledger and the sweeper enqueues them", left)

    def _drop(self, count: int) -> None:
        for _ in range(count):
            (self._copies or self._lookups).popleft()
        self.dropped += count
        log.warning("more than %d accepted jobs wait for the broker: %d oldest left to the sweeper",
                    self.max_held, count)

    def _take(self) -> tuple[list[int], list[int]] | None:
        with self._changed:
            while not (self._copies or self._lookups):
                if self._closed:
                    return None
                self._changed.wait()
        if self.linger > 0:
            time.sleep(self.linger)  # let the batch fill: one message for many webhooks
        with self._changed:
            copies = [self._copies.popleft() for _ in range(min(self.max_batch, len(self._copies)))]
            lookups = [self._lookups.popleft() for _ in range(min(self.max_batch - len(copies), len(self._lookups)))]
            self._in_flight = len(copies) + len(lookups)
            return copies, lookups

    def _run(self) -> None:
        backoff = 0.0
        while (batch := self._take()) is not None:
            copies, lookups = batch
            try:
                self._send(copies, lookups)
            except Exception as exc:  # the broker is down or refused: keep the ids, try again later
                backoff = min(MAX_BACKOFF, max(MIN_BACKOFF, backoff * 2))
                with self._changed:
                    self._copies.extendleft(reversed(copies))
                    self._lookups.extendleft(reversed(lookups))
                    self._in_flight = 0
                    first = self._problem is None
                    self._problem = type(exc).__name__
                    self._changed.notify_all()
                    if first:  # one line per outage, not one per try
                        log.warning("cannot put accepted work on the broker (%s: %s); webhooks are still accepted, "
                                    "%d jobs/lookups wait and are sent when it is back", type(exc).__name__, exc,
                                    len(self._copies) + len(self._lookups))
                    self._changed.wait(backoff)  # close() wakes it
                    if self._closed:
                        return
                continue
            backoff = 0.0
            with self._changed:
                self.sent += self._in_flight
                self._in_flight = 0
                if self._problem is not None:
                    log.info("the broker takes accepted work again (%d waiting)",
                             len(self._copies) + len(self._lookups))
                    self._problem = None
                self._changed.notify_all()
