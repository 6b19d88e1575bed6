"""Child process for the memory test: stream N bytes through one provider, print the peaks as JSON.

Runs apart from the test process because moto's server lives in the test process and its stored
objects would otherwise count against the writer.
"""

from __future__ import annotations

import json
import sys
import tracemalloc

from providers import open_provider
from providers.testing import Unsized


def peak_rss_kib() -> int:
    # VmHWM belongs to this address space; ru_maxrss would include the forking parent's peak.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def main() -> None:
    url, options_json, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    provider = open_provider(url, **json.loads(options_json))
    provider.upload("warm-up.bin", Unsized(1 << 20))  # clients and pools exist before measuring
    rss_before = peak_rss_kib()
    tracemalloc.start()
    info = provider.upload("mem/stream.bin", Unsized(size))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    provider.delete("mem/stream.bin")
    provider.delete("warm-up.bin")
    print(json.dumps({"size": info.size, "traced_peak": peak, "rss_before_kib": rss_before,
                      "rss_peak_kib": peak_rss_kib()}))


if __name__ == "__main__":
    main()
