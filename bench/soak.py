"""Chaos soak: the whole stack under faults for N seconds, then proof that nothing was lost,
duplicated, corrupted or left stuck.

    python -m bench.soak [--duration 300] [--seed 1] [--faults default] [--broker redis|amqp]
                         [--ledger sqlite|postgresql] [--workers 2] [--concurrency 2] [--json PATH]

Separate processes: the receiver (`archiver serve`, signatures verified), `--workers` x `archiver
worker`, a private redis-server (or a private vhost on RabbitMQ at 127.0.0.1:5672), the ledger
(SQLite, or a fresh PostgreSQL database at 127.0.0.1:5432, dropped after), moto / Azurite /
fake-gcs-server each behind a fault-injecting proxy (bench.soak_proxy). In this process: the
stand-in CDN (bench.soak_cdn), the webhook sender (bench.soak_send), the fault timeline and the lease
sweeper (bench.soak_faults; beat is not run: its sweep interval is fixed at 300 s), the checker
(bench.soak_check). The seed fixes the recordings, webhooks, duplicates and faults; only their
timing varies. Exit status 1 when anything was lost, duplicated, corrupted, stuck or stray.

After the run the drain (--drain, 90 s) waits for every copy job to finish. A job whose broker
message was lost stays pending until the lease sweeper's pending threshold, retry.max_delay + 300 s,
which no setting shortens: during the drain the soak applies the sweeper's own query and publish
with that threshold compressed to --pending-after seconds (as the config compresses retry delays),
to jobs whose message is provably gone from Redis, and reports them as late, not stuck.
--real-sweeper instead waits for the product's own sweep to pick them up.

Fault kinds (--faults, comma-separated, applied left to right: default, all, none, NAME, +NAME, -NAME):
  default: every kind (a kind that found a product bug whenever it fired would be left out until the
  product handles it; none is now); leave one out with e.g. --faults default,-cdn_splice.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from archiver.ledger.database import create_ledger_engine
from bench.loadreport import RESULTS, machine_info, table, utc_now, write_record
from bench.soak_cdn import SoakCdn
from bench.soak_check import Stores, Verdict, check
from bench.soak_drain import keep_alive, outstanding, settle
from bench.soak_faults import Chaos, Sweeper
from bench.soak_plan import ALL, PROXY_FAULTS, parse_faults, plan_actions, plan_events
from bench.soak_report import explain, grouped, summary
from bench.soak_send import Sender
from bench.soak_stack import (
    AZURE_CONNECTION,
    S3_SECRET,
    Redis,
    Stack,
    Storage,
    amqp_vhost,
    ledger_database,
    new_keypair,
    storage,
    write_config,
)

MAX_DELAY = 4.0  # retry.max_delay of the soak's configuration (retries compressed in time)


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of webhooks and faults (default 300)")
    parser.add_argument("--drain", type=float, default=90.0, help="most seconds to wait for the copies after it")
    parser.add_argument("--pending-after", type=float, default=20.0,
                        help="the lease sweeper's pending threshold, compressed (see above; default 20 s)")
    parser.add_argument("--real-sweeper", action="store_true",
                        help="no compression: wait up to retry.max_delay + 330 s more for the real threshold")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default="default", help=f"fault kinds; known: {', '.join(ALL)}")
    parser.add_argument("--broker", choices=("redis", "amqp"), default="redis")
    parser.add_argument("--ledger", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument("--proxy-rate", type=float, default=0.03, help="share of storage requests given a fault")
    parser.add_argument("--intensity", type=float, default=1.0,
                        help="multiplies how many process faults and storms the run gets (default 1)")
    parser.add_argument("--backlog", type=int, default=24, help="copy jobs outstanding before sending waits")
    parser.add_argument("--max-mib", type=float, default=12.0, help="largest recording, MiB")
    parser.add_argument("--sweep-every", type=float, default=5.0, help="seconds between lease sweeps")
    parser.add_argument("--json", help="result file (default bench/results/soak-<UTC time>.json)")
    args = parser.parse_args(argv)
    try:
        args.kinds = parse_faults(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    args.max_delay = MAX_DELAY
    return args


@dataclass
class Run:
    """The parts of one soak run, started by `start`."""

    args: argparse.Namespace
    root: Path
    counts: Counter[str]
    lock: threading.Lock
    broker_url: str
    redis: Redis | None
    engine: Any
    cdn: SoakCdn
    store: Storage
    services: Stack
    sender: Sender
    chaos: Chaos
    config: Path
    env: dict[str, str]
    gone: set[str] = field(default_factory=set)


def start(args: argparse.Namespace, root: Path, counts: Counter[str], lock: threading.Lock,
          stack: contextlib.ExitStack) -> Run:
    redis, vhost = None, None
    if args.broker == "redis":
        redis = Redis(root)
        redis.start()
        stack.callback(redis.stop)
        broker_url = redis.url
    else:
        broker_url = stack.enter_context(amqp_vhost())
        vhost = broker_url.rsplit("/", 1)[1]
    database_url = stack.enter_context(ledger_database(args.ledger, root))
    cdn = stack.enter_context(SoakCdn(counts, lock))
    proxied = tuple(p.split("_")[0] for p in PROXY_FAULTS if p in args.kinds)
    store = stack.enter_context(storage(root, args.seed, counts, lock, proxied))
    private, public = new_keypair(root)
    config = write_config(root, broker_url=broker_url, database_url=database_url, public_key=public, store=store,
                          lease_seconds=10, visibility_timeout=45, max_delay=MAX_DELAY)
    env = {"ARCHIVER_CONFIG": str(config), S3_SECRET: "moto-secret-key", AZURE_CONNECTION: store.azure_via_proxy()}
    # The sweeper's Celery app reads the same settings (and secrets) as the workers; put back after.
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    stack.callback(lambda: [os.environ.pop(k) if v is None else os.environ.update({k: v}) for k, v in saved.items()])
    services = Stack(root, config, env, args.concurrency, own_hostnames=args.broker == "amqp")
    stack.callback(services.stop)
    services.start_receiver()
    for _ in range(args.workers):
        services.start_worker()
    engine = create_ledger_engine(database_url)
    stack.callback(engine.dispose)
    for proxy in store.proxies.values():
        proxy.rate = args.proxy_rate
    store.proxies["s3"].create_reply_loss = 0.3 if "s3_lost_create_reply" in args.kinds else 0.0
    key = load_pem_private_key(private.read_bytes(), None)
    sender = Sender(services.receiver_url, key, cdn, counts, lock)  # type: ignore[arg-type]
    stack.callback(sender.close)
    chaos = Chaos(services, store, cdn, engine, database_url, counts, lock, redis, vhost)
    return Run(args, root, counts, lock, broker_url, redis, engine, cdn, store, services, sender, chaos, config, env)


def drive(r: Run) -> float:
    """Webhooks in the seed's order (holding back while --backlog jobs are outstanding) and the fault
    timeline, for --duration seconds; returns the seconds it took (the last fault may run over)."""
    events = plan_events(r.args.seed, 5000, r.args.kinds, r.args.max_mib)
    actions = plan_actions(r.args.seed, r.args.duration, r.args.kinds, r.args.intensity)
    stop = threading.Event()
    begin = time.monotonic()
    thread = threading.Thread(target=r.chaos.run, args=(actions, begin, stop), name="soak-chaos", daemon=True)
    thread.start()
    for event in events:
        if time.monotonic() - begin >= r.args.duration:
            break
        while (busy := outstanding(r.engine, r.gone)) is None or len(busy) >= r.args.backlog:
            r.sender.due()
            keep_alive(r.services, r.counts, r.lock, r.chaos)
            if time.monotonic() - begin >= r.args.duration:
                break
            time.sleep(0.25)
        else:
            for rec in event.files:
                r.cdn.add(rec)
                if "cdn_gone" in rec.faults:
                    r.gone.add(rec.path)
            r.sender.send(event)
            keep_alive(r.services, r.counts, r.lock, r.chaos)
            time.sleep(0.1)
    stop.set()
    thread.join()
    return time.monotonic() - begin


def run(args: argparse.Namespace, root: Path, counts: Counter[str], lock: threading.Lock,
        stack: contextlib.ExitStack, before_check: Callable[[Stores], None] | None = None) -> dict[str, Any]:
    """Start everything, send and inject for args.duration, drain, check. `before_check` gets the
    destinations' direct clients first (the tests use it to plant damage the checker must find)."""
    r = start(args, root, counts, lock, stack)
    with Sweeper(r.config, r.env, args.sweep_every, counts, lock) as sweeper:
        ran = drive(r)
        out = settle(r, sweeper)
    late = out["late"]
    print(f"soak: ran {ran:.0f} s, drained in {out['drained']:.0f} s"
          + (f" ({len(late)} jobs re-enqueued for the sweeper)" if late else "") + "; checking every copy", flush=True)
    stores = Stores(r.store, root / "archive")
    if before_check is not None:
        before_check(stores)
    verdict = check(r.sender.deliveries, r.engine, stores, progress=lambda m: print(f"soak: {m}", flush=True))
    for mismatch in r.sender.mismatches:
        verdict.add("duplicated", f"a {mismatch['kind']} webhook was answered with other jobs", **mismatch)
    for job, snapshot in late.items():  # not a failure: the sweeper's logic brought it home; kept for the record
        verdict.add("late", "pending after the faults stopped, its message gone from the broker"
                    + ("" if snapshot is not None else " (not checked: RabbitMQ)") + "; re-enqueued as the lease "
                    "sweeper would", job=job, broker=snapshot)
    explain(verdict, r.engine, root)
    return {"verdict": verdict, "ran": ran, **out, "chaos": r.chaos.log, "deliveries": r.sender.deliveries}


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    started, clock = utc_now(), time.monotonic()
    print(f"soak: seed {args.seed}, {args.duration:g} s, broker {args.broker}, ledger {args.ledger}, "
          f"{args.workers} workers x {args.concurrency}, faults: {', '.join(args.kinds) or 'none'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        out = run(args, root, counts, lock, stack)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        if out["verdict"].problems:  # failures, and late jobs too: keep what explains them
            kept = RESULTS / f"soak-{stamp}-logs"
            kept.mkdir(parents=True, exist_ok=True)
            for log in [*root.glob("*.log"), *root.glob("redis/*.log")]:
                shutil.copy(log, kept / log.name)
            if (root / "redis" / "appendonlydir").exists():  # every broker command: where a message went
                shutil.copytree(root / "redis" / "appendonlydir", kept / "redis-aof")
            out["logs"] = str(kept)
    seconds = time.monotonic() - clock
    rows = summary(args, out, counts, seconds)
    verdict: Verdict = out["verdict"]
    parameters = {k: v for k, v in vars(args).items() if k != "kinds"} | {"kinds": list(args.kinds)}
    results = {"table": {r["measure"].strip(): r["value"] for r in rows}, "counts": dict(counts),
               "verdict": dict(verdict.counts), "problems": verdict.problems, "chaos": out["chaos"],
               "logs": out.get("logs")}
    path = write_record("soak", parameters, results, [], args.json, started, seconds, machine_info())
    print(table(rows, ("measure", "value")))
    for line in grouped(verdict.problems)[:25]:
        print("  " + line)
    print(f"soak: {'FAILED' if verdict.failed else 'passed'}; results in {path}"
          + (f"; logs in {out['logs']}" if out.get("logs") else ""))
    return 1 if verdict.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
