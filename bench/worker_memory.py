"""Peak memory of a worker pool process while it copies one large recording into S3 (moto server).

    .venv/bin/python -m bench.worker_memory [--size-mib 1024]

Starts moto's server, Redis, the stand-in CDN and a real `celery worker` (one pool process), sends
one signed-free event through the events queue, waits for the copy, and prints the pool process's
VmHWM (peak resident set) next to its resident set when idle, from /proc.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tests.emulators import azurite, fake_gcs, moto_server, redis
from tests.http_source import HttpSource
from tests.stack import Stack, empty_queues, write_config


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    size = parser.parse_args().size_mib << 20
    from archiver.ledger.database import create_ledger_engine, upgrade

    with tempfile.TemporaryDirectory() as tmp, moto_server() as s3, azurite() as az, fake_gcs() as gs, \
            redis() as broker, HttpSource() as source:
        root = Path(tmp)
        database = f"sqlite:///{root}/ledger.db"
        upgrade(create_ledger_engine(database))
        empty_queues(broker)
        env, buckets = write_config(root, broker_url=broker, database_url=database, moto_url=s3,
                                    azure_connection=az, gcs_url=gs, only=("s3",))
        stack = Stack(root=root, broker_url=broker, database_url=database, env=env, source=source, buckets=buckets)
        worker = stack.start_worker(concurrency=1)
        [pool] = children(worker.proc.pid)
        idle = status_kib(pool, "VmRSS")
        started = time.monotonic()
        stack.send_event({"webhookType": "recording-stopped",
                          "data": {"meetingId": "bench-memory", "sessionId": "s1", "filePath": "/big.mp4",
                                   "fileUrl": source.file_url("big.mp4", size=size)}})
        [job] = stack.wait_for_jobs("bench-memory", 1, timeout=900)
        seconds = time.monotonic() - started
        peak = status_kib(pool, "VmHWM")
        stack.stop()
    print(json.dumps({"size_mib": size >> 20, "state": job.state, "seconds": round(seconds, 1),
                      "pool_rss_idle_mib": round(idle / 1024, 1), "pool_peak_rss_mib": round(peak / 1024, 1),
                      "part_size_mib": 5, "concurrency": 4}))


if __name__ == "__main__":
    main()
