"""`make bench`: every benchmark in one run on this machine, each printing its table and writing JSON
to bench/results/. Arguments after `--` go to every benchmark (e.g. `-- --repeat 5`).

    .venv/bin/python -m bench [copy] [intake] [end_to_end] [scale_out]
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = {
    "copy": ["bench.copy_throughput"],
    "intake": ["bench.intake"],
    "end_to_end": ["bench.end_to_end"],
    "scale_out": ["bench.scale_out"],  # ~5 min: 1, 2, 4 workers x 1 and 64 MiB
}


def main(argv: list[str]) -> int:
    chosen = [a for a in argv if a in BENCHMARKS] or list(BENCHMARKS)
    failed = []
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", *BENCHMARKS[name]]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
