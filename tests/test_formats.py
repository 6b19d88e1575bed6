"""Transcripts and every other format VideoSDK produces: judged by the file's declared format (a JSON
transcript served as JSON is the file; an .mp4 served as HTML is an error page), stored with the
format's Content-Type; an encrypted recording's key and meta files copied beside the media, and a
key that cannot be copied says the media is unusable without it."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from archiver.copy.job import run_copy_job
from archiver.domain.formats import declared_format, object_content_type, refusal
from archiver.domain.recordings import RecordingFile, RecordingKind
from archiver.intake.record import Origin, accept_event, record_files
from archiver.ledger.store import utcnow
from archiver.runtime import Runtime
from tests.copy_runtime import local_destination, read, runtime_for, s3_destination
from tests.http_source import HttpSource

TRANSCRIPTS = [  # name, kind, served Content-Type, Content-Type of the archived object
    ("transcript.json", "transcript", "application/json; charset=utf-8", "application/json"),
    ("transcript.srt", "transcript", "application/x-subrip", "application/x-subrip"),
    ("transcript.txt", "transcript", "text/plain", "text/plain; charset=utf-8"),
    ("transcript.tsv", "transcript", "text/tab-separated-values", "text/tab-separated-values"),
    ("transcript.vtt", "transcript", "text/vtt; charset=utf-8", "text/vtt"),
    ("summary.txt", "summary", "text/plain; charset=utf-8", "text/plain; charset=utf-8"),
]


def record(runtime: Runtime, meeting: str, files: list[tuple[str, str | None, str]]) -> list[int]:
    """Record (name, kind, url) files of a post-call transcription, as its REST lookup does."""
    found = [RecordingFile(meeting_id=meeting, session_id="s1", participant_id=None, kind=kind,
                           file_path=f"ai/transcripts/{meeting}/{name}", file_url=url,
                           webhook_type="transcription-stopped", recording_id="tr-1",
                           recording_kind=RecordingKind.TRANSCRIPT) for name, kind, url in files]
    origin = Origin(body="{}", dedupe_key=secrets.token_hex(16), webhook_type="transcription-stopped",
                    meeting_id=meeting, session_id="s1", received_at=utcnow(), verified=True, source="lookup")
    return list(record_files(runtime.ledger, runtime.settings, origin, found).created)


def test_every_transcript_format_is_archived_with_its_content_type(tmp_path: Path, moto_url: str) -> None:
    runtime = runtime_for(tmp_path, s3_destination(moto_url, manifest=False))
    meeting = f"m-{secrets.token_hex(3)}"
    with HttpSource() as cdn:
        files = []
        for name, kind, served, _ in TRANSCRIPTS:
            body = json.dumps({"text": "hello"}).encode() if name.endswith(".json") else f"{name}\n".encode()
            cdn.add_file(f"t/{meeting}/{name}", body, served)
            files.append((name, kind, cdn.url(f"/files/t/{meeting}/{name}")))
        jobs = record(runtime, meeting, files)
        outcomes = [run_copy_job(runtime, job) for job in jobs]
    assert [o.state for o in outcomes] == ["succeeded"] * len(TRANSCRIPTS), [o.error for o in outcomes]
    provider = runtime.provider(runtime.settings.destination("s3"))
    for job_id, (name, _, _, stored_type) in zip(jobs, TRANSCRIPTS, strict=True):
        job = runtime.ledger.job(job_id)
        assert job is not None and job.object_key is not None and job.object_key.endswith(f"/room/{name}")
        assert provider.stat(job.object_key).content_type == stored_type, name


@pytest.mark.parametrize(("name", "served"), [
    ("x.mp4", "text/html; charset=utf-8"),  # a broken link's error page, never a recording
    ("x.mp4", "application/json"),
    ("x.webm", "application/problem+json"),
    ("x.m3u8", "application/json"),
    ("transcript.srt", "text/html"),
    ("transcript.vtt", "application/json"),
    ("transcript.json", "text/html"),
])
def test_a_body_that_cannot_be_the_declared_format_is_refused(tmp_path: Path, name: str, served: str) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path))
    with HttpSource() as cdn:
        cdn.add_file(f"r/{name}", b'{"error": "expired"}', served)
        [job_id] = record(runtime, "m1", [(name, "transcript", cdn.url(f"/files/r/{name}"))])
        outcome = run_copy_job(runtime, job_id)
    assert outcome.state == "failed" and (outcome.error or "").startswith("source_content_type: "), outcome
    assert not list((tmp_path / "archive").rglob(name))


@pytest.mark.parametrize(("name", "served", "stored"), [
    ("x.mp4", "video/mp4", "video/mp4"),
    ("x.mp4", "video/quicktime", "video/mp4"),  # the declared format decides, so players treat it right
    ("x.webm", "application/octet-stream", "video/webm"),
    ("x.mp3", "audio/mp3", "audio/mpeg"),
    ("x.m4a", None, "audio/mp4"),
    ("x.aac", None, "audio/aac"),
    ("seg/1.ts", "video/mp4", "video/mp2t"),
    ("seg/1.m4s", None, "video/iso.segment"),
    ("index.m3u8", "audio/x-mpegurl", "application/vnd.apple.mpegurl"),
    ("keys/k.key", "application/octet-stream", "application/octet-stream"),
    ("keys/k.key", "application/pgp-keys", "application/pgp-keys"),  # an unknown format keeps what was served
    ("meta", None, "application/octet-stream"),
    ("meta", "text/html", "application/octet-stream"),
])
def test_content_types_of_archived_objects(name: str, served: str | None, stored: str) -> None:
    assert object_content_type(declared_format(name), served) == stored


def test_json_is_refused_only_where_the_declared_format_says_it_cannot_be() -> None:
    assert refusal(declared_format("a/transcript.json"), "application/json") is None
    assert refusal(declared_format("keys/meta"), "application/json") is None  # unknown format: maybe JSON
    assert refusal(declared_format("keys/meta"), "text/html") is not None  # HTML is no format of ours
    assert refusal(declared_format("x.MP4?token=a.json"), "application/json") is not None


def encrypted_stopped(meeting: str, media: str, key: str, meta: str) -> str:
    return json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": meeting, "sessionId": "s1", "filePath": "/encoded/videos/x.mp4",
                                "fileUrl": media, "encryption": {"keyUrl": key, "metaUrl": meta}}})


def test_an_encrypted_recordings_key_and_meta_files_are_copied_beside_it(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path))
    with HttpSource() as cdn:
        cdn.add_file("enc/x.key", b"wrapped-data-key", "application/octet-stream")
        cdn.add_file("enc/meta", b'{"algorithm": "AES-256-GCM"}', "application/json")  # no extension
        body = encrypted_stopped("m1", cdn.file_url("encoded/videos/x.mp4", size=300_000),
                                 cdn.url("/files/enc/x.key"), cdn.url("/files/enc/meta"))
        _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=False)
        outcomes = [run_copy_job(runtime, job) for job in accepted.created]
    assert [o.state for o in outcomes] == ["succeeded"] * 3, [o.error for o in outcomes]
    folder = tmp_path / "archive" / "m1" / "room"
    assert (folder / "x.key").read_bytes() == b"wrapped-data-key"
    assert json.loads((folder / "meta").read_text()) == {"algorithm": "AES-256-GCM"}
    assert (folder / "x.mp4").stat().st_size == 300_000
    assert json.loads((folder / "x.key.json").read_text())["sha256"]


def test_a_key_file_that_cannot_be_copied_says_the_media_is_unusable_without_it(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path))
    with HttpSource() as cdn:
        body = encrypted_stopped("m1", cdn.file_url("encoded/videos/x.mp4", size=1000),
                                 cdn.url("/files/enc/x.key?status=404"), cdn.url("/files/enc/meta2"))
        _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=False)
        outcomes = {runtime.ledger.job(j).file_path: run_copy_job(runtime, j) for j in accepted.created}  # type: ignore[union-attr]
    key = outcomes["files/enc/x.key"]
    assert key.state == "failed" and (key.error or "").startswith("source_not_found: "), key
    assert "encryption key file (encryption.keyUrl)" in (key.error or "")
    assert "cannot be decrypted without it" in (key.error or "")
    assert outcomes["encoded/videos/x.mp4"].state == "succeeded"
    assert "unusable" not in (outcomes["encoded/videos/x.mp4"].error or "")
    read_back = read(runtime.provider(runtime.settings.destination("local")), "m1/room/x.mp4")
    assert len(read_back) == 1000
