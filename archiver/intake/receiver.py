"""The ASGI receiver: POST {path} for VideoSDK webhooks, /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archiver.intake.openapi import openapi_document
from archiver.intake.signature import KeyCache
from archiver.intake.webhook import WebhookIntake
from archiver.ledger.store import Ledger
from archiver.settings.config import Settings

log = logging.getLogger("archiver.receiver")


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit`: by its Content-Length before a
    byte is read, or while streaming when the length is not declared."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def key_cache(settings: Settings) -> KeyCache | None:
    if not settings.videosdk.verify_signatures:
        return None
    if settings.videosdk.webhook_public_key:
        from archiver.intake.signature import load_public_key

        load_public_key(settings.videosdk.webhook_public_key)  # fail at start, not on the first webhook
        return KeyCache(static_pem=settings.videosdk.webhook_public_key)

    def fetch() -> str:
        from archiver.videosdk.api import VideoSDKClient

        with VideoSDKClient.from_settings(settings) as client:
            return client.public_key()

    return KeyCache(fetch=fetch, min_refetch_seconds=settings.videosdk.key_refetch_seconds)


def create_receiver(settings: Settings, ledger: Ledger, *, publisher: Any,
                    ledger_ping: Callable[[], None] | None = None) -> Starlette:
    intake = WebhookIntake(settings, ledger, publish_copies=publisher.copies, publish_lookups=publisher.lookups,
                           keys=key_cache(settings))
    registry = CollectorRegistry()
    requests = Counter("archiver_webhook_requests", "Webhook requests by HTTP status and webhook type",
                       ["status", "webhook_type"], registry=registry)
    latency = Histogram("archiver_webhook_seconds", "Time to answer a webhook", registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
    limit = settings.receiver.max_body_bytes
    limiters: list[anyio.CapacityLimiter] = []

    def intake_threads() -> anyio.CapacityLimiter:
        # Made on first use, inside the event loop. Not anyio's shared 40 threads: SQLite takes one
        # writer at a time, so more threads only wait in its busy handler (sleeps of up to 100 ms)
        # and fight over the GIL. (4 for PostgreSQL is a guess, not a measurement.)
        if not limiters:
            limiters.append(anyio.CapacityLimiter(1 if settings.database_url.startswith("sqlite") else 4))
        return limiters[0]

    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        try:
            raw = await read_body(request, limit)
        except BodyTooLarge:
            requests.labels("413", "-").inc()
            return JSONResponse({"error": f"body larger than {limit} bytes"}, 413, headers={"Connection": "close"})
        except ClientDisconnect:
            # The client closed the connection, or the server cut off a body that came too slowly (and
            # answered 408: archiver.intake.protocol). Nobody is left to answer; unhandled, this
            # would be logged with a traceback for every such request.
            log.info("webhook body not received: the connection was closed before its end")
            return Response(status_code=400)
        answer = await anyio.to_thread.run_sync(intake.handle, raw, request.headers, limiter=intake_threads())
        requests.labels(str(answer.status), answer.webhook_type).inc()
        latency.observe(time.perf_counter() - started)
        if answer.status >= 400:
            log.info("webhook refused with %s: %s", answer.status, answer.body.get("error"))
        return JSONResponse(answer.body, answer.status, headers=answer.headers)

    async def readyz(_: Request) -> Response:
        checks: dict[str, str] = {}
        for name, probe in (("broker", publisher.ping), ("ledger", ledger_ping or ledger.ping)):
            try:
                await run_in_threadpool(probe)
                checks[name] = "ok"
            except Exception as exc:  # any failure means not ready; say which and why
                checks[name] = f"unreachable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(checks, 200 if ready else 503)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    document = openapi_document(settings.receiver.path, limit)

    async def openapi(_: Request) -> Response:
        return JSONResponse(document)

    return Starlette(routes=[
        Route(settings.receiver.path, webhook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ])
