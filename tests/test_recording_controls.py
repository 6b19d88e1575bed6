"""`archiver recording start|stop` and `archiver room create` against the VideoSDK stand-in: every bad
config value refused by name before VideoSDK is called, a webhook that would not reach us refused,
and the whole loop (start -> state webhooks -> stop -> stopped webhook -> archived copy -> timeline)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.copy.job import run_copy_job
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from tests.http_source import HttpSource, content
from tests.receiver_harness import PATH, running_receiver
from tests.videosdk_stand_in import VideoSDKStandIn

KEY, SECRET = "controls-api-key", "controls-secret-that-is-long-enough-for-hs256"
SIZE = 200_000
pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[VideoSDKStandIn]:
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", SECRET)
    with VideoSDKStandIn(api_key=KEY, secret=SECRET) as stand_in:
        yield stand_in


def write_config(root: Path, sdk: VideoSDKStandIn, receiver: str = "") -> Path:
    path = root / "archiver.toml"
    path.write_text(f"""
broker_url = "sqla+sqlite:///{root}/broker.db"
database_url = "sqlite:///{root}/ledger.db"
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
not_found_grace_minutes = 0
[videosdk]
api_base = "{sdk.api_base}"
api_key = "{KEY}"
[receiver]
{receiver}
[[destinations]]
name = "local"
url = "file://{root}/archive/{{meetingId}}/{{sessionId}}/"
manifest = true
""")
    return path


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def posts(sdk: VideoSDKStandIn) -> list[str]:
    return [r.path for r in sdk.requests() if r.method == "POST"]


# -- every bad value is refused by name, before VideoSDK is called ---------------------------------

BAD_FLAGS = [
    (["--layout", "grid"], "--layout (config.layout.type: 'grid' is not one of GRID, SPOTLIGHT, SIDEBAR)"),
    (["--priority", "LOUDEST"], "config.layout.priority: 'LOUDEST' is not one of SPEAKER, PIN"),
    (["--grid-size", "5"], "config.layout.gridSize: 5 is not an integer from 1 to 4"),
    (["--grid-size", "0"], "config.layout.gridSize: 0 is not an integer from 1 to 4"),
    (["--grid-size", "four"], "config.layout.gridSize: 'four' is not an integer from 1 to 4"),
    (["--theme", "dark"], "config.theme: 'dark' is not one of DARK, LIGHT, DEFAULT"),
    (["--mode", "video"], "config.mode: 'video' is not one of video-and-audio, audio"),
    (["--quality", "ultra"], "config.quality: 'ultra' is not one of low, med, high"),
    (["--orientation", "square"], "config.orientation: 'square' is not one of landscape, portrait"),
    (["--file-format", "m3u8"], "fileFormat (room recording): 'm3u8' is not one of mp4, webm"),
    (["--participant", "p1", "--file-format", "mp3"],
     "fileFormat (participant recording): 'mp3' is not one of mp4, webm, m3u8"),
    (["--participant", "p1", "--kind", "audio", "--file-format", "mkv"],
     "fileFormat (track recording): 'mkv' is not one of mp4, webm, m3u8, mp3"),
    (["--participant", "p1", "--kind", "microphone"],
     "kind: 'microphone' is not one of audio, video, screen_audio, screen_video"),
    (["--participant", "p1", "--layout", "GRID"], "config and templateUrl apply to room recordings only"),
    (["--aws-dir-path", "/rec/${sessionId}/"], "awsDirPath: ${sessionId} is not known when a recording starts"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_a_bad_value_is_named_with_the_allowed_ones(tmp_path: Path, sdk: VideoSDKStandIn,
                                                    capsys: pytest.CaptureFixture[str], flags: list[str],
                                                    message: str) -> None:
    config = write_config(tmp_path, sdk)
    code, _, err = run(capsys, config, "recording", "start", "--room", "r-1", "--webhook-url",
                       "https://archiver.example.com/hook", *flags)
    assert code == 2 and message in err, err
    assert posts(sdk) == []  # VideoSDK was never asked


BAD_FILES = [
    ({"layout": {"type": "MOSAIC"}}, "config.layout.type: 'MOSAIC' is not one of GRID, SPOTLIGHT, SIDEBAR"),
    ({"layout": {"gridSize": True}}, "config.layout.gridSize: True is not an integer from 1 to 4"),
    ({"layout": {"gridSize": 2.5}}, "config.layout.gridSize: 2.5 is not an integer from 1 to 4"),
    ({"layout": "GRID"}, "config.layout: must be an object with type, priority, gridSize"),
    ({"qualty": "high"}, "config.qualty: unknown option (known: layout, theme, mode, quality, orientation)"),
    ({"layout": {"size": 2}}, "config.layout.size: unknown option (known: type, priority, gridSize)"),
    (["GRID"], "config: must be a JSON object, got list"),
]


@pytest.mark.parametrize(("document", "message"), BAD_FILES, ids=[m.split(":")[0] for _, m in BAD_FILES])
def test_a_bad_config_file_is_named(tmp_path: Path, sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str],
                                    document: object, message: str) -> None:
    config = write_config(tmp_path, sdk)
    (tmp_path / "recording.json").write_text(json.dumps(document))
    code, _, err = run(capsys, config, "recording", "start", "--room", "r-1", "--config",
                       str(tmp_path / "recording.json"), "--webhook-url", "https://archiver.example.com/hook")
    assert code == 2 and message in err, err
    assert posts(sdk) == []


def test_every_bad_value_is_named_in_one_run(tmp_path: Path, sdk: VideoSDKStandIn,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sdk)
    code, _, err = run(capsys, config, "room", "create", "--auto-record", "--layout", "X", "--theme", "Y",
                       "--mode", "Z", "--webhook-url", "https://archiver.example.com/hook")
    assert code == 2 and all(f in err for f in ("--layout", "--theme", "--mode")), err
    assert posts(sdk) == []


# -- webhooks that would not reach us --------------------------------------------------------------

@pytest.mark.parametrize(("receiver", "why"), [
    ("", "no webhook URL"),
    ('public_url = "https://127.0.0.1:8000"', "loopback, private or link-local address (127.0.0.1)"),
    ('public_url = "https://10.1.2.3"', "loopback, private or link-local address (10.1.2.3)"),
    ('public_url = "https://[::1]/webhooks/videosdk"', "loopback, private or link-local address (::1)"),
    ('public_url = "https://archiver.internal"', "local-only host (archiver.internal)"),
    ('public_url = "https://localhost"', "local-only host (localhost)"),
    ('public_url = "http://archiver.example.com"', "is not https"),
])
def test_a_webhook_that_would_not_reach_us_is_refused(tmp_path: Path, sdk: VideoSDKStandIn,
                                                      capsys: pytest.CaptureFixture[str], receiver: str,
                                                      why: str) -> None:
    config = write_config(tmp_path, sdk, receiver)
    for verb in (["recording", "start", "--room", "r-1"], ["room", "create", "--auto-record"]):
        code, _, err = run(capsys, config, *verb)
        assert code == 2 and why in err and "--webhook-url" in err and "[receiver] public_url" in err, err
    assert posts(sdk) == []


def test_public_url_is_the_default_webhook_and_an_explicit_one_wins(tmp_path: Path, sdk: VideoSDKStandIn,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sdk, 'public_url = "https://archiver.example.com"')
    code, out, err = run(capsys, config, "recording", "start", "--room", "r-1", "--layout", "SPOTLIGHT",
                         "--grid-size", "2", "--aws-dir-path", "/rec/${meetingId}/", "--json")
    assert code == 0, err
    sent = json.loads(out)["request"]
    assert sent == {"roomId": "r-1", "webhookUrl": "https://archiver.example.com/webhooks/videosdk",
                    "config": {"layout": {"type": "SPOTLIGHT", "gridSize": 2}}, "awsDirPath": "/rec/r-1/"}
    # a loopback receiver is fine when the operator says so
    code, _, err = run(capsys, config, "recording", "start", "--room", "r-2", "--participant", "p-1",
                       "--file-format", "m3u8", "--bucket-dir-path", "parts/", "--webhook-url",
                       "http://127.0.0.1:9/hook")
    assert code == 0, err
    assert posts(sdk) == ["/v2/recordings/start", "/v2/recordings/participant/start"]
    assert sdk.controls.active[("participant", "r-2", "p-1")]["webhookUrl"] == "http://127.0.0.1:9/hook"
    assert sdk.controls.active[("participant", "r-2", "p-1")]["bucketDirPath"] == "parts/"


def test_videosdk_refusing_is_exit_1_with_its_reason(tmp_path: Path, sdk: VideoSDKStandIn,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sdk)
    code, _, err = run(capsys, config, "recording", "stop", "--room", "never-started")
    assert code == 1 and "HTTP 400" in err and "no recording is running" in err, err


def test_room_create_points_the_room_webhook_at_us_and_records_every_session(
        tmp_path: Path, sdk: VideoSDKStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sdk, 'public_url = "https://archiver.example.com/hooks/vsdk"')
    code, out, err = run(capsys, config, "room", "create", "--auto-record", "--quality", "high",
                         "--aws-dir-path", "auto/")
    assert code == 0 and "created (records every session)" in out, err
    [body] = sdk.controls.created_rooms
    assert body["webhook"]["endPoint"] == "https://archiver.example.com/hooks/vsdk"
    assert "recording-*" in body["webhook"]["events"] and "participant-track-recording-*" in body["webhook"]["events"]
    assert body["autoStartConfig"] == {"recording": {"config": {"quality": "high"}, "awsDirPath": "auto/"}}
    code, _, err = run(capsys, config, "room", "create", "--event", "*")
    assert code == 0 and "autoStartConfig" not in sdk.controls.created_rooms[1], err
    assert sdk.controls.created_rooms[1]["webhook"]["events"] == ["*"]


# -- the whole loop --------------------------------------------------------------------------------

def test_start_states_stop_archived_and_the_timeline(tmp_path: Path, sdk: VideoSDKStandIn,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sdk, f'path = "{PATH}"')
    with HttpSource() as cdn, running_receiver(config, None) as receiver:
        sdk.controls.media_url = lambda path: cdn.file_url(path.rsplit("/", 1)[-1], SIZE)
        hook = receiver.url + PATH  # loopback: given explicitly, as an operator testing locally would
        for args in (["--room", "loop-room", "--layout", "GRID"], ["--room", "loop-room", "--participant", "p-1",
                                                                   "--kind", "audio", "--file-format", "webm"]):
            code, _, err = run(capsys, config, "recording", "start", *args, "--webhook-url", hook)
            assert code == 0, err
        started = sdk.controls.deliveries(4)
        assert [d.webhook_type for d in started] == [
            "recording-starting", "recording-started",
            "participant-track-recording-starting", "participant-track-recording-started"]
        assert all(d.status == 200 for d in started), started  # signed, accepted, nothing to archive yet
        for args in (["--room", "loop-room"], ["--room", "loop-room", "--participant", "p-1", "--kind", "audio"]):
            code, _, err = run(capsys, config, "recording", "stop", *args)
            assert code == 0, err
        delivered = sdk.controls.deliveries(8)
        assert [(d.webhook_type, d.status) for d in delivered[4:]] == [
            ("recording-stopping", 200), ("recording-stopped", 202),
            ("participant-track-recording-stopping", 200), ("participant-track-recording-stopped", 202)]

        runtime = Runtime.create(load_settings(config))
        jobs = runtime.ledger.jobs(meeting_id="loop-room")
        assert len(jobs) == 2
        for job in jobs:
            assert run_copy_job(runtime, job.job_id).state == "succeeded"
    copies = sorted((tmp_path / "archive" / "loop-room").rglob("*.mp4")) + \
        sorted((tmp_path / "archive" / "loop-room").rglob("*.webm"))
    assert len(copies) == 2
    for copy in copies:
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == hashlib.sha256(content(copy.name, SIZE)).hexdigest()

    code, out, _ = run(capsys, config, "status", "--meeting", "loop-room")
    assert code == 0 and out.count("succeeded") == 2
    timeline = out.split("recording timeline of loop-room (UTC):", 1)[1]
    assert [line.split()[2] for line in timeline.strip().splitlines()[1:]] == [
        "recording-starting", "recording-started", "participant-track-recording-starting",
        "participant-track-recording-started", "recording-stopping", "recording-stopped",
        "participant-track-recording-stopping", "participant-track-recording-stopped"]
    assert "p-1" in timeline and "audio" in timeline and copies[0].name in timeline


def test_a_failed_recording_is_marked_in_the_timeline(tmp_path: Path, sdk: VideoSDKStandIn,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from archiver.intake.record import accept_event

    config = write_config(tmp_path, sdk)
    runtime = Runtime.create(load_settings(config), check_schema=False)
    from archiver.ledger.database import upgrade

    upgrade(runtime.ledger.engine)
    for state in ("starting", "failed"):
        accept_event(runtime.ledger, runtime.settings, json.dumps(
            {"webhookType": f"participant-recording-{state}",
             "data": {"meetingId": "m-f", "sessionId": "s-1", "participantId": "p-9"}}), verified=True)
    code, out, _ = run(capsys, config, "status", "--meeting", "m-f")
    assert code == 0 and "no jobs" in out
    assert "participant-recording-failed  <- FAILED" in out and "p-9" in out
    code, out, _ = run(capsys, config, "status", "--meeting", "nothing-here")
    assert "no recording events received" in out


def test_public_url_is_checked_when_the_configuration_loads(tmp_path: Path, sdk: VideoSDKStandIn,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sdk, 'public_url = "archiver.example.com"')
    code, _, err = run(capsys, config, "recording", "start", "--room", "r-1")
    assert code == 2 and "receiver.public_url: must be an absolute URL" in err, err
    assert load_settings(config, environ={"ARCHIVER_RECEIVER_PUBLIC_URL": "https://a.example.com"}) \
        .receiver.public_url == "https://a.example.com"


def test_a_start_is_not_sent_twice_after_a_5xx_but_is_after_a_429(tmp_path: Path, sdk: VideoSDKStandIn,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, sdk, 'public_url = "https://archiver.example.com"')
    sdk.fail_next(503, path="/recordings/start")
    code, _, err = run(capsys, config, "recording", "start", "--room", "r-1")
    assert code == 1 and "HTTP 503" in err and "not retried: the call may have taken effect" in err, err
    assert posts(sdk) == ["/v2/recordings/start"]  # once: it may have started
    sdk.fail_next(429, retry_after=0, path="/recordings/start")
    code, _, err = run(capsys, config, "recording", "start", "--room", "r-1")
    assert code == 0, err
    assert posts(sdk) == ["/v2/recordings/start"] * 3 and ("room", "r-1") in sdk.controls.active
