"""`make lint`'s dependency audit: pip-audit over the image's hashed lock files.

    python -m tests.dependency_audit requirements.lock requirements.azure-identity.lock

Exit 1 when a locked version has a known vulnerability (each one is listed). When no vulnerability
database answers (no network, or an index without the JSON API, where pip-audit skips every package)
it prints one notice line and exits 0: `make lint` never fails because the network is down. Any other
failure of pip-audit exits 2 with its last line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT_SECONDS = 120  # keeps `make lint` bounded when a database answers slowly
_NETWORK_WORDS = ("ConnectionError", "NameResolution", "Max retries", "timed out", "Timeout", "ProxyError",
                  "SSLError", "Temporary failure", "Network is unreachable")


def verdict(returncode: int, report: str | None, stderr: str) -> tuple[int, list[str]]:
    """(exit code, lines to print) for one pip-audit run: its return code, its JSON report (None if
    it wrote none) and its stderr."""
    if report is None:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        if returncode == -1 or any(word in stderr for word in _NETWORK_WORDS):
            return 0, [f"dependency audit skipped: no vulnerability database reachable ({last[:160]})"]
        return 2, [f"dependency audit failed: pip-audit exited {returncode}: {last[:300]}"]
    dependencies = json.loads(report).get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    if dependencies and not audited:
        return 0, [f"dependency audit skipped: no vulnerability database answered for any of "
                   f"{len(dependencies)} locked packages"]
    found = [f"  {d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or []) or '-'})"
             for d in audited for v in d.get("vulns") or []]
    if found:
        return 1, [f"dependency audit: {len(found)} known vulnerabilities in locked packages "
                   "(raise the pins in pyproject.toml, then `make lock`):", *found]
    skipped = len(dependencies) - len(audited)
    return 0, [f"dependency audit: no known vulnerabilities in {len(audited)} locked packages"
               + (f" ({skipped} not found in the database)" if skipped else "")]


def audit(lock: Path) -> tuple[int, list[str]]:
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "report.json"
        argv = [sys.executable, "-m", "pip_audit", "--requirement", str(lock), "--require-hashes", "--disable-pip",
                "--progress-spinner", "off", "--format", "json", "--output", str(output)]
        try:
            run = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            return verdict(-1, None, f"no answer within {TIMEOUT_SECONDS} s")
        report = output.read_text() if output.exists() and output.stat().st_size else None
        return verdict(run.returncode, report, run.stderr)


def main(argv: list[str]) -> int:
    worst = 0
    for lock in argv or ["requirements.lock"]:
        code, lines = audit(Path(lock))
        print(f"{lock}: " + "\n".join(lines), flush=True)
        worst = max(worst, code)
        if code == 0 and "skipped" in lines[0]:
            break  # the next lock would meet the same unreachable database
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
