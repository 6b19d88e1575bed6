"""The webhook route as a plain ASGI callable: the one request the receiver serves at rate.

Starlette's request object, router, middleware stack and JSONResponse, and anyio's worker-thread hop,
cost more of the receiver's CPU per webhook than parsing its JSON (py-spy, bench.intake). Here the body
is read from the ASGI messages, the intake runs on a small ThreadPoolExecutor of the event loop, and
the answer is two ASGI messages. Everything else (/readyz, /metrics, ...) stays on Starlette
(archiver.intake.receiver sends only POST {path} here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from archiver.intake.webhook import SIGNATURE_HEADER, Answer

log = logging.getLogger("archiver.receiver")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Observe = Callable[[int, str, float | None], None]  # (status, webhook type, seconds to answer if handled)
SIGNATURE = SIGNATURE_HEADER.encode()


class BodyTooLarge(Exception):
    pass


class Disconnected(Exception):
    """The client closed the connection, or the server cut off a body that came too slowly (and answered
    408: archiver.intake.protocol), before the body's end."""


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit`: by its Content-Length before a
    byte is read, or while streaming when the length is not declared."""
    for name, value in scope["headers"]:
        if name == b"content-length" and (not value.isdigit() or int(value) > limit):
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer(send: Send, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() if body is not None else b""
    raw = [(b"content-length", str(len(content)).encode()),
           *([(b"content-type", b"application/json")] if body is not None else []),
           *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


class WebhookEndpoint:
    """POST {path}: `handle(raw body, headers)` (WebhookIntake.handle) on at most `threads` threads."""

    def __init__(self, handle: Callable[[bytes, dict[str, str]], Answer], *, limit: int, threads: int,
                 observe: Observe) -> None:
        self.handle, self.limit, self.observe = handle, limit, observe
        # Not anyio's shared 40 threads: SQLite takes one writer at a time, so more threads only wait in
        # its busy handler (sleeps of up to 100 ms) and fight over the GIL. (4 for PostgreSQL is a
        # guess, not a measurement.)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="intake")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            raw = await read_body(scope, receive, self.limit)
        except BodyTooLarge:
            self.observe(413, "-", None)
            await answer(send, 413, {"error": f"body larger than {self.limit} bytes"}, {"Connection": "close"})
            return
        except Disconnected:
            # Nobody is left to answer; an exception here would be logged with a traceback per request.
            log.info("webhook body not received: the connection was closed before its end")
            await answer(send, 400, None)
            return
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == SIGNATURE:  # the first one, as Starlette's headers.get
                headers.setdefault(SIGNATURE_HEADER, value.decode("latin-1"))
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, self.handle, raw, headers)
        except Exception:  # a fault of ours: 500, logged with its traceback, as Starlette would
            log.exception("webhook not handled")
            self.observe(500, "-", None)
            await answer(send, 500, {"error": "internal error"})
            return
        self.observe(result.status, result.webhook_type, time.perf_counter() - started)
        if result.status >= 400:
            log.info("webhook refused with %s: %s", result.status, result.body.get("error"))
        await answer(send, result.status, result.body, result.headers)

    def close(self) -> None:
        self.executor.shutdown(wait=False)
