"""Scale-out: copies/s with 1, 2 and 4 worker processes per file size, and which process saturates.

    .venv/bin/python -m bench.scale_out [--workers 1,2,4] [--sizes 1,64] [--recordings-per-size 1:600,64:32]
                                        [--destination s3|file] [--timeout 600] [--json PATH]

Each (size, workers) case is one bench.end_to_end run on a fresh stack: the receiver, N workers
(`archiver worker --concurrency 1`), redis, the stand-in CDN and moto's server as S3 (or a file://
destination, no emulator). Fresh per case so that the gigabytes an earlier case left in moto's
memory do not slow the next. A few warm-up copies first (not counted), then the recordings are
announced by signed webhooks as fast as the receiver takes them, and the case ends when every copy
succeeded and its size and SHA-256 are the CDN's. Per case:
  copies/s, MiB/s = recordings / (last copy finished - first webhook received)
  p50 latency     = webhook accepted -> copy succeeded (queueing included: all arrive at once)
  CPU cores       = CPU seconds / wall seconds of the case, per process group: the workers summed
                    (with their pool children), moto, the CDN, redis, the receiver; and the machine's
                    busy cores, other users' load included ("other" = machine - the groups above, so
                    the load generator, this script and whatever else runs on the machine).
The bottleneck column names every group at SATURATED or more of its ceiling, nearest first: one core
for each one-process group (moto, the CDN and the receiver are Python processes held to about one
core by the GIL; redis runs commands on one thread), N cores for N workers, nproc for the machine.
The cpu_limit column holds whatever the machine's other load: each group's CPU seconds per copy
against its ceiling give the copies/s at which it would be full; the lowest is named.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import end_to_end
from bench.loadreport import machine_info, table, target, targets_text, utc_now, write_record

SATURATED = 0.85  # of a ceiling; CPU is sampled over the whole case, ramp-up and tail included
GROWTH = 1.10  # below saturation, one more step of workers must add at least this much
# Other processes' cores, as a share of the machine, from which a size's verdict is n/a: on a machine
# shared with other work, more worker processes also win a larger share of its CPU from the others,
# which inflates the ratios, and "machine saturated" says nothing about this stack.
CONTENDED = 0.25
DEFAULT_RECORDINGS = {1.0: 600, 64.0: 32}  # ~15-30 s per case on 2 cores
BUDGET_MIB = 1200  # other sizes: this many MiB per case, between 8 and 600 recordings
GROUPS = ("workers", "moto", "cdn", "redis", "receiver")
COLUMNS = ("size_MiB", "workers", "recordings", "verified", "copies/s", "MiB/s", "p50_ms", "copy_p50_ms",
           "cpu_workers", "cpu_moto", "cpu_cdn", "cpu_redis", "cpu_receiver", "cpu_machine", "cpu_other",
           "bottleneck", "cpu_limit")


def numbers(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def recordings_for(text: str | None, sizes: Sequence[float]) -> dict[float, int]:
    """"1:600,64:32" (MiB:recordings) or a bare "N" for every size; sizes not named get a default."""
    given: dict[float, int] = {}
    for part in (text or "").split(","):
        if part.strip():
            size, _, count = part.rpartition(":")
            for s in ([float(size)] if size else sizes):
                given[s] = int(count)
    return {s: given.get(s) or DEFAULT_RECORDINGS.get(s) or max(8, min(600, int(BUDGET_MIB / s))) for s in sizes}


def cpu_groups(cpu_share: dict[str, float], machine_busy: float) -> dict[str, float]:
    """Cores per process group from bench.end_to_end's per-service shares; workers summed."""
    groups = {"workers": sum(v for k, v in cpu_share.items() if k.startswith("worker"))}
    groups.update({g: cpu_share[g] for g in GROUPS[1:] if g in cpu_share})
    ours = sum(groups.values())
    groups = {k: round(v, 2) for k, v in groups.items()}
    groups.update(machine=machine_busy, other=round(max(0.0, machine_busy - ours), 2))
    return groups


def ceilings(workers: int, nproc: int) -> dict[str, int]:
    return {"workers": min(workers, nproc), "moto": 1, "cdn": 1, "redis": 1, "receiver": 1, "machine": nproc}


def cpu_limits(cpu_ms_per_copy: dict[str, float], limits: dict[str, int]) -> dict[str, float]:
    """Copies/s at which each group would use its whole ceiling, from its CPU ms per copy (the machine's
    from this stack's total, so others' load does not count)."""
    ms = {"workers": sum(v for k, v in cpu_ms_per_copy.items() if k.startswith("worker")),
          "machine": cpu_ms_per_copy.get("total", 0.0),
          **{g: cpu_ms_per_copy[g] for g in GROUPS[1:] if g in cpu_ms_per_copy}}
    return {g: round(limits[g] * 1000 / v, 1) for g, v in ms.items() if v > 0}


def limit_text(limits: dict[str, float]) -> str:
    group = min(limits, key=lambda g: limits[g], default=None)
    return f"{group} {limits[group]:.1f}/s" if group else "-"


def saturated(groups: dict[str, float], limits: dict[str, int]) -> list[dict[str, Any]]:
    """The groups at SATURATED or more of their ceiling, the nearest to it first."""
    found = [{"group": g, "cores": groups[g], "ceiling": c, "share": round(groups[g] / c, 2)}
             for g, c in limits.items() if g in groups and groups[g] >= SATURATED * c]
    return sorted(found, key=lambda f: -f["share"])


def bottleneck_text(found: Sequence[dict[str, Any]], other: float | None = None) -> str:
    """"moto 0.97/1, machine 1.90/2 (other 0.40)": other = busy cores not ours, e.g. a shared machine's."""
    return ", ".join(f"{f['group']} {f['cores']:.2f}/{f['ceiling']}"
                     + (f" (other {other:.2f})" if f["group"] == "machine" and other is not None else "")
                     for f in found) or "none"


def run_case(size_mib: float, workers: int, recordings: int, args: argparse.Namespace, nproc: int) -> dict[str, Any]:
    options = end_to_end.parser().parse_args([
        "--recordings", str(recordings), "--size-mib", f"{size_mib:g}", "--destination", args.destination,
        "--warmup", str(max(2, workers)), "--timeout", str(args.timeout)])
    case: dict[str, Any] = {"size_mib": size_mib, "workers": workers, "recordings": recordings}
    clock = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, contextlib.ExitStack() as stack:
            result = end_to_end.run(options, Path(tmp), stack, workers=workers)
    except RuntimeError as exc:  # a dead service or copies not done: the other cases still run
        return {**case, "error": str(exc)[-3000:], "case_seconds": round(time.monotonic() - clock, 1)}
    rate = result["recordings_per_s"]
    groups = cpu_groups(result["cpu_share"], result["machine_busy_cpus"])
    return {**case, "case_seconds": round(time.monotonic() - clock, 1), "copies_per_s": rate,
            "mib_per_s": round(rate * size_mib, 1) if rate else None, "cpu_cores": groups,
            "saturated": saturated(groups, ceilings(workers, nproc)),
            "cpu_limits": cpu_limits(result["cpu_ms_per_recording"], ceilings(workers, nproc)),
            "ok": result["succeeded"] == result["verified"] == recordings, "end_to_end": result}


def row(case: dict[str, Any]) -> dict[str, Any]:
    out = {"size_MiB": f"{case['size_mib']:g}", "workers": case["workers"], "recordings": case["recordings"]}
    if "error" in case:
        return {**out, "bottleneck": "ERROR: " + case["error"].splitlines()[0][:60]}
    result, cpu = case["end_to_end"], case["cpu_cores"]
    return {**out, "verified": result["verified"], "copies/s": case["copies_per_s"], "MiB/s": case["mib_per_s"],
            "p50_ms": result["latency_ms"]["p50"], "copy_p50_ms": result["copy_ms"]["p50"],
            **{f"cpu_{g}": cpu.get(g) for g in (*GROUPS, "machine", "other")},
            "bottleneck": bottleneck_text(case["saturated"], cpu["other"]), "cpu_limit": limit_text(case["cpu_limits"])}


def scaling(size_mib: float, cases: Sequence[dict[str, Any]],
            nproc: int) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Ratios of copies/s against the fewest workers, and the target: copies/s grow with each step of
    workers until a case is saturated (after it, no growth is owed), every copy verified; n/a when
    other processes took CONTENDED of the machine or more in any case."""
    ordered = sorted(cases, key=lambda c: c["workers"])
    base = ordered[0]
    goal = f"{size_mib:g} MiB copies/s grow with worker processes until a process group saturates"

    def rate(case: dict[str, Any]) -> float:
        return float(case.get("copies_per_s") or 0.0)

    ratios = {f"{c['workers']}w/{base['workers']}w": round(rate(c) / rate(base), 2) if rate(base) else None
              for c in ordered[1:]}
    if len(ordered) < 2:
        return ratios, target("scale-out", goal, None, None, "one worker count only")
    broken = [c for c in ordered if "error" in c or not c["ok"]]
    if broken:
        return ratios, target("scale-out", goal, ratios, False, "NOT every case copied and verified every "
                              f"recording: workers {[c['workers'] for c in broken]}")
    stalled, at = [], None
    for before, after in itertools.pairwise(ordered):
        if before["saturated"]:
            at = before
            break
        if rate(after) < GROWTH * rate(before):
            stalled.append(f"{before['workers']}w->{after['workers']}w x{rate(after) / rate(before):.2f}")
    at = at or next((c for c in ordered if c["saturated"]), None)
    where = (f"saturated from {at['workers']} worker(s): "
             f"{bottleneck_text(at['saturated'], at['cpu_cores']['other'])}" if at
             else "no group saturated")
    note = where + (f"; no growth (< x{GROWTH:g}) before saturation at {', '.join(stalled)}" if stalled else "")
    other = max(c["cpu_cores"]["other"] for c in ordered)
    if other >= CONTENDED * nproc:
        return ratios, target("scale-out", goal, ratios, None, f"machine shared: other processes used up to "
                              f"{other:.2f} of {nproc} cores, so the ratios include CPU won from them; {note}")
    return ratios, target("scale-out", goal, ratios, not stalled, note)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma separated")
    parser.add_argument("--sizes", default="1,64", help="recording sizes in MiB, comma separated")
    parser.add_argument("--recordings-per-size", help='"MiB:count,..." or one count for every size '
                        f"(default {','.join(f'{s:g}:{n}' for s, n in DEFAULT_RECORDINGS.items())}, "
                        f"else {BUDGET_MIB} MiB worth)")
    parser.add_argument("--destination", choices=("s3", "file"), default="s3",
                        help="s3: moto's server (the emulator); file: a local directory, no emulator")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one case's copies")
    parser.add_argument("--json", help="result file (default bench/results/scale_out-<UTC time>.json)")
    args = parser.parse_args(argv)
    sizes, counts = numbers(args.sizes), [int(w) for w in numbers(args.workers)]
    recordings = recordings_for(args.recordings_per_size, sizes)
    started, clock, machine = utc_now(), time.monotonic(), machine_info()
    cases = []
    for size in sizes:  # worker counts back to back per size, so one size's ratios share the machine's mood
        for workers in counts:
            cases.append(run_case(size, workers, recordings[size], args, machine["nproc"]))
            print(table([row(cases[-1])], COLUMNS).splitlines()[-1], flush=True)  # progress, one line a case
    seconds = time.monotonic() - clock
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    ratios, targets = {}, []
    for size in sizes:
        ratios[f"{size:g}"], verdict = scaling(size, [c for c in cases if c["size_mib"] == size], machine["nproc"])
        targets.append(verdict)
    parameters = {"workers": counts, "sizes_mib": sizes, "recordings": {f"{s:g}": n for s, n in recordings.items()},
                  "destination": args.destination, "database": "sqlite", "broker": "redis",
                  "worker": "archiver worker --concurrency 1", "saturated_at": SATURATED, "growth": GROWTH,
                  "contended_at": CONTENDED}
    path = write_record("scale_out", parameters, {"cases": cases, "ratios": ratios}, targets, args.json, started,
                        seconds, machine)
    print(f"\nscale-out benchmark: destination {args.destination}, {machine['nproc']} CPUs, load average "
          f"{machine['loadavg_at_start']} at start, {machine['loadavg_at_end']} at end; CPU in cores over "
          f"each case; bottleneck = groups at >= {SATURATED:.0%} of their ceiling (cores/ceiling)")
    print(table([row(c) for c in cases], COLUMNS))
    for size in sizes:
        print(f"{size:g} MiB: " + ", ".join(f"{k} x{v}" for k, v in ratios[f'{size:g}'].items()))
    print(targets_text(targets))
    print(f"run time {seconds:.0f} s; results in {path}")
    return {"path": str(path), "cases": cases, "ratios": ratios, "targets": targets}


if __name__ == "__main__":
    main()
