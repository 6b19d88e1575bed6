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


def _record(runtime: Runtime, origin: str, webhook_url: str, say: Any) -> Any:
    """Start a room recording on the stand-in, wait for its state webhooks, stop it, wait for the copy."""
    def states() -> set[str]:
        return {e.webhook_type for e in recording_timeline(runtime.ledger, MEETING)}

    with VideoSDKClient(origin + "/v2", api_key="demo-api-key", secret="demo-secret-0123456789abcdef0123") as client:
        start_recording(client, Target(MEETING), webhook_url=webhook_url, config={"layout": {"type": "GRID"}})
        say(f"3. A room recording was started, as `archiver recording start --room {MEETING} --layout GRID "
            f"--webhook-url {webhook_url}` does.")
        _wait(lambda: "recording-started" in states(), 30, "the recording-started webhook")
        say("4. VideoSDK's signed state webhooks reached the receiver: recording-starting, recording-started.")
        stop_recording(client, Target(MEETING))
        say(f"5. It was stopped (`archiver recording stop --room {MEETING}`): recording-stopping, then "
            "recording-stopped naming the file.")
    [job] = _wait(lambda: [j for j in runtime.ledger.jobs(meeting_id=MEETING)
                           if j.state in ("succeeded", "failed")], 90, "the copy finishing")
    return job


@verb("demo", short_help="see the whole loop once: webhook in, verified copy out",
      help="see the whole loop once: start a stand-in for VideoSDK (REST API, CDN and a demo signing "
           "key) and a short-lived stack with its own config under .archiver/demo/, start and stop a "
           "recording, and print its timeline, where the copy landed and its ledger row. Works "
           "whether or not `make run` is running.")
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
    say(f"1. A stand-in for VideoSDK (REST API and CDN) runs on 127.0.0.1 with a {len(body) >> 20} MiB recording.")
    say(f"2. A short-lived stack starts with its own config ({config}); a running `make run` is untouched.")
    stack = subprocess.Popen([sys.executable, "-m", "archiver.cli", "--config", str(config), "up",
                              "--concurrency", "1"], stdout=subprocess.DEVNULL, stderr=(folder / "stack.log").open("w"))
    try:
        with stand_in_videosdk(body, private) as origin:
            _wait(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), 60, "the demo stack becoming ready")
            runtime = Runtime.create(load_settings(config))
            job = _record(runtime, origin, f"http://127.0.0.1:{port}/webhooks/videosdk", say)
    except (TimeoutError, VideoSDKError) as exc:
        print(f"demo failed: {exc}; the stack's log is {folder / 'stack.log'}", file=sys.stderr)
        return FOUND_PROBLEMS
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=120)
    landed = folder / "archive" / job.object_key if job.object_key else None
    say(f"6. The worker copied it: job {job.job_id} {job.state}.")
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
    print(f"\nIts recording timeline (archiver --config {config} status --meeting {MEETING}), in UTC:")
    events = recording_timeline(Runtime.create(load_settings(config)).ledger, MEETING)
    print(format_table(timeline_rows(events), TIMELINE_COLUMNS))
    print("\n" + json.dumps({k: v for k, v in job.to_json().items() if k in ("sha256", "source_url", "received_at")},
                            indent=2))
    return OK if same else FOUND_PROBLEMS


def register(group: click.Group) -> None:
    group.add_command(demo)
