"""Part buffers freed by a copy go back to the OS, so a long copy does not grow the process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.emulators import ROOT

# Allocate and free 8 MiB buffers (the default part size) from a part thread and the main thread,
# as a copy does, and report how much the process's resident memory grew.
PROBE = r"""
import json, sys, threading
from archiver.worker.memory_tuning import map_large_buffers

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

applied = map_large_buffers() if sys.argv[1] == "tuned" else False
base = rss_mib()

def parts():
    for _ in range(4):
        part = bytearray(8 << 20)
        part[::4096] = b"x" * len(part[::4096])  # touch every page, as filling a part does
        del part

worker = threading.Thread(target=parts)
worker.start()
worker.join()
parts()
print(json.dumps({"applied": applied, "grew_mib": rss_mib() - base}))
"""


def _probe(mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_freed_part_buffers_leave_the_process() -> None:
    plain, tuned = _probe("plain"), _probe("tuned")
    assert tuned["applied"] is True  # this machine runs glibc
    assert tuned["grew_mib"] < 2, tuned
    # The probe can tell: without the fixed threshold the same buffers stay resident.
    assert plain["grew_mib"] >= 8, plain


def test_an_operator_threshold_is_left_alone() -> None:
    code = "from archiver.worker.memory_tuning import map_large_buffers; print(map_large_buffers())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "MALLOC_MMAP_THRESHOLD_": "4194304"})
    assert out.stdout.strip() == "False", out.stderr
