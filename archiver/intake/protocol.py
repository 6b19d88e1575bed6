"""uvicorn's h11 HTTP protocol with the bounds a receiver facing the Internet needs.

What uvicorn 0.54 (uvicorn/protocols/http/h11_impl.py) does on its own, and what is added here:

- Keep-alive. `H11Protocol.on_response_complete` arms `timeout_keep_alive` after a response, and
  `data_received` cancels it on the first byte that arrives. So a connection that never sends a
  request has no timer at all, and one that sends a byte after a response and then stalls has none
  either. Added: a header deadline, armed at `connection_made` and again at every response, disarmed
  when h11 has parsed a whole request line and headers (a new `RequestResponseCycle`).
- Bodies. Nothing bounds how long a body may take, whether the application reads it or not (a route
  that answers without reading leaves the rest to trickle into `handle_events`, where h11 drops it).
  Added: a body deadline, armed when the headers are complete and a body follows (h11's
  `their_state` is SEND_BODY), disarmed when h11 has the whole body: `body_timeout` seconds in all,
  and `min_body_rate` bytes per second averaged over the body so far (from BODY_RATE_GRACE on).
- Connections. `limit_concurrency` (checked in `handle_events`, only once a request's headers are
  complete, counting `server_state.connections` and `server_state.tasks`) answers 503 to a request,
  but accepts and keeps every connection that never completes one: it does not bound descriptors.
  Added: `max_connections`, checked in `connection_made` before uvicorn registers the connection.
  One more connection gets a canned 503 (Retry-After, Connection: close) written at once, without
  reading its request, and is closed: it holds a descriptor for one loop iteration, not a timeout.

Answers: a request whose headers or body come too slowly gets 408 with Connection: close, and the
connection is closed; a connection that sent nothing is just closed (the client sees EOF). The
application sees a cut-off body as a disconnect (Starlette raises ClientDisconnect from the stream).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from archiver.intake.overload import EpisodeLog
from archiver.settings.config import ReceiverSettings

BODY_RATE_GRACE = 2.0  # seconds after the headers before min_body_rate is applied


def raw_response(status: int, reason: str, error: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, as bytes: written outside h11, which
    cannot answer before it has parsed a request."""
    body = json.dumps({"error": error}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in headers), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """One HTTP connection. Subclassed per server by `guarded_protocol` to carry its settings."""

    limits: ClassVar[ReceiverSettings] = ReceiverSettings()
    refusals: ClassVar[EpisodeLog | None] = None  # one rate-limited line per max_connections episode
    busy_answer: ClassVar[bytes] = b""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._received = 0  # bytes read from the client on this connection
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_clock: tuple[float, int] | None = None  # (loop time the headers were complete, _received then)

    # -- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Before uvicorn sets anything up: nothing of this connection is registered or read.
            self._refused = True
            transport.write(self.busy_answer)
            transport.close()  # asyncio flushes the few bytes written first
            if self.refusals is not None:
                self.refusals.note()
            return
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.transport.is_closing():
            return
        if self.cycle is not cycle:  # h11 parsed a request line and headers: a new cycle was started
            self._stop_timers()
            if self.conn.their_state is h11.SEND_BODY:
                # Body bytes that came with the headers are in the new cycle's buffer already (its
                # application task has not run yet): count them as received.
                self._body_clock = (self.loop.time(), self._received - len(self.cycle.body))
                self._body_timer = self.loop.call_later(self._body_due(0), self._body_check)
        elif self._body_clock is not None and self.conn.their_state is not h11.SEND_BODY:
            self._body_clock = None  # the whole body is in
            _cancel(self._body_timer)
            self._body_timer = None

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            # Armed before uvicorn handles a pipelined request, whose headers then disarm it again.
            self._arm_header_deadline()
        super().on_response_complete()

    def _stop_timers(self) -> None:
        _cancel(self._header_timer)
        _cancel(self._body_timer)
        self._header_timer = self._body_timer = None
        self._body_clock = None

    # -- headers ---------------------------------------------------------------------------------

    def _arm_header_deadline(self) -> None:
        _cancel(self._header_timer)
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        started = self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])
        if started:  # part of a request line or headers came: say why it ends
            self.transport.write(raw_response(
                408, "Request Timeout", f"request line and headers not received within "
                                        f"{self.limits.header_timeout:g} s"))
        self.transport.close()  # nothing came (or the answer was sent): the client sees EOF

    # -- body ------------------------------------------------------------------------------------

    def _body_due(self, received: int) -> float:
        """Seconds after the headers by which the body must be complete, given `received` bytes of it."""
        due = self.limits.body_timeout
        if self.limits.min_body_rate > 0:
            due = min(due, BODY_RATE_GRACE + received / self.limits.min_body_rate)
        return due

    def _body_check(self) -> None:
        self._body_timer = None
        if self._body_clock is None or self.transport.is_closing():
            return
        started, at = self._body_clock
        elapsed, received = self.loop.time() - started, self._received - at
        due = self._body_due(received)
        if elapsed < due:  # enough came since the last check: look again when it would be late
            self._body_timer = self.loop.call_later(due - elapsed, self._body_check)
            return
        if elapsed >= self.limits.body_timeout:
            why = f"request body not received within {self.limits.body_timeout:g} s"
        else:
            why = (f"request body arriving slower than {self.limits.min_body_rate} bytes/s "
                   f"({received} bytes in {elapsed:.1f} s)")
        self._cut_off_body(why)

    def _cut_off_body(self, why: str) -> None:
        """408 and close, if no answer was started; the application's reads then end (http.disconnect)
        and whatever it still sends is dropped (uvicorn's RequestResponseCycle.send checks
        `disconnected`)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.disconnected = True
            cycle.message_event.set()
            body = json.dumps({"error": why}).encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(body))),
                       ("connection", "close")]
            try:
                self.transport.write(self.conn.send(h11.Response(status_code=408, headers=headers,
                                                                 reason=b"Request Timeout")))
                self.transport.write(self.conn.send(h11.Data(data=body)))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:  # h11 would not frame it: closing says enough
                pass
        self.transport.close()


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()


def guarded_protocol(limits: ReceiverSettings, refusals: EpisodeLog | None = None) -> type[GuardedH11Protocol]:
    """The protocol class to pass as uvicorn.Config(http=...) for a server with these settings."""
    retry_after = str(max(1, math.ceil(limits.header_timeout)))  # held connections are gone by then
    busy = raw_response(503, "Service Unavailable",
                        f"too many open connections (receiver.max_connections = {limits.max_connections}); "
                        f"retry after {retry_after} s", (("Retry-After", retry_after),))
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"limits": limits, "refusals": refusals, "busy_answer": busy})
