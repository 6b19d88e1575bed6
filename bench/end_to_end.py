"""End to end: recordings announced by signed webhooks, copied by two workers, per second.

    .venv/bin/python -m bench.end_to_end [--recordings 200] [--size-mib 1] [--destination s3|file]
                                         [--database sqlite|postgresql] [--json PATH]

Every part is its own process: the receiver (`archiver serve`), two workers (`archiver worker
--concurrency 1`), redis-server as the broker, the stand-in CDN (tests.http_source) serving each
recording, moto's server as S3 (or a file:// destination), and the load generator, which sends the
signed webhooks as fast as the receiver takes them (closed loop). A few warm-up recordings go first
(not counted) so the workers have opened their connections. Then:
  recordings/s = N / (last copy_jobs.finished_at - first events.received_at)
  latency      = copy_jobs.finished_at - events.received_at, per recording (p50/p95)
Every copy is checked: succeeded, and its size and SHA-256 are the CDN's.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.e2e_measure import collect, outcomes, stack_cpu, wait_done
from bench.loadgen import machine_busy
from bench.loadreport import machine_info, table, target, targets_text, utc_now, write_record
from bench.loadstack import (
    S3_SECRET_VARIABLE,
    Service,
    cdn,
    ledger_database,
    loadgen,
    moto_server,
    new_keypair,
    start_receiver,
    start_workers,
    write_config,
)
from tests.emulators import redis

TARGET_RATE = 20.0
WORKERS = 2
COLUMNS = ("destination", "database", "recordings", "succeeded", "verified", "intake/s", "rec/s", "p50_ms",
           "p95_ms", "max_ms", "wait_p50_ms", "copy_p50_ms", "copy_p95_ms", "missing_retries")


def s3_destination(moto_url: str) -> str:
    import boto3

    bucket = f"bench-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return (f'name = "s3"\nurl = "s3://{bucket}/videosdk/{{meetingId}}/{{sessionId}}/"\nendpoint_url = "{moto_url}"\n'
            f'region = "us-east-1"\naddressing_style = "path"\naccess_key_id = "testing"\n'
            f'secret_access_key_env = "{S3_SECRET_VARIABLE}"')


def send(name: str, count: int, connections: int, *, root: Path, base: str, private: Path, cdn_url: str,
         size: int, watch: list[int]) -> dict[str, Any]:
    prefix = f"{name}-{secrets.token_hex(3)}"
    result = loadgen(["--url", base + "/webhooks/videosdk", "--key", str(private), "--prefix", prefix,
                      "--closed", str(connections), "--count", str(count), "--cdn", cdn_url, "--size", str(size),
                      *[a for pid in watch for a in ("--watch", str(pid))]], root / f"{name}.json", root, timeout=600)
    result["prefix"] = prefix
    return result


def run(args: argparse.Namespace, root: Path, stack: contextlib.ExitStack, workers: int = WORKERS) -> dict[str, Any]:
    """One measured run on a fresh stack under `root` with `workers` worker processes; `args` as parser()
    gives them. Stopped by `stack`. Raises RuntimeError when a service dies or the copies time out."""
    size = int(args.size_mib * (1 << 20))
    broker_url = stack.enter_context(redis())
    database_url = stack.enter_context(ledger_database(args.database, root))
    cdn_url, cdn_service = stack.enter_context(cdn(root))
    services: list[Service] = [cdn_service]
    if args.destination == "s3":
        moto_url, moto_service = stack.enter_context(moto_server(root))
        destination = s3_destination(moto_url)
        services.append(moto_service)
    else:
        destination = f'name = "local"\nurl = "file://{root}/archive/{{meetingId}}/"'
    private, public = new_keypair(root)
    config = write_config(root, broker_url=broker_url, database_url=database_url, public_key=public,
                          destination=destination)
    env = {S3_SECRET_VARIABLE: "moto-secret-key"}
    receiver, base = start_receiver(config, root, env)
    ours = [receiver]  # stopped here; the CDN and moto by their own context managers
    stack.callback(lambda: [s.stop() for s in reversed(ours)])
    ours += start_workers(config, root, workers, env)
    services += ours
    shared = dict(root=root, base=base, private=private, cdn_url=cdn_url, size=size)
    if args.warmup:
        warm = send("warmup", args.warmup, 2, watch=[], **shared)
        wait_done(database_url, warm["prefix"], args.warmup, timeout=120, services=services)
    cpu_before, busy_before, clock = stack_cpu(services, broker_url), machine_busy()[0], time.monotonic()
    sent = send("recordings", args.recordings, args.connections, watch=[receiver.pid], **shared)
    wait_done(database_url, sent["prefix"], args.recordings, timeout=args.timeout, services=services)
    window = time.monotonic() - clock
    busy = round((machine_busy()[0] - busy_before) / window, 2)  # cores busy machine-wide, others' load included
    used = {k: v - cpu_before.get(k, 0.0) for k, v in stack_cpu(services, broker_url).items()}
    cpu = {k: round(v / window, 2) for k, v in used.items()}
    per_recording = {k: round(v * 1000 / args.recordings, 1) for k, v in used.items()}
    per_recording["total"] = round(sum(used.values()) * 1000 / args.recordings, 1)
    result = collect(database_url, sent["prefix"], size, args.destination)
    workers = [s for s in services if s.name.startswith("worker")]
    result.update(outcomes=outcomes(workers), cpu_share=cpu, cpu_window_s=round(window, 2),
                  cpu_ms_per_recording=per_recording, machine_busy_cpus=busy,
                  intake={k: sent[k] for k in ("statuses", "achieved_per_s", "p50_ms", "p99_ms", "seconds")},
                  database=args.database)
    return result


def row(r: dict[str, Any]) -> dict[str, Any]:
    return {"destination": r["destination"], "database": r["database"], "recordings": r["recordings"],
            "succeeded": r["succeeded"], "verified": r["verified"], "intake/s": r["intake"]["achieved_per_s"],
            "rec/s": r["recordings_per_s"], "p50_ms": r["latency_ms"]["p50"], "p95_ms": r["latency_ms"]["p95"],
            "max_ms": r["latency_ms"]["max"], "wait_p50_ms": r["wait_ms"]["p50"], "copy_p50_ms": r["copy_ms"]["p50"],
            "copy_p95_ms": r["copy_ms"]["p95"], "missing_retries": r["outcomes"].get("missing", 0)}


def parser() -> argparse.ArgumentParser:
    """This benchmark's options; bench.scale_out parses its runs' options with it too."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=200)
    parser.add_argument("--size-mib", type=float, default=1.0)
    parser.add_argument("--destination", choices=("s3", "file"), default="s3")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--connections", type=int, default=16, help="load generator connections")
    parser.add_argument("--warmup", type=int, default=4, help="recordings copied first, not counted")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the copies")
    parser.add_argument("--json", help="result file (default bench/results/end_to_end-<UTC time>.json)")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    started, clock, machine = utc_now(), time.monotonic(), machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp, contextlib.ExitStack() as stack:
        result = run(args, Path(tmp), stack)
    seconds = time.monotonic() - clock
    ok = result["succeeded"] == args.recordings and result["verified"] == args.recordings
    rate = result["recordings_per_s"]
    targets = [target("end-to-end rate", f">= {TARGET_RATE:g} recordings/s of {args.size_mib:g} MiB with "
                      f"{WORKERS} workers", rate, rate is not None and rate >= TARGET_RATE and ok,
                      f"destination {args.destination}, {args.database} ledger"
                      + ("" if ok else "; NOT every copy succeeded and verified"))]
    parameters = {"recordings": args.recordings, "size_mib": args.size_mib, "destination": args.destination,
                  "database": args.database, "broker": "redis", "workers": f"{WORKERS} x archiver worker "
                  "--concurrency 1", "connections": args.connections, "warmup": args.warmup}
    path = write_record("end_to_end", parameters, result, targets, args.json, started, seconds, machine)
    print(f"end-to-end benchmark: {args.recordings} x {args.size_mib:g} MiB, {WORKERS} workers, "
          f"{machine['nproc']} CPUs; latency = webhook accepted -> copy succeeded")
    print(table([row(result)], COLUMNS))
    print(f"CPU share (cores) during the run (machine-wide busy {result['machine_busy_cpus']}): "
          + ", ".join(f"{k} {v}" for k, v in result["cpu_share"].items()))
    print("CPU ms per recording: " + ", ".join(f"{k} {v}" for k, v in result["cpu_ms_per_recording"].items()))
    print(targets_text(targets))
    print(f"run time {seconds:.0f} s; results in {path}")
    return {"path": str(path), "result": result, "targets": targets}


if __name__ == "__main__":
    main()
