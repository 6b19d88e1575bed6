"""Shared by the rate benchmarks: percentiles, the stdout table, machine facts and the JSON record."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least the first value
    return float(ordered[int(rank) - 1])


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _meminfo_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git() -> dict[str, Any]:
    def run(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip()

    try:
        return {"commit": run("rev-parse", "HEAD") or None, "dirty": bool(run("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info() -> dict[str, Any]:
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": _cpu_model(),
            "memory_mib": _meminfo_mib(), "python": sys.version.split()[0],
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "git": _git()}


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
        return str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def target(name: str, goal: str, measured: Any, met: bool | None, note: str = "") -> dict[str, Any]:
    verdict = "n/a" if met is None else ("met" if met else "missed")
    return {"target": name, "goal": goal, "measured": measured, "verdict": verdict, **({"note": note} if note else {})}


def targets_text(targets: Sequence[dict[str, Any]]) -> str:
    return "\n".join(f"  [{t['verdict']:>6}] {t['target']}: {t['goal']}; measured {t['measured']}"
                     + (f" ({t['note']})" if t.get("note") else "") for t in targets)


def write_record(name: str, parameters: dict[str, Any], results: Any, targets: Sequence[dict[str, Any]],
                 path: str | Path | None, started: datetime, seconds: float, machine: dict[str, Any]) -> Path:
    """bench/results/<name>-<UTC timestamp>.json unless `path` says otherwise."""
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = Path(path) if path else RESULTS / f"{name}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "date": started.isoformat(timespec="seconds"), "run_seconds": round(seconds, 1),
              "machine": machine, "parameters": parameters, "results": results, "targets": list(targets)}
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return out


def utc_now() -> datetime:
    return datetime.now(UTC)
