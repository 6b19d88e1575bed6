"""archiver demo: the whole loop in one command, on a stand-in for VideoSDK, in a stack of its own."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from archiver.cli.common import FOUND_PROBLEMS, OK, format_table
from archiver.cli.demo_stand_in import MEETING, demo_config, demo_key, media_bytes, signed_webhook, stand_in_cdn
from archiver.domain.states import JobState
from archiver.private_files import private_dir
from archiver.runtime import Runtime
from archiver.settings.config import load_settings


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def cmd_demo(args: argparse.Namespace) -> int:
    folder = Path(".archiver/demo").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    private_dir(folder)
    port = _free_port()
    private, pem = demo_key(folder)
    config = demo_config(folder, port, pem)
    body = media_bytes()
    print(f"1. A stand-in for VideoSDK's CDN serves a {len(body) >> 20} MiB recording on 127.0.0.1.")
    print(f"2. A short-lived stack starts with its own config ({config}); a running `make run` is untouched.")
    stack = subprocess.Popen([sys.executable, "-m", "archiver.cli", "--config", str(config), "up",
                              "--concurrency", "1"], stdout=subprocess.DEVNULL, stderr=(folder / "stack.log").open("w"))
    try:
        with stand_in_cdn(body) as file_url:
            _wait(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), 60, "the demo stack becoming ready")
            raw, signature = signed_webhook(file_url, private)
            answer = httpx.post(f"http://127.0.0.1:{port}/webhooks/videosdk", content=raw, timeout=30,
                                headers={"content-type": "application/json", "videosdk-signature": signature})
            print(f"3. A signed recording-stopped webhook was POSTed: HTTP {answer.status_code} {answer.text}")
            runtime = Runtime.create(load_settings(config))
            [job] = _wait(lambda: [j for j in runtime.ledger.jobs(meeting_id=MEETING)
                                   if j.state in (JobState.SUCCEEDED, JobState.FAILED)], 90, "the copy finishing")
    except TimeoutError as exc:
        print(f"demo failed: {exc}; the stack's log is {folder / 'stack.log'}", file=sys.stderr)
        return FOUND_PROBLEMS
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=120)
    landed = folder / "archive" / job.object_key if job.object_key else None
    print(f"4. The worker copied it: job {job.job_id} {job.state}.")
    if job.state != JobState.SUCCEEDED or landed is None:
        print(f"   error: {job.error_code}: {job.error_message}")
        return FOUND_PROBLEMS
    same = hashlib.sha256(landed.read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest() == job.sha256
    print(f"\nThe copy landed at {landed}\n  {job.bytes} bytes, sha256 {job.sha256} "
          f"({'matches the source' if same else 'DIFFERS from the source'})\n  manifest {landed}.json\n")
    print("Its ledger row (archiver --config " + str(config) + " status):")
    print(format_table([job.to_json()], ("job_id", "destination", "meeting_id", "state", "attempts", "bytes",
                                         "object_key", "error")))
    print("\n" + json.dumps({k: v for k, v in job.to_json().items() if k in ("sha256", "source_url", "received_at")},
                            indent=2))
    return OK if same else FOUND_PROBLEMS


def register(verbs: Any) -> None:
    demo = verbs.add_parser("demo", help="see the whole loop once: webhook in, verified copy out",
                            description="Start a stand-in for VideoSDK (a loopback CDN and a demo signing key) "
                                        "and a short-lived stack with its own config under .archiver/demo/, "
                                        "send one signed webhook, and print where the copy landed and its "
                                        "ledger row. Works whether or not `make run` is running.")
    demo.set_defaults(func=cmd_demo)
