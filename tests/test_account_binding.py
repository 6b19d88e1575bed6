"""Only our recordings: a valid signature proves VideoSDK sent a webhook, not that the recording is in
our account. With an api_key, a webhook's file is copied only once VideoSDK's API, asked with our
credentials, lists it, and then from the API's URL with the API's size; reconcile never asks about a
room only a webhook named; without an api_key, allow_rooms narrows the receiver. Files are capped in
size and a local destination keeps a floor of free space."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.copy import job as copy_job
from archiver.intake.record import accept_event
from archiver.intake.webhook import WebhookIntake
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from tests.http_source import HttpSource, content
from tests.videosdk_stand_in import VideoSDKStandIn

KEY, SECRET = "binding-api-key", "binding-secret-0123456789abcdef0123456789"
SESSION = "66d9c3a1e4b0c2a1f0e9d8c7"
pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def sdk() -> Iterator[VideoSDKStandIn]:
    with VideoSDKStandIn(api_key=KEY, secret=SECRET) as stand_in:
        yield stand_in


def runtime_for(root: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn | None, *, grace: float = 0,
                extra: str = "", local: str = "") -> Runtime:
    videosdk = f'[videosdk]\napi_base = "{sdk.api_base}"\napi_key = "{KEY}"\n' if sdk else ""
    (root / "archiver.toml").write_text(f"""
database_url = "sqlite:///{root}/ledger.db"
{videosdk}
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
not_found_grace_minutes = {grace}
{extra}
[[destinations]]
name = "local"
url = "file://{root}/archive/{{meetingId}}/"
{local}
""")
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", SECRET)
    settings = load_settings(root / "archiver.toml")
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    return Runtime(settings=settings, ledger=Ledger(engine))


def stopped(room: str, path: str, url: str) -> str:
    return json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": room, "sessionId": SESSION, "filePath": path, "fileUrl": url}})


def accept(runtime: Runtime, body: str) -> int:
    _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=True)
    [job_id] = accepted.created
    return job_id


@pytest.mark.parametrize(("grace", "state", "code"), [(0, "failed", "not_in_account"),
                                                      (10, "pending", "not_in_account_yet")])
def test_a_webhook_for_a_recording_our_account_does_not_list_is_never_downloaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn, grace: float, state: str,
        code: str) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, sdk, grace=grace)
    with HttpSource() as cdn:
        name = f"{secrets.token_hex(12)}.mp4"
        job_id = accept(runtime, stopped("foreign-room", f"/encoded/videos/{name}", cdn.file_url(name, size=64 << 20)))
        outcome = copy_job.run_copy_job(runtime, job_id)
        assert cdn.hits(f"/files/{name}") == []  # not a byte was fetched for someone else's recording
    assert outcome.state == state and (outcome.error or "").startswith(f"{code}:"), outcome
    if code == "not_in_account":
        assert "not sent for our account" in (outcome.error or "")
    assert [r.query.get("roomId") for r in sdk.requests("/recordings")] == ["foreign-room"]
    assert not (tmp_path / "archive").exists()


def test_a_confirmed_file_is_copied_from_the_apis_url_with_the_apis_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, sdk)
    with HttpSource() as cdn:
        file_id = secrets.token_hex(12)
        ours = cdn.file_url(f"api/{file_id}.mp4", size=300_000)
        rid = sdk.add_recording("our-room", session_id=SESSION, file_path=f"uploads/videos/{file_id}.mp4",
                                file_url=ours, size=300_000)
        # a webhook naming our file's name but a URL of its own (other bytes, same length)
        job_id = accept(runtime, stopped("our-room", f"/encoded/videos/{file_id}.mp4",
                                         cdn.file_url(f"other/{file_id}.mp4", size=300_000)))
        outcome = copy_job.run_copy_job(runtime, job_id)
        assert outcome.state == "succeeded" and outcome.size_proven, outcome
        assert cdn.hits(f"/files/other/{file_id}.mp4") == [] and cdn.hits(f"/files/api/{file_id}.mp4")
    job = runtime.ledger.job(job_id)
    assert job is not None and (job.recording_id, job.size, job.confirmed) == (rid, 300_000, True)
    assert (tmp_path / "archive" / "our-room" / f"{file_id}.mp4").read_bytes() == content(f"api/{file_id}.mp4",
                                                                                          300_000)


def test_a_file_over_the_size_cap_is_refused_before_a_byte_is_copied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, sdk, extra="max_file_bytes = 1000000")
    with HttpSource() as cdn:
        file_id = secrets.token_hex(12)
        sdk.add_recording("big-room", session_id=SESSION, file_path=f"uploads/videos/{file_id}.mp4",
                          file_url=cdn.file_url(f"{file_id}.mp4", size=2_000_000), size=2_000_000)
        job_id = accept(runtime, stopped("big-room", f"/encoded/videos/{file_id}.mp4",
                                         cdn.file_url(f"{file_id}.mp4", size=2_000_000)))
        outcome = copy_job.run_copy_job(runtime, job_id)
        assert cdn.hits(f"/files/{file_id}.mp4") == []
    assert outcome.state == "failed" and (outcome.error or "").startswith("file_too_large:"), outcome
    assert "max_file_bytes" in (outcome.error or "")


@pytest.mark.parametrize("faults", [{}, {"close": 1}], ids=["declared", "close-delimited"])
def test_a_source_larger_than_the_cap_fills_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    faults: dict[str, int]) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, None, extra="max_file_bytes = 3000000")
    with HttpSource() as cdn:
        job_id = accept(runtime, stopped("m", "/encoded/videos/huge.mp4", cdn.file_url("huge.mp4", size=8 << 20,
                                                                                       **faults)))
        outcome = copy_job.run_copy_job(runtime, job_id)
    assert outcome.state == "failed" and (outcome.error or "").startswith("file_too_large:"), outcome
    leftovers = [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] if (tmp_path / "archive").exists() \
        else []
    assert leftovers == []


def test_a_local_destination_keeps_its_floor_of_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, None, local=f"min_free_bytes = {1 << 62}")
    with HttpSource() as cdn:
        job_id = accept(runtime, stopped("m", "/encoded/videos/x.mp4", cdn.file_url("x.mp4", size=3 << 20)))
        outcome = copy_job.run_copy_job(runtime, job_id)
    assert outcome.state == "pending" and (outcome.error or "").startswith("disk_full:"), outcome
    assert "min_free_bytes" in (outcome.error or "")
    assert [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] == []


def test_reconcile_never_asks_about_a_room_only_a_webhook_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk: VideoSDKStandIn,
        capsys: pytest.CaptureFixture[str]) -> None:
    runtime = runtime_for(tmp_path, monkeypatch, sdk)
    accept(runtime, stopped("foreign-room", "/encoded/videos/f.mp4", "https://cdn.videosdk.live/encoded/videos/f.mp4"))
    sdk.add_room("our-room")
    monkeypatch.setenv("ARCHIVER_CONFIG", str(tmp_path / "archiver.toml"))
    main(["reconcile", "--json"])
    capsys.readouterr()
    asked = {r.query.get("roomId") for r in sdk.requests() if "roomId" in r.query}
    assert "our-room" in asked and "foreign-room" not in asked


def test_without_api_credentials_allow_rooms_narrows_the_receiver(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "archiver.toml").write_text(f"""
database_url = "sqlite:///{tmp_path}/ledger.db"
[videosdk]
verify_signatures = false
[receiver]
allow_rooms = ["acme-*", "board-room"]
""")
    settings = load_settings(tmp_path / "archiver.toml", environ={})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    intake = WebhookIntake(settings, Ledger(engine), publish_copies=lambda ids: None,
                           publish_lookups=lambda ids: None, keys=None)
    url = "https://cdn.videosdk.live/encoded/videos/x.mp4"
    for room, status in (("acme-123", 202), ("board-room", 202), ("elsewhere", 403), ("board-room-2", 403)):
        answer = intake.handle(stopped(room, "/encoded/videos/x.mp4", url).encode(), {})
        assert answer.status == status, (room, answer)
