"""The chaos soak (bench.soak) runs once, briefly and without faults, so it cannot rot; and its checker
is shown to catch what it exists to catch, with damage planted in the destinations after the drain.
The fault schedule is checked to be the seed's."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from bench import soak
from bench.soak_check import Stores
from bench.soak_plan import ALL, DEFAULT, OFF_BY_DEFAULT, parse_faults, plan_actions, plan_events


def test_fault_selection_reads_left_to_right() -> None:
    assert parse_faults("default") == DEFAULT == ALL  # every kind the product handles runs by default
    assert not set(OFF_BY_DEFAULT) & set(DEFAULT)
    assert parse_faults("default,-cdn_late404,+cdn_late404") == (*(k for k in DEFAULT if k != "cdn_late404"),
                                                                 "cdn_late404")
    assert parse_faults("all,-cdn_splice") == tuple(k for k in ALL if k != "cdn_splice")
    assert parse_faults("none,+worker_kill,db_drop") == ("worker_kill", "db_drop")
    with pytest.raises(ValueError, match="unknown cdn_explode; known: default, all, none, cdn_drop"):
        parse_faults("default,+cdn_explode")


def test_the_seed_decides_recordings_webhooks_and_fault_times() -> None:
    def shape(seed: int) -> list[tuple[object, ...]]:
        return [(e.webhook_type, e.meeting_id, tuple((r.path, r.sizes, r.faults) for r in e.files),
                 tuple(e.duplicates)) for e in plan_events(seed, 40, DEFAULT)]

    assert shape(5) == shape(5) != shape(6)
    assert plan_actions(5, 300, DEFAULT) == plan_actions(5, 300, DEFAULT) != plan_actions(6, 300, DEFAULT)
    chosen = tuple(k for k in DEFAULT if k != "cdn_splice")
    kinds = {f for e in plan_events(5, 400, chosen) for r in e.files for f in r.faults}
    assert kinds and kinds <= set(chosen)  # a kind not chosen is never planned
    assert {a.kind for a in plan_actions(5, 60, ("worker_kill",))} == {"worker_kill"}


def test_soak_passes_clean_and_its_checker_finds_planted_damage(tmp_path: Path) -> None:
    planted: dict[str, str] = {}

    def plant(stores: Stores) -> None:
        s3_key = next(k for k in sorted(stores.listing("s3")) if not k.endswith(".json"))
        stores.s3.put_object(Bucket=stores.buckets["s3"], Key=s3_key, Body=b"not the recording")
        azure_key = sorted(stores.listing("azure"))[0]
        stores.azure.upload_blob(azure_key + ".copy", b"".join(stores.chunks("azure", azure_key)))
        stores.gcs.blob("rec/.archiver-probe-0123").upload_from_string(b"probe")
        local_key = sorted(stores.listing("local"))[0]
        (stores.local / local_key).unlink()
        planted.update(s3=s3_key, azure=azure_key + ".copy", gcs="rec/.archiver-probe-0123", local=local_key)

    args = soak.options(["--duration", "6", "--faults", "none", "--seed", "3", "--max-mib", "2",
                         "--backlog", "8", "--json", str(tmp_path / "soak.json")])
    with contextlib.ExitStack() as stack:
        out = soak.run(args, tmp_path, Counter(), threading.Lock(), stack, before_check=plant)
    verdict = out["verdict"]
    files = sum(len(d.event.files) for d in out["deliveries"])
    assert files >= 1 and all(d.status == 202 for d in out["deliveries"])
    assert {k: verdict.counts[k] for k in ("lost", "duplicated", "corrupted", "stuck", "stray")} == \
        {"lost": 1, "duplicated": 1, "corrupted": 1, "stuck": 0, "stray": 1}
    assert verdict.counts["ok"] == 4 * files - 2  # every copy but the overwritten and the deleted one
    found = {p["category"]: p for p in verdict.problems}
    assert found["corrupted"]["destination"] == "s3" and "equal to no version" in found["corrupted"]["detail"]
    assert found["lost"]["destination"] == "local" and found["lost"]["file"].endswith(planted["local"].split("/")[-1])
    assert found["duplicated"]["key"] == planted["azure"] and found["stray"]["key"] == planted["gcs"]
    json.dumps(verdict.problems, default=str)  # the record can be written
