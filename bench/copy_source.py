"""The stand-in CDN (tests/http_source.py) in a process of its own, for bench.copy_throughput.

    .venv/bin/python -m bench.copy_source

Prints one JSON line {"port": N} once it is listening, then serves generated files at
/files/<name>?size=N (Range supported) until its standard input closes, i.e. until the benchmark
closes the pipe or dies. Running it apart keeps its GIL and CPU out of the processes measured.
"""

from __future__ import annotations

import json
import sys

from tests.http_source import HttpSource


def main() -> None:
    with HttpSource() as source:
        print(json.dumps({"port": source.port}), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
