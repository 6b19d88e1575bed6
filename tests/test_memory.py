"""A write's memory is bounded by part_size x concurrency plus a constant, whatever the object's size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import KINDS, provider_factory
from tests.emulators import ROOT

PART_SIZE = 8 << 20
CONCURRENCY = 4
SIZE = 512 << 20
# Headroom for the copy loop's read buffer, SDK request objects and one part being handed over.
CONSTANT = 16 << 20
BOUND = PART_SIZE * CONCURRENCY + CONSTANT


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_512_mib_stays_under_the_bound(kind: str, request: pytest.FixtureRequest,
                                                  tmp_path: Path) -> None:
    provider = provider_factory(kind, request, tmp_path)(part_size=PART_SIZE, concurrency=CONCURRENCY)
    options = {k: v for k, v in provider.options.items() if v is not None}
    url = provider.url if kind != "file" else f"file://{provider.root}/{provider.prefix}"  # type: ignore[attr-defined]
    child = subprocess.run([sys.executable, "-m", "tests.memprobe", url, json.dumps(options), str(SIZE)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["size"] == SIZE
    peak = result["traced_peak"]
    rss, rss_before = result["rss_peak_kib"] / 1024, result["rss_before_kib"] / 1024
    print(f"\n{kind}: 512 MiB write: peak traced allocation {peak / 2**20:.1f} MiB (bound {BOUND / 2**20:.0f} MiB), "
          f"peak RSS {rss:.0f} MiB (before the write {rss_before:.0f} MiB)")
    assert peak < BOUND, f"{kind} peaked at {peak / 2**20:.1f} MiB, over {BOUND / 2**20:.0f} MiB"
