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
from archiver.cli.demo_stand_in import MEETING, demo_config, demo_key, media_bytes, stand_in_videosdk
from archiver.cli.timeline import COLUMNS as TIMELINE_COLUMNS
from archiver.cli.timeline import timeline_rows
from archiver.ledger.timeline import recording_timeline
from archiver.private_files import private_dir
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from archiver.videosdk.api import VideoSDKClient, VideoSDKError
from archiver.videosdk.recording_controls import Target, start_recording, stop_recording


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


def _record(runtime: Runtime, origin: str, webhook_url: str) -> Any:
    """Start a room recording on the stand-in, wait for its state webhooks, stop it, wait for the copy."""
    def states() -> set[str]:
        return {e.webhook_type for e in recording_timeline(runtime.ledger, MEETING)}

    with VideoSDKClient(origin + "/v2", api_key="demo-api-key", secret="demo-secret-0123456789abcdef0123") as client:
        start_recording(client, Target(MEETING), webhook_url=webhook_url, config={"layout": {"type": "GRID"}})
        print(f"3. A room recording was started, as `archiver recording start --room {MEETING} --layout GRID "
              f"--webhook-url {webhook_url}` does.")
        _wait(lambda: "recording-started" in states(), 30, "the recording-started webhook")
        print("4. VideoSDK's signed state webhooks reached the receiver: recording-starting, recording-started.")
        stop_recording(client, Target(MEETING))
        print(f"5. It was stopped (`archiver recording stop --room {MEETING}`): recording-stopping, then "
              "recording-stopped naming the file.")
    [job] = _wait(lambda: [j for j in runtime.ledger.jobs(meeting_id=MEETING)
                           if j.state in ("succeeded", "failed")], 90, "the copy finishing")
    return job


def cmd_demo(args: argparse.Namespace) -> int:
    folder = Path(".archiver/demo").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    private_dir(folder)
    port = _free_port()
    private, pem = demo_key(folder)
    config = demo_config(folder, port, pem)
    body = media_bytes()
    print(f"1. A stand-in for VideoSDK (REST API and CDN) runs on 127.0.0.1 with a {len(body) >> 20} MiB recording.")
    print(f"2. A short-lived stack starts with its own config ({config}); a running `make run` is untouched.")
    stack = subprocess.Popen([sys.executable, "-m", "archiver.cli", "--config", str(config), "up",
                              "--concurrency", "1"], stdout=subprocess.DEVNULL, stderr=(folder / "stack.log").open("w"))
    try:
        with stand_in_videosdk(body, private) as origin:
            _wait(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), 60, "the demo stack becoming ready")
            runtime = Runtime.create(load_settings(config))
            job = _record(runtime, origin, f"http://127.0.0.1:{port}/webhooks/videosdk")
    except (TimeoutError, VideoSDKError) as exc:
        print(f"demo failed: {exc}; the stack's log is {folder / 'stack.log'}", file=sys.stderr)
        return FOUND_PROBLEMS
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=120)
    landed = folder / "archive" / job.object_key if job.object_key else None
    print(f"6. The worker copied it: job {job.job_id} {job.state}.")
    if job.state != "succeeded" or landed is None:
        print(f"   error: {job.error_code}: {job.error_message}")
        return FOUND_PROBLEMS
    same = hashlib.sha256(landed.read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest() == job.sha256
    print(f"\nThe copy landed at {landed}\n  {job.bytes} bytes, sha256 {job.sha256} "
          f"({'matches the source' if same else 'DIFFERS from the source'})\n  manifest {landed}.json\n")
    print("Its ledger row (archiver --config " + str(config) + " status):")
    print(format_table([job.to_json()], ("job_id", "destination", "meeting_id", "state", "attempts", "bytes",
                                         "object_key", "error")))
    print(f"\nIts recording timeline (archiver --config {config} status --meeting {MEETING}), in UTC:")
    events = recording_timeline(Runtime.create(load_settings(config)).ledger, MEETING)
    print(format_table(timeline_rows(events), TIMELINE_COLUMNS))
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
