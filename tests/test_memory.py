"""A write's memory is bounded by part_size x concurrency plus a constant, whatever the object's size."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from tests.backends import KINDS, provider_factory
from tests.test_conformance import Unsized

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
    provider.upload("warm-up.bin", Unsized(1 << 20))  # SDK clients and pools exist before measuring
    tracemalloc.start()
    try:
        info = provider.upload("mem/512MiB.bin", Unsized(SIZE))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    provider.delete("mem/512MiB.bin")  # the emulators keep objects in memory
    assert info.size == SIZE
    print(f"\n{kind}: peak traced allocation {peak / 2**20:.1f} MiB for a 512 MiB write "
          f"(bound {BOUND / 2**20:.0f} MiB)")
    assert peak < BOUND, f"{kind} peaked at {peak / 2**20:.1f} MiB, over {BOUND / 2**20:.0f} MiB"
