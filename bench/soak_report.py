"""The soak's report: one table of what was sent, injected and found, and the detail of each problem
(the job's attempts and the worker log lines naming it) for a reproduction."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.soak_check import CATEGORIES, Verdict

FAULT_PREFIXES = ("cdn_", "s3.", "azure.", "gcs.", "worker_kill", "broker_", "db_", "s3_storm", "azure_storm",
                  "gcs_storm")


def explain(verdict: Verdict, engine: Any, root: Path) -> None:
    """Attach each problem job's attempts and the worker log lines naming it (for reproductions)."""
    logs = [p.read_text(errors="replace").splitlines() for p in sorted(root.glob("worker*.log"))]
    for problem in verdict.problems[:50]:
        if problem.get("job") is None:
            continue
        with engine.connect() as db:
            if "file" not in problem:
                row = db.execute(text("SELECT f.file_path, j.destination FROM copy_jobs j JOIN recording_files f "
                                      "ON f.id = j.file_id WHERE j.id = :j"), {"j": problem["job"]}).first()
                if row is not None:
                    problem["file"], problem["destination"] = row[0].lstrip("/"), row[1]
            problem["attempts"] = [dict(r) for r in db.execute(text(
                "SELECT number, worker, outcome, error_code, substr(error_message, 1, 300) AS error "
                "FROM job_attempts WHERE job_id = :j ORDER BY number"), {"j": problem["job"]}).mappings()]
        needle = f"job {problem['job']}"
        problem["log"] = [line[:400] for lines in logs for line in lines if needle + ":" in line or
                          f'"job_id": {problem["job"]}' in line][-8:]


def summary(args: argparse.Namespace, out: dict[str, Any], counts: Counter[str], seconds: float) -> list[dict]:
    verdict: Verdict = out["verdict"]
    deliveries = out["deliveries"]
    files = [r for d in deliveries for r in d.event.files]
    window = out["ran"] + out["drained"]
    rows: list[tuple[str, Any]] = [
        ("webhooks sent (distinct, with files)", counts["webhooks_sent"]),
        ("  accepted (202)", sum(1 for d in deliveries if d.status == 202)),
        ("  state-only webhooks", sum(v for k, v in counts.items() if k.startswith("state_webhook_"))),
        ("  POSTs in all / 503s retried", f"{counts['webhook_posts']} / {counts['webhook_503_retried']}"),
        ("duplicates sent", sum(counts[k] for k in ("dup_same", "dup_reserialised", "dup_overlap"))),
        *[(f"  {k}", counts[k]) for k in ("dup_same", "dup_reserialised", "dup_overlap")],
        ("recordings announced / MiB", f"{len(files)} / {sum(r.sizes[0] for r in files) / (1 << 20):.1f}"),
        ("faults injected", sum(v for k, v in counts.items() if k.startswith(FAULT_PREFIXES)
                                and not k.endswith(("_skipped", "_failed")))),
        *[(f"  {k}", v) for k, v in sorted(counts.items()) if k.startswith(FAULT_PREFIXES)],
        ("lease sweeps sent / missed", f"{counts['sweeps_sent']} / {counts['sweeps_missed']}"),
        ("copies verified (file x destination)", verdict.counts["ok"]),
        ("  of an older version (superseded)", verdict.counts["superseded"]),
        ("  late: message lost by the broker, re-enqueued by the sweeper", len(out["late"])),
        ("  deleted on purpose: failed / retrying", f"{verdict.counts['gone_failed']} / "
                                                    f"{verdict.counts['gone_pending']}"),
        *[(c.upper() if verdict.counts[c] else c, verdict.counts[c]) for c in CATEGORIES],
        ("processes that exited on their own", counts["worker_exited_unexpectedly"]
         + counts["receiver_exited_unexpectedly"]),
        ("elapsed s (run + drain / total)", f"{out['ran']:.0f} + {out['drained']:.0f} / {seconds:.0f}"),
        ("throughput copies/s, MiB/s", f"{verdict.counts['ok'] / window:.2f}, "
                                       f"{verdict.copied_bytes / (1 << 20) / window:.2f}"),
    ]
    return [{"measure": k, "value": v} for k, v in rows]


def grouped(problems: list[dict[str, Any]]) -> list[str]:
    """One line per category, object and detail, naming every destination it happened in."""
    lines: dict[tuple[str, str, str, str], list[str]] = {}
    for p in problems:
        what = p.get("file") or p.get("key") or "-"
        detail = p["detail"].replace(str(p.get("file")), "FILE")
        lines.setdefault((p["category"], what, str(p.get("faults", "")), detail), []).append(p.get("destination", "-"))
    return [f"{cat}: {what} {faults} in {'+'.join(dests)}: {detail}"
            for (cat, what, faults, detail), dests in lines.items()]

