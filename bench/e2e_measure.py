"""What bench.end_to_end reads back: the ledger's timestamps, the copies' checksums, the workers'
logged outcomes and the CPU each process used."""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_client
from sqlalchemy import func, select

from archiver.ledger.database import create_ledger_engine
from archiver.ledger.models import CopyJob, Event, FileRow
from bench.loadreport import cpu_seconds, ms, percentile
from bench.loadstack import Service
from tests.http_source import sha256

OUTCOME = re.compile(rb"[:\"] ?job \d+: (\w+)")  # in a JSON line: "message": "job 5: succeeded"


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _jobs(prefix: str) -> Any:
    return (select(Event.meeting_id, Event.received_at, CopyJob.state, CopyJob.started_at, CopyJob.finished_at,
                   CopyJob.attempts, CopyJob.bytes, CopyJob.sha256, CopyJob.error_code)
            .join(FileRow, FileRow.event_id == Event.id)
            .join(CopyJob, CopyJob.file_id == FileRow.id)
            .where(Event.meeting_id.like(prefix + "-%")))


def wait_done(database_url: str, prefix: str, count: int, *, timeout: float, services: Sequence[Service]) -> None:
    """Until `count` jobs of the run are succeeded or failed for good; every service must stay up."""
    engine = create_ledger_engine(database_url)
    deadline = time.monotonic() + timeout
    states: dict[str, int] = {}
    try:
        while time.monotonic() < deadline:
            for service in services:
                service.check()
            with engine.connect() as conn:
                query = _jobs(prefix).with_only_columns(CopyJob.state, func.count()).group_by(CopyJob.state)
                states = {s: int(n) for s, n in conn.execute(query)}
            if states.get("succeeded", 0) + states.get("failed", 0) >= count:
                return
            time.sleep(0.1)
    finally:
        engine.dispose()
    logs = "\n".join(f"--- {s.name}\n{s.tail(1500)}" for s in services if s.name.startswith("worker"))
    raise RuntimeError(f"{prefix}: jobs not done after {timeout} s: {states}\n{logs}")


def _stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": ms(percentile(values, 50)), "p95": ms(percentile(values, 95)),
            "max": ms(max(values, default=None)), "mean": ms(sum(values) / len(values) if values else None)}


def collect(database_url: str, prefix: str, size: int, destination: str) -> dict[str, Any]:
    engine = create_ledger_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(_jobs(prefix)))
    finally:
        engine.dispose()
    done = [r for r in rows if r.state == "succeeded"]
    received = [_aware(r.received_at) for r in rows]
    finished = [_aware(r.finished_at) for r in done]
    span = (max(finished) - min(received)).total_seconds() if done else None  # type: ignore[type-var,operator]
    latency = [(_aware(r.finished_at) - _aware(r.received_at)).total_seconds() for r in done]  # type: ignore[operator]
    wait = [(_aware(r.started_at) - _aware(r.received_at)).total_seconds() for r in done]  # type: ignore[operator]
    copy = [(_aware(r.finished_at) - _aware(r.started_at)).total_seconds() for r in done]  # type: ignore[operator]
    verified = sum(1 for r in done if r.bytes == size and r.sha256 == sha256(f"{r.meeting_id}.mp4", size))
    return {"destination": destination, "recordings": len(rows), "succeeded": len(done), "verified": verified,
            "failed": {r.meeting_id: r.error_code for r in rows if r.state != "succeeded"},
            "retried": sum(1 for r in rows if r.attempts > 1), "span_s": round(span, 3) if span else None,
            "recordings_per_s": round(len(done) / span, 2) if span else None,
            "latency_ms": _stats(latency), "wait_ms": _stats(wait), "copy_ms": _stats(copy)}


def outcomes(workers: Sequence[Service]) -> dict[str, int]:
    """How every copy_file task ended, from the workers' logs ("job N: succeeded|missing|skipped|...")."""
    counts: Counter[str] = Counter()
    for worker in workers:
        counts.update(m.decode() for m in OUTCOME.findall(worker.log.read_bytes()))
    return dict(counts)


def _tree_cpu(pid: int) -> float:
    total = cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        with contextlib.suppress(OSError):  # exited meanwhile
            total += _tree_cpu(int(child))
    return total


def stack_cpu(services: Sequence[Service], broker_url: str) -> dict[str, float]:
    """CPU seconds so far of each service (with its child processes) and of redis-server."""
    cpu = {s.name: _tree_cpu(s.pid) for s in services if s.proc.poll() is None}
    with contextlib.suppress(OSError):  # a Redis given by ARCHIVER_TEST_REDIS_URL may run elsewhere
        cpu["redis"] = cpu_seconds(int(redis_client.Redis.from_url(broker_url).info("server")["process_id"]))
    return cpu
