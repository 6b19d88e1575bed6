"""After the run: faults off, the drain, and the lease sweeper for what the drain leaves; and the
ledger queries both use. A worker or receiver that exits by itself meanwhile is counted and replaced."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from bench.soak_faults import Chaos, Sweeper
from bench.soak_stack import Stack


def outstanding(engine: Any, ignore: set[str]) -> list[int] | None:
    """Ids of copy jobs pending or running, leaving out files deleted on purpose; None if the ledger
    could not be read just now (a dropped connection, a locked database)."""
    try:
        with engine.connect() as db:
            rows = db.execute(text("SELECT j.id, f.file_path FROM copy_jobs j JOIN recording_files f "
                                   "ON f.id = j.file_id WHERE j.state IN ('pending', 'running')")).all()
    except Exception:
        return None
    return [job for job, path in rows if path.lstrip("/") not in ignore]


def wait_idle(engine: Any, ignore: set[str], seconds: float, tick: Callable[[], None],
              left: list[int] | None = None) -> tuple[float, list[int]]:
    """Wait up to `seconds` for no outstanding job; returns (seconds waited, jobs still outstanding);
    `left`: what was outstanding before, the answer if the ledger cannot be read meanwhile."""
    start, left = time.monotonic(), list(left or [])
    while time.monotonic() - start < seconds:
        tick()
        now = outstanding(engine, ignore)
        left = left if now is None else now
        if now == []:
            break
        time.sleep(1.0)
    return time.monotonic() - start, left


def keep_alive(stack: Stack, counts: Counter[str], lock: threading.Lock, chaos: Chaos) -> None:
    """A worker or receiver that exited by itself is a finding: count it and start another."""
    with chaos.busy:  # not while a kill is in progress: that worker is meant to be gone
        for worker in [w for w in stack.workers if w.proc.poll() is not None]:
            stack.workers.remove(worker)
            with lock:
                counts["worker_exited_unexpectedly"] += 1
            stack.start_worker()
        if stack.receiver is not None and stack.receiver.proc.poll() is not None:
            with lock:
                counts["receiver_exited_unexpectedly"] += 1
            stack.start_receiver()


def settle(r: Any, sweeper: Sweeper) -> dict[str, Any]:
    """Faults off, duplicates still due sent, then wait (--drain) until no copy job is left.

    Meanwhile, every --sweep-every seconds, jobs pending unchanged for --pending-after seconds whose
    message is nowhere in the broker (Redis: neither queued nor unacknowledged; RabbitMQ cannot be
    looked into, so every such job) are re-enqueued the way the lease sweeper would re-enqueue them
    after retry.max_delay + 300 s, and reported as late. --real-sweeper leaves them to the product's
    own sweep task and waits for its threshold instead."""
    r.cdn.storm(0)
    for proxy in r.store.proxies.values():
        proxy.quiet()
    r.sender.due(everything=True)
    late: dict[int, dict[str, Any] | None] = {}  # job -> where its message was (None: not looked)
    last = [time.monotonic()]

    def tick() -> None:
        keep_alive(r.services, r.counts, r.lock, r.chaos)
        if r.args.real_sweeper or time.monotonic() - last[0] < r.args.sweep_every:
            return
        last[0] = time.monotonic()
        stale = [j for j in sweeper.stale_pending(r.engine, r.args.pending_after) if j not in late]
        try:
            snapshot = broker_snapshot(r.broker_url, stale) if stale and r.redis is not None else None
        except Exception:  # Redis not answering just now: look again next round
            return
        lost = [j for j in stale if snapshot is None or not (snapshot["queued"][j] or snapshot["unacked"][j])]
        if lost and sweeper.enqueue(lost):
            late.update({j: snapshot for j in lost})

    budget = r.args.drain + (r.args.max_delay + 330 if r.args.real_sweeper else 0)
    drained, left = wait_idle(r.engine, r.gone, budget, tick)
    return {"drained": drained, "late": late, "stuck_jobs": left}


def broker_snapshot(redis_url: str, job_ids: list[int]) -> dict[str, Any]:
    """Where the copy messages of `job_ids` are in Redis (kombu's layout): queued, unacknowledged, or
    nowhere; plus the state of kombu's restore mutex. Tells a lost message from a slow one."""
    import base64
    import json

    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)

    def job_of(raw: bytes) -> int | None:
        try:
            message = json.loads(raw)
            message = message[0] if isinstance(message, list) else message  # unacked: [message, exchange, key]
            args = json.loads(base64.b64decode(message["body"]))[0]
            return int(args[0]) if args else None
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    try:
        queued = [job_of(m) for q in ("archive", "events", "maintenance") for m in client.lrange(q, 0, -1)]
        unacked = {tag.decode(): job_of(raw) for tag, raw in client.hgetall("unacked").items()}
        scores = dict(client.zrange("unacked_index", 0, -1, withscores=True))
        return {"queued": {j: queued.count(j) for j in job_ids},
                "unacked": {j: [round(scores.get(t.encode(), 0), 1) for t, jj in unacked.items() if jj == j]
                            for j in job_ids},
                "unacked_total": len(unacked), "queued_total": len(queued),
                "restore_mutex_ttl": client.ttl("unacked_mutex")}
    finally:
        client.close()
