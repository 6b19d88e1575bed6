"""Shared by the reconcile and retention tests of every recording kind: a config whose destinations are
local disk and moto's S3, recordings of each kind in the VideoSDK stand-in whose files the stand-in CDN
(tests.http_source) serves, the CLI run in-process, and copies run with ``run_copy_job``."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from archiver.cli import main
from archiver.copy.job import run_copy_job
from archiver.domain.recordings import RecordingKind
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from tests.backends import create_s3_bucket
from tests.http_source import HttpSource
from tests.videosdk_stand_in import VideoSDKStandIn

API_KEY, SECRET = "kinds-api-key", "kinds-secret-0123456789abcdef0123456789"
S3_SECRET = "ARCHIVER_TEST_KINDS_S3_SECRET"
SESSION = "66d9c3a1e4b0c2a1f0e9d8c7"


def configure(tmp_path: Path, database_url: str, sdk: VideoSDKStandIn, monkeypatch: pytest.MonkeyPatch, *,
              moto_url: str | None = None, retention: bool = False, disk_only: bool = False) -> Path:
    """archiver.toml with a disk destination and (unless ``disk_only``) an S3 one in a fresh bucket."""
    s3 = ""
    if not disk_only:
        assert moto_url is not None
        bucket = f"kinds-{secrets.token_hex(4)}"
        create_s3_bucket(moto_url, bucket)
        monkeypatch.setenv(S3_SECRET, "moto-secret-key")
        s3 = f"""
[[destinations]]
name = "s3"
url = "s3://{bucket}/{{meetingId}}/{{kind|all}}/{{filename}}"
endpoint_url = "{moto_url}"
region = "us-east-1"
addressing_style = "path"
access_key_id = "testing"
secret_access_key_env = "{S3_SECRET}"
"""
    config = tmp_path / "archiver.toml"
    config.write_text(f"""
database_url = "{database_url}"
broker_url = "sqla+sqlite:///{tmp_path}/broker.db"
{'[retention]' + chr(10) + 'delete_from_videosdk = "after-verified"' if retention else ''}

[videosdk]
api_base = "{sdk.api_base}"
api_key = "{API_KEY}"

[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
not_found_grace_minutes = 0

[[destinations]]
name = "disk"
url = "file://{tmp_path}/disk/{{meetingId}}/{{participantId|room}}/{{kind|all}}/"
{s3}""")
    monkeypatch.setenv("ARCHIVER_CONFIG", str(config))
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", SECRET)
    return config


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """``archiver ARGV`` in this process: (exit code, stdout as JSON when it is JSON, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except ValueError:
        return code, out, err


def copy_all(config: Path, room: str) -> Runtime:
    """Run every pending copy job of the room, in this process; each must succeed."""
    runtime = Runtime.create(load_settings(config))
    for job in runtime.ledger.jobs(meeting_id=room, state="pending"):
        outcome = run_copy_job(runtime, job.job_id)
        assert outcome.state == "succeeded", (job.file_path, job.destination, outcome.error)
    return runtime


@dataclass(frozen=True)
class Served:
    """One file of a recording as the CDN serves it: its name there and its size."""

    name: str
    size: int


def add_kind(sdk: VideoSDKStandIn, cdn: HttpSource, kind: RecordingKind, room: str, *, tag: str = "",
             files: int = 2, created: str | None = None) -> tuple[str, list[Served]]:
    """A recording of ``kind`` in the room, its files on the CDN: (recording id, its files). Participant and
    track recordings get ``files`` files; a transcript gets json + txt and a summary txt."""
    token = tag or secrets.token_hex(3)

    def served(stem: str, ext: str, size: int) -> tuple[Served, str]:
        name = f"{stem}-{token}.{ext}"
        return Served(name, size), cdn.file_url(name, size=size)

    if kind in (RecordingKind.ROOM, RecordingKind.COMPOSITE, RecordingKind.TRANSCODING):
        file, url = served(f"{kind}", "mp4", 150_000)
        adder = {RecordingKind.ROOM: sdk.add_recording, RecordingKind.COMPOSITE: sdk.add_composite,
                 RecordingKind.TRANSCODING: sdk.add_transcoding}[kind]
        return adder(room, session_id=SESSION, file_path=f"uploads/videos/{file.name}", file_url=url, size=file.size,
                     created_at=created), [file]
    if kind in (RecordingKind.PARTICIPANT, RecordingKind.TRACK):
        track = "audio" if kind is RecordingKind.TRACK else None
        made = [served(f"part{n}", "webm", 40_000 + 1000 * n) for n in range(files)]
        folder = f"individual-recordings/{SESSION}/p-1/" + (f"{track}/" if track else "")
        rid = sdk.add_participant_recording(room, session_id=SESSION, participant_id="p-1", track=track,
                                            start=created, files=[(folder + f.name, url, f.size) for f, url in made])
        return rid, [f for f, _ in made]
    if kind is RecordingKind.MERGE:
        file, url = served("merged", "mp3", 30_000)
        return sdk.add_merge_recording(room, session_id=SESSION, file_path=f"merged/{file.name}", file_url=url,
                                       size=file.size, start=created), [file]
    assert kind is RecordingKind.TRANSCRIPT
    (json_file, json_url), (txt, txt_url) = served("words", "json", 2_000), served("words", "txt", 1_000)
    summary, summary_url = served("words", "txt", 1_000)  # same name as the transcript's txt: {kind} tells them apart
    return sdk.add_transcript(room, session_id=SESSION, transcription={"json": json_url, "txt": txt_url},
                              summary={"txt": summary_url}, created_at=created), [json_file, txt, summary]
