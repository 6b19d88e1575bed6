"""Intake: signed webhooks per second at the receiver, latency, and a check that none was lost.

    .venv/bin/python -m bench.intake [--rates 250,500,1000] [--duration 10] [--max-concurrency 64]
                                     [--database sqlite|postgresql] [--json PATH] [--py-spy SVG]

The receiver runs as `archiver serve` (uvicorn, one process) over a private redis-server and a fresh
ledger, with one file:// destination, so one 202 is one event, one job and one copy message. No
worker runs: every message the receiver published stays on the broker. The load generator
(bench.loadgen, its own process) sends pre-signed distinct bodies open loop at each fixed rate, then
closed loop with --max-concurrency connections for the maximum. After each phase every 202 is
checked: its event and its job in the ledger, and its job on the broker: a copy message (by job id)
on the `archive` queue, or its id in a relay message on `events` (archiver.intake.relay sends one
per batch after the commit, which a worker fans out; the check waits up to RELAY_WAIT for them).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis as redis_client
from sqlalchemy import func, select

from archiver.ledger.database import create_ledger_engine
from archiver.ledger.models import CopyJob, Event
from bench.loadreport import machine_info, table, target, targets_text, utc_now, write_record
from bench.loadstack import BIN, ledger_database, loadgen, new_keypair, start_receiver, write_config
from tests.emulators import redis

TARGET_RATE, TARGET_P99_MS, TARGET_P99_AT = 1500.0, 50.0, 500.0
RELAY_WAIT = 15.0  # seconds the loss check waits for the receiver's relay to put the last jobs on the broker
COLUMNS = ("phase", "offered/s", "achieved/s", "sent", "202", "other", "p50_ms", "p90_ms", "p99_ms", "max_ms",
           "receiver_cpu", "cpu_ms/req", "client_cpu", "redis_cpu", "machine_busy", "lost")


def jobs_of(message: bytes) -> list[int]:
    """The job ids a Celery message carries (protocol 2: body = [args, kwargs, embed]): a copy
    message's one, a relay message's batch (args: job ids, lookup ids), none for other tasks."""
    envelope = json.loads(message)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args = json.loads(body)[0]
    task = envelope.get("headers", {}).get("task")
    if task == "archiver.relay":
        return [int(j) for j in args[0]]
    return [int(args[0])] if task == "archiver.copy_file" and args else []


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def check_lost(database_url: str, broker_url: str, accepted: list[list[Any]]) -> dict[str, Any]:
    """Every 202 of a phase against the ledger and the broker; the phase's messages are then removed."""
    events = sorted({int(e) for e, _ in accepted})
    jobs = sorted({int(j) for _, js in accepted for j in js})
    engine = create_ledger_engine(database_url)
    try:
        with engine.connect() as conn:
            found_events = {i for c in _chunks(events) for i in conn.scalars(select(Event.id).where(Event.id.in_(c)))}
            states = {i: s for c in _chunks(jobs) for i, s in conn.execute(
                select(CopyJob.id, CopyJob.state).where(CopyJob.id.in_(c)))}
            total_events = int(conn.scalar(select(func.count()).select_from(Event)) or 0)
    finally:
        engine.dispose()
    broker = redis_client.Redis.from_url(broker_url)
    deadline = time.monotonic() + RELAY_WAIT
    while True:
        keys = [*broker.keys("archive*"), *broker.keys("events*")]
        messages = [m for key in keys for m in broker.lrange(key, 0, -1)]
        queued = Counter(j for m in messages for j in jobs_of(m))
        if set(jobs) <= set(queued) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for key in keys:
        broker.delete(key)
    missing = {"events": len(set(events) - found_events), "jobs": len(set(jobs) - set(states)),
               "messages": len(set(jobs) - set(queued))}
    return {"accepted": len(accepted), "jobs": len(jobs), "messages": sum(queued.values()),
            "broker_messages": len(messages),  # fewer than messages: the relay names many jobs in one
            "missing": missing, "lost": sum(missing.values()),
            "jobs_not_pending": sum(1 for s in states.values() if s != "pending"),
            "messages_unexpected": sum(n for j, n in queued.items() if j not in set(jobs)),
            "messages_duplicated": sum(n - 1 for n in queued.values() if n > 1),
            "ledger_events_total": total_events}


def receiver_pids(parent: int) -> list[int]:
    """The receiver's process and, with --processes N, its N children (which do the work)."""
    found = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return [parent, *map(int, found)]


def run_phase(name: str, options: list[str], *, root: Path, base: str, private: Path, receiver_pid: int,
              database_url: str, broker_url: str, profile: tuple[Path, float] | None = None) -> dict[str, Any]:
    redis_pid = int(redis_client.Redis.from_url(broker_url).info("server")["process_id"])
    pids = receiver_pids(receiver_pid)
    common = ["--url", base + "/webhooks/videosdk", "--key", str(private), "--prefix", f"{name}-{time.time_ns()}",
              "--warmup", "100", *[a for pid in pids for a in ("--watch", str(pid))], "--watch", str(redis_pid)]
    spy = None
    if profile is not None:  # py-spy from 2 s in (after signing and warm-up) for the phase's steady state
        form = "raw" if profile[0].suffix == ".txt" else "flamegraph"  # raw: collapsed stacks, one per line
        spy_bin = shutil.which("py-spy") or BIN / "py-spy"  # not a dependency: wherever it was installed
        spy = subprocess.Popen(["sh", "-c", f"sleep 2 && exec {spy_bin} record --nonblocking --subprocesses -f {form} "
                                f"-o {profile[0]} --pid {receiver_pid} --duration {max(1, int(profile[1]) - 2)}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = loadgen([*common, *options], root / f"{name}.json", root, timeout=600)
    if spy is not None:
        spy.wait(timeout=120)
    accepted = result.pop("accepted") + result["warmup"].pop("accepted")
    result["loss_check"] = check_lost(database_url, broker_url, accepted)
    watched, seconds = result.pop("watched_cpu_share"), result.pop("watched_cpu_s")
    receiver_s = sum(seconds[str(pid)] for pid in pids)
    result.update(phase=name, receiver_cpu_share=round(sum(watched[str(pid)] for pid in pids), 2),
                  redis_cpu_share=watched[str(redis_pid)],
                  # CPU the receiver spent per request: steadier than rates on a shared machine
                  receiver_cpu_ms_per_request=round(receiver_s * 1000 / result["sent"], 2) if result["sent"] else None)
    return result


def row(result: dict[str, Any]) -> dict[str, Any]:
    statuses = result["statuses"]
    return {"phase": result["phase"], "offered/s": result["offered_per_s"] or "max",
            "achieved/s": result["achieved_per_s"], "sent": result["sent"], "202": statuses.get("202", 0),
            "other": sum(n for s, n in statuses.items() if s != "202"), "p50_ms": result["p50_ms"],
            "p90_ms": result["p90_ms"], "p99_ms": result["p99_ms"], "max_ms": result["max_ms"],
            "receiver_cpu": result["receiver_cpu_share"], "cpu_ms/req": result["receiver_cpu_ms_per_request"],
            "client_cpu": result["client_cpu_share"],
            "redis_cpu": result["redis_cpu_share"], "machine_busy": result["machine_busy_cpus"],
            "lost": result["loss_check"]["lost"]}


def evaluate(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    top = next((p for p in phases if p["phase"] == "max"), None)
    at = next((p for p in phases if p["offered_per_s"] == TARGET_P99_AT), None)
    lost = sum(p["loss_check"]["lost"] for p in phases)
    refused = sum(n for p in phases for s, n in p["statuses"].items() if s != "202")
    rate = top["achieved_per_s"] if top else None
    return [target("intake rate", f">= {TARGET_RATE:,.0f} signed webhooks/s", rate,
                   None if rate is None else rate >= TARGET_RATE),
            target("intake p99 at 500/s", f"<= {TARGET_P99_MS:.0f} ms", at["p99_ms"] if at else None,
                   None if at is None else at["p99_ms"] is not None and at["p99_ms"] <= TARGET_P99_MS),
            target("zero lost", "every 202 has its event and job in the ledger and its message on the broker",
                   lost, lost == 0, f"{refused} requests not answered 202 (the sender retries those)")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="250,500,1000", help="fixed rates per second, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--max-concurrency", type=int, default=64, help="connections of the maximum-rate run")
    parser.add_argument("--max-requests", type=int, help="bodies pre-signed for the maximum run "
                                                         "(default 2500 x duration)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--processes", type=int, default=1, help="receiver processes (archiver serve --processes)")
    parser.add_argument("--json", help="result file (default bench/results/intake-<UTC time>.json)")
    parser.add_argument("--py-spy", help="record the receiver with py-spy during the maximum run into this file "
                                         "(.svg: flame graph; .txt: collapsed stacks)")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    started, clock, machine = utc_now(), time.monotonic(), machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp, redis() as broker_url:
        root = Path(tmp)
        redis_client.Redis.from_url(broker_url).flushdb()
        with ledger_database(args.database, root) as database_url:
            private, public = new_keypair(root)
            config = write_config(root, broker_url=broker_url, database_url=database_url, public_key=public,
                                  destination=f'name = "local"\nurl = "file://{root}/archive/{{meetingId}}/"')
            receiver, base = start_receiver(config, root, processes=args.processes)
            shared = dict(root=root, base=base, private=private, receiver_pid=receiver.pid,
                          database_url=database_url, broker_url=broker_url)
            phases = []
            try:
                for rate in rates:
                    phases.append(run_phase(f"rate{rate:g}", ["--rate", str(rate), "--duration", str(args.duration),
                                                              "--pool", str(args.max_concurrency)], **shared))
                    receiver.check()
                    time.sleep(1)
                count = args.max_requests or int(2500 * args.duration)
                profile = (Path(args.py_spy), args.duration) if args.py_spy else None
                phases.append(run_phase("max", ["--closed", str(args.max_concurrency), "--count", str(count),
                                                "--duration", str(args.duration)], profile=profile, **shared))
                receiver.check()
            finally:
                receiver.stop()
    seconds = time.monotonic() - clock
    targets = evaluate(phases)
    parameters = {"rates": rates, "duration_s": args.duration, "max_concurrency": args.max_concurrency,
                  "database": args.database, "broker": "redis", "destination": "file (one)", "key": "RSA-2048",
                  "receiver": f"archiver serve (uvicorn, {args.processes} process(es))",
                  "load_generator": "bench.loadgen raw asyncio HTTP/1.1 client, 1 process"}
    path = write_record("intake", parameters, phases, targets, args.json, started, seconds, machine)
    print(f"intake benchmark ({args.database} ledger, redis broker, {machine['nproc']} CPUs), "
          f"{args.duration:g} s per phase; latency: open loop from scheduled time, max from send;\n"
          "*_cpu: cores used during the phase; machine_busy: cores busy machine-wide (others' load included)")
    print(table([row(p) for p in phases], COLUMNS))
    print(targets_text(targets))
    print(f"run time {seconds:.0f} s; results in {path}")
    return {"path": str(path), "phases": phases, "targets": targets}


if __name__ == "__main__":
    main()
