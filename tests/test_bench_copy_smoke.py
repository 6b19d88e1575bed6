"""`make bench`'s copy benchmark (bench/copy_throughput.py), run once on tiny inputs so it cannot rot.

It needs rclone and GNU time: the benchmark installs them with apt-get when it can, and otherwise
exits 2 saying what to install, which fails this test with that message (it is never skipped).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.emulators import ROOT


@pytest.mark.timeout(120)
def test_copy_benchmark_runs_end_to_end_on_tiny_inputs(tmp_path: Path) -> None:
    out = tmp_path / "copy.json"
    proc = subprocess.run([sys.executable, "-m", "bench.copy_throughput", "--sizes", "1", "--memory-sizes", "1,2",
                           "--repeat", "1", "--providers", "s3", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode != 2, ("the copy benchmark needs rclone and GNU time and could not install them; "
                                  f"run `apt-get install -y rclone time`:\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"

    doc = json.loads(out.read_text())
    runs = {(s["kind"], s["provider"], s["size_mib"], s["contender"]) for s in doc["samples"]}
    assert runs == {("throughput", "s3", 1, c) for c in ("ours", "rclone", "rclone-tuned", "ceiling")} | {
        ("memory", "s3", 1, "ours"), ("memory", "s3", 2, "ours")}
    for sample in doc["samples"]:
        assert sample["error"] is None, sample
        assert sample["mb_s"] > 0 and sample["seconds"] > 0, sample
        # Each process's own peak, not the parent's: a Python interpreter is tens of MB, and rclone's
        # peak is not the one of a Python process.
        assert 10 < sample["peak_rss_mb"] < 1000, sample
    rss = {s["contender"]: s["peak_rss_mb"] for s in doc["samples"] if s["kind"] == "throughput"}
    assert rss["rclone"] != rss["ours"]

    assert {r["versus"] for r in doc["ratios"]} == {"rclone", "rclone-tuned", "ceiling"}
    assert all(r["ours_over"] > 0 for r in doc["ratios"])
    assert [t["met"] in (True, False) for t in doc["targets"]] == [True] * 4, doc["targets"]
    assert doc["machine"]["rclone"].startswith("rclone v") and doc["machine"]["nproc"] >= 1
    assert "ours (run_copy_job)" in proc.stdout and "targets:" in proc.stdout
