"""archiver demo: the whole loop in one command, on a stand-in for VideoSDK, in a stack of its own."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from archiver.cli.app import FOUND_PROBLEMS, OK, state, verb
from archiver.cli.common import format_table
from archiver.cli.demo_stand_in import MEETING, demo_config, demo_key, media_bytes, signed_webhook, stand_in_cdn
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


@verb("demo", short_help="see the whole loop once: webhook in, verified copy out",
      help="see the whole loop once: start a stand-in for VideoSDK (a loopback CDN and a demo signing "
           "key) and a short-lived stack with its own config under .archiver/demo/, send one signed "
           "webhook, and print where the copy landed and its ledger row. Works whether or not `make run` "
           "is running.")
def demo() -> int:
    as_json = state().json
    say = (lambda *_a, **_k: None) if as_json else print
    folder = Path(".archiver/demo").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    private_dir(folder)
    port = _free_port()
    private, pem = demo_key(folder)
    config = demo_config(folder, port, pem)
    body = media_bytes()
    say(f"1. A stand-in for VideoSDK's CDN serves a {len(body) >> 20} MiB recording on 127.0.0.1.")
    say(f"2. A short-lived stack starts with its own config ({config}); a running `make run` is untouched.")
    stack = subprocess.Popen([sys.executable, "-m", "archiver.cli", "--config", str(config), "up",
                              "--concurrency", "1"], stdout=subprocess.DEVNULL, stderr=(folder / "stack.log").open("w"))
    try:
        with stand_in_cdn(body) as file_url:
            _wait(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), 60, "the demo stack becoming ready")
            raw, signature = signed_webhook(file_url, private)
            answer = httpx.post(f"http://127.0.0.1:{port}/webhooks/videosdk", content=raw, timeout=30,
                                headers={"content-type": "application/json", "videosdk-signature": signature})
            say(f"3. A signed recording-stopped webhook was POSTed: HTTP {answer.status_code} {answer.text}")
            runtime = Runtime.create(load_settings(config))
            [job] = _wait(lambda: [j for j in runtime.ledger.jobs(meeting_id=MEETING)
                                   if j.state in ("succeeded", "failed")], 90, "the copy finishing")
    except TimeoutError as exc:
        print(f"demo failed: {exc}; the stack's log is {folder / 'stack.log'}", file=sys.stderr)
        return FOUND_PROBLEMS
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=120)
    landed = folder / "archive" / job.object_key if job.object_key else None
    say(f"4. The worker copied it: job {job.job_id} {job.state}.")
    if job.state != "succeeded" or landed is None:
        say(f"   error: {job.error_code}: {job.error_message}")
        if as_json:
            print(json.dumps({"job": job.to_json(), "matches": False}, indent=2, default=str))
        return FOUND_PROBLEMS
    source_sha = hashlib.sha256(body).hexdigest()
    copy_sha = hashlib.sha256(landed.read_bytes()).hexdigest()
    same = source_sha == copy_sha == job.sha256
    if as_json:
        print(json.dumps({"copy": str(landed), "bytes": job.bytes, "source_sha256": source_sha,
                          "copy_sha256": copy_sha, "ledger_sha256": job.sha256, "matches": same,
                          "job": job.to_json()}, indent=2, default=str))
        return OK if same else FOUND_PROBLEMS
    print(f"\nThe copy landed at {landed}\n  {job.bytes} bytes\n"
          f"  sha256 of the source {source_sha}\n  sha256 of the copy   {copy_sha}\n"
          f"  ({'matches the source' if same else 'DIFFERS from the source'}; the ledger records {job.sha256})\n"
          f"  manifest {landed}.json\n")
    print("Its ledger row (archiver --config " + str(config) + " status):")
    print(format_table([job.to_json()], ("job_id", "destination", "meeting_id", "state", "attempts", "bytes",
                                         "object_key", "error")))
    print("\n" + json.dumps({k: v for k, v in job.to_json().items() if k in ("sha256", "source_url", "received_at")},
                            indent=2))
    return OK if same else FOUND_PROBLEMS


def register(group: click.Group) -> None:
    group.add_command(demo)
