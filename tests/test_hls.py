"""HLS recordings: the playlist and every piece it names land in the destination in the same layout,
verified, each piece recorded so a retry copies only what is missing, the playlist written last; a
playlist naming anything outside its folder (or outside the source policy) fetches nothing there."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from archiver.copy.job import run_copy_job
from archiver.intake.record import accept_event
from archiver.runtime import Runtime
from providers import ObjectNotFound, StorageProvider, TransientError
from providers.writer import ObjectWriter
from tests import http_source
from tests.copy_runtime import local_destination, read, runtime_for, s3_destination, sha256
from tests.http_source import HttpSource

SEGMENT = 40_000  # bytes per generated segment
HLS = "application/vnd.apple.mpegurl"


def media_playlist(segments: list[str], *, key: str | None = None, init: str | None = None) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:4", "#EXT-X-PLAYLIST-TYPE:VOD"]
    if key:
        lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{key}",IV=0x00000000000000000000000000000001')
    if init:
        lines.append(f'#EXT-X-MAP:URI="{init}"')
    for uri in segments:
        lines += ["#EXTINF:4.000,", uri]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


def segment_names(count: int, folder: str = "seg") -> list[str]:
    return [f"{folder}/{n:04d}.ts" for n in range(1, count + 1)]


def serve_playlist(cdn: HttpSource, folder: str, body: bytes, name: str = "index.m3u8") -> str:
    cdn.add_file(f"{folder}/{name}", body, HLS)
    return cdn.url(f"/files/{folder}/{name}")


def participant_stopped(meeting: str, url: str, path: str = "index.m3u8") -> str:
    return json.dumps({"webhookType": "participant-recording-stopped",
                       "data": {"meetingId": meeting, "sessionId": "s1", "participantId": "p1",
                                "fileDetails": [{"filePath": f"/individual-recordings/s1/p1/{path}",
                                                 "fileUrl": url}]}})


def accept(runtime: Runtime, body: str) -> list[int]:
    _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=False)
    return list(accepted.created)


def generated(folder: str, path: str) -> bytes:
    return http_source.content(f"{folder}/{path}", SEGMENT)


def seg_hits(cdn: HttpSource, folder: str, path: str) -> int:
    return len(cdn.hits(f"/files/{folder}/{path}"))


def stored(runtime: Runtime, destination: str) -> StorageProvider:
    return runtime.provider(runtime.settings.destination(destination))


def test_a_playlist_and_twenty_segments_land_complete_in_s3_and_on_disk(tmp_path: Path, moto_url: str) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path) + s3_destination(moto_url))
    meeting, folder = f"m-{secrets.token_hex(3)}", f"hls-{secrets.token_hex(4)}"
    names = segment_names(20)
    # the seventh segment answers 500 twice: healed by the piece's own retries, within the attempt
    uris = [f"{n}?size={SEGMENT}" + ("&fail=2" if i == 6 else "") for i, n in enumerate(names)]
    body = media_playlist(uris)
    with HttpSource() as cdn:
        url = serve_playlist(cdn, folder, body)
        jobs = accept(runtime, participant_stopped(meeting, url))
        outcomes = [run_copy_job(runtime, job) for job in jobs]
        assert [o.state for o in outcomes] == ["succeeded", "succeeded"], outcomes
        # two 500s then the file for the first destination, the file at once for the second
        assert seg_hits(cdn, folder, names[6]) == 3 + 1 and seg_hits(cdn, folder, names[0]) == 2
    for job_id in jobs:
        job = runtime.ledger.job(job_id)
        assert job is not None and job.attempts == 1 and job.error_code is None
        assert (job.bytes, job.sha256) == (len(body), sha256(body))  # the playlist's own size and sha256
        provider, folder_key = stored(runtime, job.destination), job.object_key.rsplit("/", 1)[0]  # type: ignore[union-attr]
        assert job.object_key.endswith(f"{meeting}/p1/index.m3u8")  # type: ignore[union-attr]
        assert read(provider, job.object_key) == body  # type: ignore[arg-type]
        for name in names:
            assert read(provider, f"{folder_key}/{name}") == generated(folder, name), name
        manifest = json.loads(read(provider, f"{job.object_key}.json"))
        assert manifest["format"] == "hls" and manifest["sha256"] == sha256(body)
        assert [(p["path"], p["size"], p["sha256"]) for p in manifest["pieces"]] == [
            (n, SEGMENT, sha256(generated(folder, n))) for n in names]
        assert set(runtime.ledger.pieces.of(job_id)) == set(names)
        if job.destination == "s3":  # what a player fetching the archive gets told
            assert provider.stat(job.object_key).content_type == HLS  # type: ignore[arg-type]
            assert provider.stat(f"{folder_key}/{names[0]}").content_type == "video/mp2t"


def test_a_master_playlist_with_two_variants_keeps_its_layout(tmp_path: Path, moto_url: str) -> None:
    runtime = runtime_for(tmp_path, s3_destination(moto_url))
    meeting, folder = f"m-{secrets.token_hex(3)}", f"hls-{secrets.token_hex(4)}"
    master = (b'#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",DEFAULT=YES,URI="audio/index.m3u8"\n'
              b'#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO="a"\nv1/index.m3u8\n'
              b'#EXT-X-STREAM-INF:BANDWIDTH=1600000,AUDIO="a"\nv2/index.m3u8\n')
    variants = {
        "v1": media_playlist([f"{n}?size={SEGMENT}" for n in segment_names(3)], init="../common/init.mp4",
                             key="../keys/k1.key"),
        "v2": media_playlist([f"{n}?size={SEGMENT}" for n in segment_names(3)], init="../common/init.mp4",
                             key="../keys/k1.key"),
        "audio": media_playlist([f"{n}?size={SEGMENT}" for n in segment_names(2, "a")]),
    }
    with HttpSource() as cdn:
        for name, body in variants.items():
            cdn.add_file(f"{folder}/{name}/index.m3u8", body, HLS)
        cdn.add_file(f"{folder}/keys/k1.key", b"0123456789abcdef", "application/octet-stream")
        [job_id] = accept(runtime, participant_stopped(meeting, serve_playlist(cdn, folder, master, "master.m3u8"),
                                                       "master.m3u8"))
        outcome = run_copy_job(runtime, job_id)
        assert outcome.state == "succeeded", outcome
        assert seg_hits(cdn, folder, "common/init.mp4") == 1  # named by both variants, copied once
    job = runtime.ledger.job(job_id)
    provider, base = stored(runtime, "s3"), job.object_key.rsplit("/", 1)[0]  # type: ignore[union-attr]
    assert read(provider, job.object_key) == master  # type: ignore[arg-type]
    for name, body in variants.items():
        assert read(provider, f"{base}/{name}/index.m3u8") == body
    for path in ["v1/seg/0001.ts", "v1/seg/0003.ts", "v2/seg/0002.ts", "audio/a/0002.ts"]:
        folder_of_piece, _, rest = path.partition("/")
        assert read(provider, f"{base}/{path}") == generated(f"{folder}/{folder_of_piece}", rest), path
    assert read(provider, f"{base}/keys/k1.key") == b"0123456789abcdef"
    assert read(provider, f"{base}/common/init.mp4") == http_source.content(f"{folder}/common/init.mp4", 1 << 20)
    assert len(runtime.ledger.pieces.of(job_id)) == 3 + 3 + 2 + 3 + 2  # segments, variants, init, key


def test_a_failure_midway_is_resumed_with_only_the_missing_pieces(tmp_path: Path, moto_url: str,
                                                                  database_url: str) -> None:
    runtime = runtime_for(tmp_path, s3_destination(moto_url, manifest=False), database_url=database_url)
    meeting, folder = f"m-{secrets.token_hex(3)}", f"hls-{secrets.token_hex(4)}"
    names = segment_names(20)
    # the twelfth segment fails 4 times: all of one attempt's tries, so the job itself retries
    uris = [f"{n}?size={SEGMENT}" + ("&fail=4" if i == 11 else "") for i, n in enumerate(names)]
    body = media_playlist(uris)
    with HttpSource() as cdn:
        [job_id] = accept(runtime, participant_stopped(meeting, serve_playlist(cdn, folder, body)))
        first = run_copy_job(runtime, job_id)
        assert first.state == "pending" and "segment 'seg/0012.ts'" in (first.error or ""), first
        job = runtime.ledger.job(job_id)
        provider, base = stored(runtime, "s3"), job.object_key.rsplit("/", 1)[0]  # type: ignore[union-attr]
        with pytest.raises(ObjectNotFound):  # the playlist is written last: no player sees it half there
            provider.stat(job.object_key)  # type: ignore[arg-type]
        assert set(runtime.ledger.pieces.of(job_id)) == set(names[:11])
        second = run_copy_job(runtime, job_id)
        assert second.state == "succeeded", second
        counts = {n: seg_hits(cdn, folder, n) for n in names}
        assert counts == {n: 5 if i == 11 else 1 for i, n in enumerate(names)}, counts
        assert seg_hits(cdn, folder, "index.m3u8") == 2
    assert read(provider, job.object_key) == body  # type: ignore[arg-type]
    assert all(read(provider, f"{base}/{n}") == generated(folder, n) for n in names)


def test_a_piece_committed_but_not_recorded_by_a_dead_attempt_is_adopted(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path, manifest=False))
    meeting, folder = f"m-{secrets.token_hex(3)}", f"hls-{secrets.token_hex(4)}"
    names = segment_names(8)
    body = media_playlist([f"{n}?size={SEGMENT}" for n in names])
    real_record, calls = runtime.ledger.pieces.record, {"n": 0}

    def dies_after_the_fifth_commit(job_id: int, worker: str, piece: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("worker died between commit and bookkeeping")
        return real_record(job_id, worker, piece)

    monkeypatch.setattr(runtime.ledger.pieces, "record", dies_after_the_fifth_commit)
    with HttpSource() as cdn:
        [job_id] = accept(runtime, participant_stopped(meeting, serve_playlist(cdn, folder, body)))
        assert run_copy_job(runtime, job_id).state == "pending"
        assert run_copy_job(runtime, job_id).state == "succeeded"
        # the fifth was fetched again to learn its sha256, found identical at its key, and kept
        assert {n: seg_hits(cdn, folder, n) for n in names} == {n: 2 if n == names[4] else 1 for n in names}
    record = runtime.ledger.pieces.of(job_id)[names[4]]
    assert (record.bytes, record.sha256) == (SEGMENT, sha256(generated(folder, names[4])))


@pytest.mark.parametrize(("uri", "why"), [
    ("../../x.ts", "outside the playlist's folder"),
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "absolute URI"),
    ("https://evil.example.com/x.ts", "absolute URI"),
    ("/files/elsewhere/x.ts", "absolute URI"),
    ("seg//0002.ts", "empty path segment"),
    ("seg/%2e%2e/%2e%2e/x.ts", "'..' segment"),
])
def test_a_hostile_playlist_fetches_nothing_it_names(tmp_path: Path, uri: str, why: str) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path))
    folder = f"hls-{secrets.token_hex(4)}"
    body = media_playlist([f"seg/0001.ts?size={SEGMENT}", uri])
    with HttpSource() as cdn:
        [job_id] = accept(runtime, participant_stopped("m1", serve_playlist(cdn, folder, body)))
        outcome = run_copy_job(runtime, job_id)
        assert [h.path for h in cdn.hits()] == [f"/files/{folder}/index.m3u8"]  # the URIs were checked first
    job = runtime.ledger.job(job_id)
    assert (outcome.state, job.error_code) == ("failed", "source_playlist"), outcome  # type: ignore[union-attr]
    assert why in (job.error_message or ""), job  # type: ignore[union-attr]
    assert not list((tmp_path / "archive").rglob("*.ts"))


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "https://evil.example.com/x.ts"])
def test_a_segment_redirecting_outside_the_policy_is_refused(tmp_path: Path, target: str) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path))
    folder = f"hls-{secrets.token_hex(4)}"
    body = media_playlist([f"seg/0001.ts?size={SEGMENT}", f"seg/0002.ts?to={target}"])
    with HttpSource() as cdn:
        [job_id] = accept(runtime, participant_stopped("m1", serve_playlist(cdn, folder, body)))
        outcome = run_copy_job(runtime, job_id)
    job = runtime.ledger.job(job_id)
    assert (outcome.state, job.error_code) == ("failed", "source_ssrf"), outcome  # type: ignore[union-attr]
    assert "segment 'seg/0002.ts'" in (job.error_message or "")  # type: ignore[union-attr]
    assert not (tmp_path / "archive" / "m1" / "p1" / "index.m3u8").exists()


def test_a_playlist_by_content_is_archived_as_one(tmp_path: Path) -> None:
    """A participant recording whose name declares no format but whose body is a playlist."""
    runtime = runtime_for(tmp_path, local_destination(tmp_path))
    folder = f"hls-{secrets.token_hex(4)}"
    body = media_playlist([f"seg/0001.ts?size={SEGMENT}", f"seg/0002.ts?size={SEGMENT}"])
    with HttpSource() as cdn:
        cdn.add_file(f"{folder}/stream", body, "application/octet-stream")
        [job_id] = accept(runtime, participant_stopped("m1", cdn.url(f"/files/{folder}/stream"), "stream"))
        assert run_copy_job(runtime, job_id).state == "succeeded"
    archived = tmp_path / "archive" / "m1" / "p1"
    assert (archived / "stream").read_bytes() == body
    assert (archived / "seg" / "0002.ts").read_bytes() == generated(folder, "seg/0002.ts")


def test_a_variant_playlist_whose_write_fails_once_is_written_on_the_next_try(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path, manifest=False))
    folder = f"hls-{secrets.token_hex(4)}"
    variant = media_playlist([f"seg/0001.ts?size={SEGMENT}"])
    real_commit, failed = ObjectWriter.commit, []

    def flaky_commit(self: ObjectWriter) -> Any:  # the store drops the first write of the variant
        if self.request.key.endswith("v1/index.m3u8") and not failed:
            failed.append(self.request.key)
            raise TransientError(f"connection reset writing {self.describe}")
        return real_commit(self)

    monkeypatch.setattr(ObjectWriter, "commit", flaky_commit)
    with HttpSource() as cdn:
        cdn.add_file(f"{folder}/v1/index.m3u8", variant, HLS)
        master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv1/index.m3u8\n"
        [job_id] = accept(runtime, participant_stopped("m1", serve_playlist(cdn, folder, master, "m.m3u8"), "m.m3u8"))
        outcome = run_copy_job(runtime, job_id)
        assert outcome.state == "succeeded" and failed, outcome
        assert len(cdn.hits(f"/files/{folder}/v1/index.m3u8")) == 1  # written again from memory, not re-fetched
    assert (tmp_path / "archive" / "m1" / "p1" / "v1" / "index.m3u8").read_bytes() == variant
