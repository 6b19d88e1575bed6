"""What acts on the running stack: the timeline of process-level faults, and the lease sweeper.

Faults (bench.soak_plan.ACTIONS):
  worker_kill     SIGKILL of the whole process group of a worker copying to S3, Azure or GCS (and to
                  no local folder), then a replacement is started (skipped if none is busy for 10 s)
  worker_kill_local  the same while one of the worker's copies goes to the local folder
  broker_restart  redis-server stopped (SIGTERM) and started again on the same port 1 s later; with
                  --broker amqp, every connection of the run's vhost closed (the server is shared)
  db_drop         PostgreSQL: pg_terminate_backend of every connection to the run's database;
                  SQLite (no connections to drop): an exclusive lock held for 1.5-3 s
  *_storm         503 to every request of the CDN / one emulator for 1.5-3 s
The sweeper sends the real `archiver.sweep_leases` task every few seconds: beat's schedule for it
is fixed at 300 s, longer than a short soak.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.soak_cdn import SoakCdn
from bench.soak_plan import STORM_TARGETS, Action
from bench.soak_stack import Redis, Stack, Storage


@dataclass
class Chaos:
    stack: Stack
    store: Storage
    cdn: SoakCdn
    engine: Engine
    database_url: str
    counts: Counter[str]
    lock: threading.Lock
    redis: Redis | None = None
    vhost: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    busy: threading.Lock = field(default_factory=threading.Lock)  # held while an action runs

    def run(self, actions: list[Action], start: float, stop: threading.Event) -> None:
        """Thread body: each action at its time, until `stop` is set."""
        for action in actions:
            if stop.wait(max(0.0, start + action.at - time.monotonic())):
                return
            with self.busy:
                try:
                    detail = self._do(action)
                except Exception as exc:  # a fault that could not be injected is reported, not fatal
                    detail = f"not injected: {type(exc).__name__}: {exc}"
                    self._count(f"{action.kind}_failed")
            self.log.append({"t": round(time.monotonic() - start, 1), "kind": action.kind, "detail": detail})

    def _count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def _do(self, action: Action) -> str:
        if action.kind in STORM_TARGETS:
            target = STORM_TARGETS[action.kind]
            (self.cdn if target == "cdn" else self.store.proxies[target]).storm(action.seconds)
            self._count(action.kind)
            return f"{action.seconds} s"
        handler: Callable[..., str] = getattr(self, action.kind)
        return handler(action)

    def worker_kill(self, action: Action) -> str:
        """SIGKILL a worker copying to S3, Azure or GCS (and to no local folder: see worker_kill_local)."""
        return self._kill(action.kind, lambda dests: "local" not in dests)

    def worker_kill_local(self, action: Action) -> str:
        """SIGKILL a worker while one of its copies goes to the local folder."""
        return self._kill(action.kind, lambda dests: "local" in dests)

    def _kill(self, kind: str, wanted: Callable[[set[str]], bool]) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.engine.connect() as db:
                rows = db.execute(text("SELECT id, destination, lease_owner FROM copy_jobs WHERE state = 'running' "
                                       "AND lease_owner IS NOT NULL ORDER BY id")).all()
            busy: dict[str, tuple[Any, set[str], list[int]]] = {}
            for job_id, destination, owner in rows:
                worker = self.stack.worker_of(int(owner.split(":")[1]))
                if worker is not None:
                    entry = busy.setdefault(worker.name, (worker, set(), []))
                    entry[1].add(destination)
                    entry[2].append(job_id)
            victim = next(((w, d, j) for w, d, j in busy.values() if wanted(d)), None)
            if victim is not None:
                worker, dests, jobs = victim
                self.stack.kill9(worker)
                self._count(kind)
                replacement = self.stack.start_worker()
                return (f"{worker.name} (pid {worker.pid}) mid-copy of jobs {jobs} to {sorted(dests)}; "
                        f"{replacement.name} started")
            time.sleep(0.2)
        self._count(f"{kind}_skipped")
        return "no worker was copying to a matching destination for 10 s: nothing killed"

    def broker_restart(self, action: Action) -> str:
        if self.redis is not None:
            self.redis.stop()
            time.sleep(1.0)
            self.redis.start()
            self._count("broker_restart")
            return f"redis-server on port {self.redis.port} stopped and started"
        listing = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "vhost"], check=True,
                                 capture_output=True, text=True, timeout=60).stdout
        pids = [line.split()[0] for line in listing.splitlines() if line.split()[1:] == [self.vhost]]
        for pid in pids:
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "soak: broker_restart"], check=False,
                           capture_output=True, timeout=60)
        self._count("broker_connections_closed")
        return f"{len(pids)} connections of vhost {self.vhost} closed"

    def db_drop(self, action: Action) -> str:
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            conn = sqlite3.connect(str(url.database), timeout=30, isolation_level=None)
            try:
                conn.execute("BEGIN EXCLUSIVE")
                time.sleep(action.seconds)
                conn.execute("ROLLBACK")
            finally:
                conn.close()
            self._count("db_lock")
            return f"SQLite exclusive lock held {action.seconds} s"
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as db:
                killed = db.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                         "WHERE datname = :name AND pid <> pg_backend_pid()"),
                                    {"name": url.database}).scalar()
        finally:
            admin.dispose()
        self._count("db_drop")
        return f"{killed} PostgreSQL connections terminated"


class Sweeper:
    """Sends `archiver.sweep_leases` (the product's own task) every `interval` seconds."""

    def __init__(self, config: Path, env: dict[str, str], interval: float, counts: Counter[str],
                 lock: threading.Lock) -> None:
        from archiver.settings.config import load_settings
        from archiver.worker.app import create_app

        self.app = create_app(load_settings(config, environ=env))
        self.app.conf.update(task_publish_retry=False, broker_connection_retry=False,
                             broker_connection_max_retries=1)
        self.interval, self.counts, self.lock = interval, counts, lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sweeper", daemon=True)

    def __enter__(self) -> Sweeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.app.close()

    def sweep(self) -> None:
        try:
            self.app.send_task("archiver.sweep_leases")
            key = "sweeps_sent"
        except Exception:  # broker restarting: the next round sends it
            key = "sweeps_missed"
        with self.lock:
            self.counts[key] += 1

    def stale_pending(self, engine: Engine, pending_for: float) -> list[int]:
        """The lease sweeper's query (Ledger.stale_jobs), pending jobs only, with its pending threshold
        (retry.max_delay + 300 s, not configurable) compressed to `pending_for` seconds."""
        from archiver.ledger.store import Ledger

        ledger = Ledger(engine)
        try:
            stale = ledger.stale_jobs(timedelta(seconds=pending_for))
            return [j.job_id for j in ledger.jobs(job_ids=stale) if j.state == "pending"] if stale else []
        except Exception:  # the ledger is briefly unavailable: the next round asks again
            return []

    def enqueue(self, job_ids: list[int]) -> bool:
        """Publish copy messages for `job_ids` as the sweeper does (archiver.worker.app.Publisher)."""
        from archiver.worker.app import Publisher

        try:
            Publisher(self.app).copies(job_ids)
        except Exception:  # broker briefly unavailable: the next round does it
            return False
        with self.lock:
            self.counts["jobs_enqueued_after_drain"] += len(job_ids)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.sweep()
