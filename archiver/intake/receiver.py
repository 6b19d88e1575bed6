"""The ASGI receiver: POST {path} for VideoSDK webhooks, /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archiver.intake.endpoint import Receive, Scope, Send, WebhookEndpoint
from archiver.intake.openapi import openapi_document
from archiver.intake.relay import Relay, unsent_before
from archiver.intake.signature import KeyCache, KeyUnavailable
from archiver.intake.webhook import WebhookIntake
from archiver.ledger.store import Ledger, utcnow
from archiver.observability.redaction import mask_url
from archiver.settings.config import Settings

log = logging.getLogger("archiver.receiver")
KEY_PATH = "/public/rsa-public-key"  # below [videosdk] api_base (archiver.videosdk.api public_key)
RELAY_STOP_SECONDS = 5.0  # at shutdown, how long the relay may take to put what it holds on the broker


def key_cache(settings: Settings) -> KeyCache | None:
    if not settings.videosdk.verify_signatures:
        return None
    if settings.videosdk.webhook_public_key:
        from archiver.intake.signature import load_public_key

        load_public_key(settings.videosdk.webhook_public_key)  # fail at start, not on the first webhook
        return KeyCache(static_pem=settings.videosdk.webhook_public_key)

    def fetch() -> str:
        from archiver.videosdk.api import VideoSDKClient, VideoSDKError

        with VideoSDKClient.from_settings(settings) as client:
            try:
                return client.public_key()
            except VideoSDKError as exc:  # names the method and path, never a token (archiver.videosdk.api)
                url = f"{client.api_base}{KEY_PATH}"
                cause = str(exc).removeprefix(f"GET {KEY_PATH}: ")
                raise KeyUnavailable(f"GET {mask_url(url)} failed: {cause}; to verify webhooks without fetching "
                                     f"the key, set [videosdk] webhook_public_key "
                                     f"(ARCHIVER_VIDEOSDK_WEBHOOK_PUBLIC_KEY) to VideoSDK's public key "
                                     f"(PEM text or a file path)") from None

    return KeyCache(fetch=fetch, min_refetch_seconds=settings.videosdk.key_refetch_seconds)


def relay_for(publisher: Any) -> Relay:
    """The relay of `publisher`: one broker message per batch where it offers `relay` (a worker fans
    the batch out, archiver.worker.relay), else its `copies` and `lookups` per batch."""
    batch = getattr(publisher, "relay", None)
    if batch is not None:
        return Relay(batch)

    def each(copies: Any, lookups: Any) -> None:
        if copies:
            publisher.copies(copies)
        if lookups:
            publisher.lookups(lookups)
    return Relay(each)


class Unpublished(Collector):
    """archiver_intake_unpublished: jobs and lookups this receiver process accepted and has not yet put
    on the broker (grows while the broker is down; the relay sends them when it is back)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("archiver_intake_unpublished", "Accepted jobs and lookups of this receiver process "
                                "not yet on the broker", value=float(self.relay.pending()))


class KeyAvailable(Collector):
    """archiver_signature_key_available: 1 when the webhook public key is at hand, 0 when it could not
    be fetched (every signed webhook is then refused)."""

    def __init__(self, keys: KeyCache) -> None:
        self.keys = keys

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("archiver_signature_key_available", "1 when the webhook public key is at hand, "
                                "0 when it could not be fetched (every signed webhook is then refused)",
                                value=1.0 if self.keys.available() else 0.0)


class Receiver(Starlette):
    """Starlette for everything but POST {path}, which goes straight to the WebhookEndpoint."""

    def __init__(self, webhook: WebhookEndpoint, path: str, **options: Any) -> None:
        super().__init__(**options)
        self.webhook, self.webhook_path = webhook, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.webhook_path and scope["method"] == "POST":
            await self.webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _unreachable(_: Request) -> Response:
    raise AssertionError("POST to the webhook path is served by Receiver.__call__")


def create_receiver(settings: Settings, ledger: Ledger, *, publisher: Any,
                    ledger_ping: Callable[[], None] | None = None, shared_metrics: bool = False) -> Starlette:
    """The receiver's ASGI app. `shared_metrics`: one of several receiver processes (archiver.intake.
    processes), whose /metrics serves the sum over all of them (prometheus_client multiprocess files)."""
    keys = key_cache(settings)
    relay = relay_for(publisher)
    started = utcnow()  # this process's start: work accepted before it may have died unsent with another
    intake = WebhookIntake(settings, ledger, publish_copies=publisher.copies, publish_lookups=publisher.lookups,
                           keys=keys, relay=relay)
    registry = CollectorRegistry()
    requests = Counter("archiver_webhook_requests", "Webhook requests by HTTP status and webhook type",
                       ["status", "webhook_type"], registry=registry)
    latency = Histogram("archiver_webhook_seconds", "Time to answer a webhook", registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
    # Computed at scrape time by this process (a collector, not a Gauge: with several receiver
    # processes a Gauge would also leave a file per process that the summed view would repeat).
    local = registry if not shared_metrics else CollectorRegistry()
    if keys is not None:  # absent when signatures are not verified: no key is needed then
        local.register(KeyAvailable(keys))
    local.register(Unpublished(relay))

    def exposition() -> bytes:
        if not shared_metrics:
            return generate_latest(registry)
        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)
        return generate_latest(summed) + generate_latest(local)
    def observe(status: int, webhook_type: str, seconds: float | None) -> None:
        requests.labels(str(status), webhook_type).inc()
        if seconds is not None:
            latency.observe(seconds)

    limit = settings.receiver.max_body_bytes
    webhook = WebhookEndpoint(intake.handle, limit=limit, observe=observe,
                              threads=1 if settings.database_url.startswith("sqlite") else 4)

    async def readyz(_: Request) -> Response:
        checks: dict[str, str] = {}
        for name, probe in (("broker", publisher.ping), ("ledger", ledger_ping or ledger.ping)):
            try:
                await run_in_threadpool(probe)
                checks[name] = "ok"
            except Exception as exc:  # any failure: say which and why
                checks[name] = f"unreachable: {type(exc).__name__}"
        # Webhooks are accepted without the broker (the relay sends their work when it is back): a broker
        # outage is named, with what waits for it, but is no reason to send webhooks elsewhere.
        if checks["broker"] != "ok":
            checks["broker"] += f" (webhooks are still accepted; {relay.pending()} jobs wait for it)"
        if keys is not None:  # without the signing key every webhook is refused: not ready
            problem = keys.unavailable()
            if problem is not None:
                keys.prefetch()
            checks["webhook_key"] = "ok" if problem is None else f"unavailable: {problem}"
        ready = all(v == "ok" for k, v in checks.items() if k != "broker")
        return JSONResponse(checks, 200 if ready else 503)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def metrics(_: Request) -> Response:
        # In a thread: the key gauge may fetch the key (rarely; see KeyCache.available).
        return Response(await run_in_threadpool(exposition), media_type=CONTENT_TYPE_LATEST)

    document = openapi_document(settings.receiver.path, limit)

    async def openapi(_: Request) -> Response:
        return JSONResponse(document)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if keys is not None:
            keys.prefetch()  # at start: the log says at once whether the signing key can be had
        relay.catch_up(unsent_before(ledger, started, settings.retry.requeue_after))
        yield
        await run_in_threadpool(relay.close, RELAY_STOP_SECONDS)  # what it holds, to the broker
        webhook.close()
        intake.fresh.close()

    return Receiver(webhook, settings.receiver.path, lifespan=lifespan, routes=[
        Route(settings.receiver.path, _unreachable, methods=["POST"]),  # listed (OpenAPI, tests): Receiver serves it
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ])
