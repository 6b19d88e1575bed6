"""The rate benchmarks (bench.intake, bench.end_to_end) run once on tiny inputs, so they cannot rot.

The numbers are not judged here (a shared CI machine proves nothing about rates); what is checked is
that every part starts, every request and copy is accounted for, and the record has its fields.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import end_to_end, intake
from bench.loadreport import percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_intake_benchmark_accounts_for_every_202(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "intake.json"
    intake.main(["--rates", "20", "--duration", "1", "--max-concurrency", "4", "--max-requests", "60",
                 "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["benchmark"] == "intake"
    assert {"nproc", "memory_mib", "python"} <= set(record["machine"])
    phases = {p["phase"]: p for p in record["results"]}
    assert set(phases) == {"rate20", "max"}
    assert phases["rate20"]["sent"] == 20
    for phase in phases.values():
        assert phase["statuses"] == {"202": phase["sent"]}
        check = phase["loss_check"]
        assert check["lost"] == 0 and check["messages"] == check["jobs"] == check["accepted"]
        assert check["messages_duplicated"] == check["messages_unexpected"] == check["jobs_not_pending"] == 0
        assert phase["p50_ms"] is not None and phase["p99_ms"] >= phase["p50_ms"]
    verdicts = {t["target"]: t["verdict"] for t in record["targets"]}
    assert verdicts == {"intake rate": verdicts["intake rate"], "intake p99 at 500/s": "n/a", "zero lost": "met"}
    assert "achieved/s" in capsys.readouterr().out


def test_end_to_end_benchmark_copies_and_verifies_every_recording(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e2e.json"
    end_to_end.main(["--recordings", "5", "--warmup", "1", "--destination", "s3", "--json", str(out)])
    record = json.loads(out.read_text())
    result = record["results"]
    assert record["benchmark"] == "end_to_end" and record["parameters"]["destination"] == "s3"
    assert result["recordings"] == result["succeeded"] == result["verified"] == 5
    assert result["recordings_per_s"] > 0
    assert result["latency_ms"]["p95"] >= result["latency_ms"]["p50"] > 0
    assert result["outcomes"].get("succeeded", 0) >= 6  # the warm-up recording too
    assert {"receiver", "worker0", "worker1", "moto", "cdn", "redis"} <= set(result["cpu_share"])
    assert record["targets"][0]["verdict"] in ("met", "missed")
    assert "rec/s" in capsys.readouterr().out
