"""The load generator, run as its own process so its CPU is not the receiver's.

    python -m bench.loadgen --url URL --key PRIVATE.pem --prefix P --out RESULT.json
        (--rate R --duration S | --closed K --count N [--duration S]) [--warmup N]

It signs N distinct bodies (one recording-stopped each, its own meetingId, so none is a duplicate)
before the clock starts, then sends them with httpx.AsyncClient over a pool of keep-alive
connections:
  open loop (--rate): request i is due at start + i/R whatever happened before; its latency runs
    from that due time to the response, so a server that falls behind shows its queue (no
    coordinated omission);
  closed loop (--closed K): K connections each send the next body as soon as the last answered;
    the rate it reaches is the maximum; latency runs from send to response.
The result file holds the status counts, latency percentiles and, for every 202, its event and job
ids (the caller checks them against the ledger and the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from archiver.intake.signature import sign_body
from bench.loadreport import cpu_seconds, ms, percentile

Item = tuple[bytes, str]


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat: others' load shows here."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz  # minus idle and iowait


def signed_bodies(key: RSAPrivateKey, prefix: str, count: int, cdn: str, size: int) -> list[Item]:
    items = []
    for i in range(count):
        meeting = f"{prefix}-{i:06d}"
        raw = json.dumps({"webhookType": "recording-stopped",
                          "data": {"meetingId": meeting, "sessionId": f"{prefix}-session",
                                   "filePath": f"/encoded/videos/{meeting}.mp4",
                                   "fileUrl": f"{cdn}/files/{meeting}.mp4?size={size}"}}).encode()
        items.append((raw, sign_body(raw, key)))
    return items


Post = Callable[[bytes, str], Awaitable[tuple[int, bytes]]]


class RawPool:
    """Minimal HTTP/1.1 keep-alive client: `size` connections, one request each at a time, bodies
    framed by Content-Length. httpx's pool costs several ms of client CPU per request once dozens
    of connections are busy (encode/httpx#3215), which would make the client the bottleneck."""

    def __init__(self, url: str, size: int, timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        self.timeout = timeout
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
        for _ in range(size):
            self.idle.put_nowait(None)  # opened on first use

    async def post(self, raw: bytes, signature: str) -> tuple[int, bytes]:
        conn = await self.idle.get()
        try:
            async with asyncio.timeout(self.timeout):
                if conn is None:
                    conn = await asyncio.open_connection(self.host, self.port)
                reader, writer = conn
                writer.write(f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                             f"Content-Type: application/json\r\nvideosdk-signature: {signature}\r\n"
                             f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                status = int(head.split(" ", 2)[1])
                length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
                body = await reader.readexactly(length)
                if "connection: close" in head:
                    writer.close()
                    conn = None
            return status, body
        except BaseException:
            if conn is not None:
                conn[1].close()
            conn = None
            raise
        finally:
            self.idle.put_nowait(conn)

    async def close(self) -> None:
        while not self.idle.empty():
            conn = self.idle.get_nowait()
            if conn is not None:
                conn[1].close()


def httpx_post(client: httpx.AsyncClient, url: str) -> Post:
    async def post(raw: bytes, signature: str) -> tuple[int, bytes]:
        response = await client.post(url, content=raw, headers={"content-type": "application/json",
                                                                 "videosdk-signature": signature})
        return response.status_code, response.content

    return post


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    accepted: list[tuple[int, list[int]]] = field(default_factory=list)
    first_due: float = math.inf
    last_done: float = 0.0
    max_lag: float = 0.0  # how late the open-loop dispatcher itself was (client saturation)

    async def send(self, post: Post, item: Item, due: float) -> None:
        loop = asyncio.get_running_loop()
        self.first_due = min(self.first_due, due)
        try:
            code, body = await post(*item)
            status = str(code)
            if code == 202:
                answer = json.loads(body)
                self.accepted.append((int(answer["event_id"]), [int(j) for j in answer["jobs"]]))
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, httpx.HTTPError) as exc:
            status = type(exc).__name__
        done = loop.time()
        self.last_done = max(self.last_done, done)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(done - due)

    def summary(self) -> dict[str, Any]:
        sent = sum(self.statuses.values())
        elapsed = self.last_done - self.first_due if sent else 0.0
        ok = self.statuses.get("202", 0)
        return {"sent": sent, "seconds": round(elapsed, 3), "statuses": self.statuses,
                "achieved_per_s": round(ok / elapsed, 1) if elapsed > 0 else None,
                "p50_ms": ms(percentile(self.latencies, 50)), "p90_ms": ms(percentile(self.latencies, 90)),
                "p99_ms": ms(percentile(self.latencies, 99)), "max_ms": ms(max(self.latencies, default=None)),
                "dispatch_lag_max_ms": ms(self.max_lag), "accepted": self.accepted}


async def open_loop(post: Post, items: list[Item], rate: float, pool: int) -> Tally:
    loop, tally = asyncio.get_running_loop(), Tally()
    # Requests beyond `pool` in flight wait here, in order and untimed (their latency still runs from
    # their due time), not in httpx's pool, which degrades badly with thousands of waiters.
    gate = asyncio.Semaphore(pool)

    async def when_free(item: Item, due: float) -> None:
        async with gate:
            await tally.send(post, item, due)

    start = loop.time() + 0.05
    tasks = []
    for i, item in enumerate(items):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            tally.max_lag = max(tally.max_lag, -delay)
        tasks.append(asyncio.create_task(when_free(item, due)))
    await asyncio.gather(*tasks)
    return tally


async def closed_loop(post: Post, items: list[Item], connections: int, duration: float | None) -> Tally:
    loop, tally = asyncio.get_running_loop(), Tally()
    pending = iter(items)
    stop_at = loop.time() + duration if duration else math.inf

    async def connection() -> None:
        for item in pending:  # one iterator shared by all: each body is sent once
            if loop.time() >= stop_at:
                return
            await tally.send(post, item, loop.time())

    await asyncio.gather(*(connection() for _ in range(connections)))
    return tally


async def run(args: argparse.Namespace, items: list[Item], warmup: list[Item]) -> dict[str, Any]:
    pool = args.closed or args.pool
    async with contextlib.AsyncExitStack() as stack:
        if args.client == "httpx":
            limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
            post = httpx_post(await stack.enter_async_context(httpx.AsyncClient(limits=limits,
                                                                                 timeout=args.timeout)), args.url)
        else:
            raw_pool = RawPool(args.url, pool, args.timeout)
            stack.push_async_callback(raw_pool.close)
            post = raw_pool.post
        warm = await closed_loop(post, warmup, min(8, pool), None) if warmup else Tally()
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        watched0 = {pid: cpu_seconds(pid) for pid in args.watch if Path(f"/proc/{pid}").exists()}
        busy0 = machine_busy()
        if args.closed:
            tally = await closed_loop(post, items, args.closed, args.duration)
        else:
            tally = await open_loop(post, items, args.rate, pool)
        cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall0
        watched = {pid: cpu_seconds(pid) - before for pid, before in watched0.items()}
        busy1 = machine_busy()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"mode": "closed" if args.closed else "open", "offered_per_s": None if args.closed else args.rate,
            "connections": pool, "client": args.client, **tally.summary(),
            "client_cpu_share": round(cpu / wall, 2) if wall else None,
            "machine_busy_cpus": round((busy1[0] - busy0[0]) / wall, 2) if wall else None,
            "watched_cpu_share": {str(pid): round(watched[pid] / wall, 2) if pid in watched and wall else None
                                  for pid in args.watch},
            "watched_cpu_s": {str(pid): round(watched[pid], 3) if pid in watched else None for pid in args.watch},
            "warmup": {"sent": sum(warm.statuses.values()), "statuses": warm.statuses, "accepted": warm.accepted}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the receiver's webhook URL")
    parser.add_argument("--key", required=True, help="PEM file of the private key to sign with")
    parser.add_argument("--prefix", required=True, help="meetingId prefix, unique per run")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    parser.add_argument("--rate", type=float, help="open loop: requests per second")
    parser.add_argument("--duration", type=float, help="seconds (open loop: count = rate x duration)")
    parser.add_argument("--closed", type=int, help="closed loop with this many connections")
    parser.add_argument("--count", type=int, help="closed loop: bodies to pre-sign (the most it sends)")
    parser.add_argument("--pool", type=int, default=64, help="connection pool size (open loop)")
    parser.add_argument("--warmup", type=int, default=0, help="bodies sent (closed loop, 8 connections) first")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request once it has a connection")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="raw asyncio HTTP/1.1 (default; cheap per request) or httpx.AsyncClient")
    parser.add_argument("--watch", type=int, action="append", default=[],
                        help="report the CPU share of this process (e.g. the receiver) during the run")
    parser.add_argument("--cdn", default="https://cdn.videosdk.live", help="base of each fileUrl")
    parser.add_argument("--size", type=int, default=1 << 20, help="size= of each fileUrl")
    args = parser.parse_args(argv)
    if not args.closed and not (args.rate and args.duration):
        parser.error("give --rate and --duration (open loop) or --closed K --count N")
    count = args.count if args.closed else math.ceil(args.rate * args.duration)
    key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
    assert isinstance(key, RSAPrivateKey)
    started = time.monotonic()
    items = signed_bodies(key, args.prefix, count, args.cdn, args.size)
    warmup = signed_bodies(key, args.prefix + "-warm", args.warmup, args.cdn, args.size)
    signing = time.monotonic() - started
    result = asyncio.run(run(args, items, warmup))
    result["signing_seconds"] = round(signing, 2)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
