"""Outbound notifications, in process: a real HTTP receiver verifies every POST with the
`standardwebhooks` library; copies run for real into local destinations from the stand-in CDN."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from archiver.cli import main
from archiver.copy.job import run_copy_job
from archiver.intake.record import Origin, accept_event, record_files
from archiver.ledger.backlog import read_backlog
from archiver.ledger.outbox import Outbox
from archiver.ledger.store import utcnow
from archiver.notifications.delivery import DeliveryReport, deliver_due
from archiver.runtime import Runtime
from archiver.settings.config import ConfigError, load_settings
from tests import http_source
from tests.copy_runtime import local_destination, runtime_for
from tests.http_source import HttpSource
from tests.notify_receiver import NotifyReceiver, new_secret

SECRET_VARIABLE = "ARCHIVER_TEST_NOTIFY_SECRET"


def endpoint(url: str, *, events: list[str] | None = None, allow: bool = True, max_attempts: int = 8) -> str:
    return f"""
[[notifications]]
name = "app"
url = "{url}"
secret_env = "{SECRET_VARIABLE}"
allow_http = true
{'allowed_networks = ["127.0.0.1/32"]' if allow else ''}
{f'events = {json.dumps(events)}' if events else ''}
retry_base_seconds = 0.05
retry_max_seconds = 0.1
max_attempts = {max_attempts}
timeout = 5
"""


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyReceiver]:
    secret = new_secret()
    monkeypatch.setenv(SECRET_VARIABLE, secret)
    with NotifyReceiver(secret) as running:
        yield running


@pytest.fixture
def cdn() -> Iterator[HttpSource]:
    with HttpSource() as running:
        yield running


def two_destinations(root: Path) -> str:
    return (local_destination(root, "a", "a/{meetingId}/", manifest=False)
            + local_destination(root, "b", "b/{meetingId}/", manifest=False))


def event(meeting: str, url: str, name: str = "r.mp4") -> str:
    return json.dumps({"webhookType": "recording-stopped", "data": {
        "meetingId": meeting, "sessionId": "s1", "filePath": f"/encoded/videos/{name}", "fileUrl": url}})


def deliver_until(runtime: Runtime, done: object, timeout: float = 20) -> list[DeliveryReport]:
    reports, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        reports.append(deliver_due(runtime.ledger, runtime.settings, runtime.worker_id))
        if done():  # type: ignore[operator]
            return reports
        time.sleep(0.05)
    raise AssertionError(f"not done after {timeout} s: {reports}")


def status(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--config", str(config), "status"])
    return code, capsys.readouterr().out


def test_archived_is_sent_once_when_the_last_destination_holds_a_verified_copy(
        tmp_path: Path, receiver: NotifyReceiver, cdn: HttpSource, capsys: pytest.CaptureFixture[str],
        restore_root_logging: None, database_url: str) -> None:
    runtime = runtime_for(tmp_path, two_destinations(tmp_path), endpoint(receiver.url), database_url=database_url)
    size = 300_000
    _, accepted = accept_event(runtime.ledger, runtime.settings, event("m1", cdn.file_url("r.mp4", size=size)),
                               verified=False)
    first, second = accepted.created
    assert run_copy_job(runtime, first).state == "succeeded"
    deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)
    assert receiver.requests == []  # one destination of two: not archived yet

    assert run_copy_job(runtime, second).state == "succeeded"
    deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)
    deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)  # nothing left to send
    [request] = receiver.requests
    assert request.verified and request.status == 204
    assert request.headers["webhook-signature"].startswith("v1,")
    payload = receiver.processed[request.webhook_id]
    assert payload["type"] == "recording.archived"
    recording = payload["data"]["recording"]
    assert (recording["meetingId"], recording["sessionId"], recording["kind"], recording["file"]["name"]) == (
        "m1", "s1", "room", "r.mp4")
    copies = {d["name"]: d for d in payload["data"]["destinations"]}
    assert set(copies) == {"a", "b"}
    for name, copy in copies.items():
        assert (copy["size"], copy["sha256"], copy["verified"]) == (size, http_source.sha256("r.mp4", size), True)
        assert copy["key"] == "m1/r.mp4" and copy["url"] == f"file://{tmp_path}/archive/{name}/m1/r.mp4"

    code, out = status(tmp_path / "archiver.toml", capsys)
    assert code == 0 and "notifications: 0 pending, 0 failed, 1 delivered" in out


def test_a_receiver_outage_is_retried_with_the_same_webhook_id_and_processed_once(
        tmp_path: Path, receiver: NotifyReceiver, cdn: HttpSource, capsys: pytest.CaptureFixture[str],
        restore_root_logging: None, database_url: str) -> None:
    receiver.answers = [503, 503, 503]
    runtime = runtime_for(tmp_path, local_destination(tmp_path), endpoint(receiver.url), database_url=database_url)
    _, accepted = accept_event(runtime.ledger, runtime.settings, event("m2", cdn.file_url("r.mp4", size=1000)),
                               verified=False)
    # The copy does not wait for, or depend on, the endpoint.
    assert run_copy_job(runtime, accepted.created[0]).state == "succeeded"
    deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)
    assert read_backlog(runtime.ledger.engine, []).notifications_pending == 1  # archiver_notifications_pending
    code, out = status(tmp_path / "archiver.toml", capsys)
    assert "notifications: 1 pending" in out and "http_status:" in out and "answered 503" in out
    assert code == 0  # still being retried: not a failure yet

    deliver_until(runtime, lambda: receiver.processed)
    assert [r.status for r in receiver.requests] == [503, 503, 503, 204]
    assert len({r.webhook_id for r in receiver.requests}) == 1 and all(r.verified for r in receiver.requests)
    assert len(receiver.processed) == 1 and receiver.duplicates == 0
    [message] = runtime.ledger.deliveries.messages()
    assert (message.state, message.attempts, message.last_status) == ("delivered", 4, 204)
    assert read_backlog(runtime.ledger.engine, []).notifications_pending == 0
    metrics = generate_latest().decode()
    assert 'archiver_notifications_total{endpoint="app",outcome="delivered"}' in metrics


def test_a_delivery_that_never_succeeds_fails_for_good_and_status_says_so(
        tmp_path: Path, receiver: NotifyReceiver, cdn: HttpSource, capsys: pytest.CaptureFixture[str],
        restore_root_logging: None) -> None:
    receiver.answers = [500] * 10
    runtime = runtime_for(tmp_path, local_destination(tmp_path), endpoint(receiver.url, max_attempts=3))
    _, accepted = accept_event(runtime.ledger, runtime.settings, event("m3", cdn.file_url("r.mp4", size=1000)),
                               verified=False)
    run_copy_job(runtime, accepted.created[0])
    deliver_until(runtime, lambda: runtime.ledger.deliveries.backlog().failed == 1)
    assert len(receiver.requests) == 3
    code, out = status(tmp_path / "archiver.toml", capsys)
    assert code == 1 and "0 pending" in out and "1 failed" in out and "gave up after 3 attempts" in out
    assert runtime.ledger.deliveries.requeue_failed() == 1  # same webhook-id, a fresh budget


def test_a_copy_that_fails_for_good_is_told_once(tmp_path: Path, receiver: NotifyReceiver, cdn: HttpSource) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path), endpoint(receiver.url))
    _, accepted = accept_event(runtime.ledger, runtime.settings,
                               event("m4", cdn.file_url("gone.mp4", size=1000, status=404), "gone.mp4"),
                               verified=False)
    job_id = accepted.created[0]
    assert run_copy_job(runtime, job_id).state == "failed"
    assert run_copy_job(runtime, job_id).state == "skipped"
    deliver_until(runtime, lambda: receiver.processed)
    deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)
    [payload] = receiver.processed.values()
    assert payload["type"] == "copy.failed" and len(receiver.requests) == 1
    assert payload["data"]["error"]["destination"] == "local"
    assert payload["data"]["error"]["code"] == runtime.ledger.job(job_id).error_code  # type: ignore[union-attr]
    assert payload["data"]["destinations"][0]["state"] == "failed"


def test_reconcile_finds_are_told_once_and_webhook_files_are_not(tmp_path: Path, receiver: NotifyReceiver) -> None:
    from archiver.domain.recordings import RecordingFile

    runtime = runtime_for(tmp_path, local_destination(tmp_path),
                          endpoint(receiver.url, events=["recording.discovered"]))
    found = RecordingFile(meeting_id="m5", session_id="s1", participant_id=None, kind=None,
                          file_path="uploads/videos/found.mp4", file_url="http://127.0.0.1:1/found.mp4",
                          webhook_type="recording-stopped", recording_id="rec-5", size=1234)

    def origin(source: str, key: str) -> Origin:
        return Origin(body="{}", dedupe_key=key, webhook_type="recording-stopped", meeting_id="m5", session_id="s1",
                      received_at=utcnow(), verified=False, source=source)

    record_files(runtime.ledger, runtime.settings, origin("reconcile", "r1"), [found])
    record_files(runtime.ledger, runtime.settings, origin("reconcile", "r2"), [found])  # listed again later
    announced = json.loads(event("m5", "http://127.0.0.1:1/w.mp4", "w.mp4"))
    accept_event(runtime.ledger, runtime.settings, json.dumps(announced), verified=False)
    deliver_until(runtime, lambda: receiver.processed)
    deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)
    [payload] = receiver.processed.values()
    assert payload["type"] == "recording.discovered" and len(receiver.requests) == 1
    assert payload["data"]["recording"]["recordingId"] == "rec-5"
    assert payload["data"]["recording"]["file"]["size"] == 1234


def test_a_private_target_is_refused_unless_allowed(tmp_path: Path, receiver: NotifyReceiver,
                                                    cdn: HttpSource) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path), endpoint(receiver.url, allow=False))
    _, accepted = accept_event(runtime.ledger, runtime.settings, event("m6", cdn.file_url("r.mp4", size=1000)),
                               verified=False)
    assert run_copy_job(runtime, accepted.created[0]).state == "succeeded"
    report = deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)
    assert report.retrying and receiver.requests == []
    [message] = runtime.ledger.deliveries.messages()
    assert "refused" in (message.last_error or "") and "loopback" in (message.last_error or "")


def test_a_broken_outbox_never_fails_the_copy(tmp_path: Path, receiver: NotifyReceiver, cdn: HttpSource) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path), endpoint(receiver.url))

    def broken(_destination: str, _key: str | None) -> str:
        raise RuntimeError("payload bug")

    runtime.ledger.outbox = Outbox(runtime.ledger.outbox.routes, broken)
    _, accepted = accept_event(runtime.ledger, runtime.settings, event("m7", cdn.file_url("r.mp4", size=1000)),
                               verified=False)
    assert run_copy_job(runtime, accepted.created[0]).state == "succeeded"
    assert runtime.ledger.job(accepted.created[0]).state == "succeeded"  # type: ignore[union-attr]
    assert runtime.ledger.deliveries.messages() == []


def test_a_missing_signing_secret_is_named_and_retried(tmp_path: Path, receiver: NotifyReceiver, cdn: HttpSource,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = runtime_for(tmp_path, local_destination(tmp_path), endpoint(receiver.url))
    _, accepted = accept_event(runtime.ledger, runtime.settings, event("m8", cdn.file_url("r.mp4", size=1000)),
                               verified=False)
    run_copy_job(runtime, accepted.created[0])
    monkeypatch.delenv(SECRET_VARIABLE)
    deliver_due(runtime.ledger, runtime.settings, runtime.worker_id)
    [message] = runtime.ledger.deliveries.messages()
    assert message.state == "pending" and f"{SECRET_VARIABLE} is not set" in (message.last_error or "")
    assert receiver.requests == []


@pytest.mark.parametrize(("table", "problem"), [
    ('name = "x"\nurl = "https://a.example/h"\nsecret_env = "S"\nsecret = "whsec_abc"', "secrets are not read"),
    ('name = "x"\nurl = "https://a.example/h"\nsecret_env = "S"\nevents = ["copy.done"]', "'copy.done' unknown"),
    ('name = "x"\nurl = "http://a.example/h"\nsecret_env = "S"', "use https, or set allow_http = true"),
    ('name = "x"\nurl = "https://u:p@a.example/h"\nsecret_env = "S"', "credentials in the URL"),
    ('name = "x"\nurl = "https://a.example/h"', "secret_env: required"),
    ('name = "x"\nurl = "https://a.example/h"\nsecret_env = "S"\nallowed_networks = ["ten"]', "is not a network"),
])
def test_bad_notification_settings_are_named_with_the_fix(tmp_path: Path, table: str, problem: str) -> None:
    path = tmp_path / "archiver.toml"
    path.write_text(f"[[notifications]]\n{table}\n")
    with pytest.raises(ConfigError, match="notifications\\[0\\]") as caught:
        load_settings(path, environ={})
    assert problem in str(caught.value)


def test_config_show_names_the_endpoint_and_never_its_secret(tmp_path: Path, receiver: NotifyReceiver,
                                                             capsys: pytest.CaptureFixture[str],
                                                             restore_root_logging: None) -> None:
    runtime_for(tmp_path, local_destination(tmp_path), endpoint(receiver.url + "?token=abc"))
    assert main(["--config", str(tmp_path / "archiver.toml"), "config", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)["notifications"]
    assert shown[0]["secret_env"] == SECRET_VARIABLE and shown[0]["events"] == sorted(
        ["copy.failed", "recording.archived", "recording.discovered"])
    assert "abc" not in json.dumps(shown) and receiver.secret not in json.dumps(shown)


def test_beat_sends_due_notifications_only_when_endpoints_are_configured(tmp_path: Path) -> None:
    import celeryconfig

    plain = runtime_for(tmp_path, local_destination(tmp_path)).settings
    assert "deliver-notifications" not in celeryconfig.build(plain)["beat_schedule"]
    configured = runtime_for(tmp_path, local_destination(tmp_path), endpoint("https://app.example.com/h")).settings
    entry = celeryconfig.build(configured)["beat_schedule"]["deliver-notifications"]
    assert entry["task"] == "archiver.deliver_notifications" and entry["schedule"] <= 10
    assert celeryconfig.build(configured)["task_routes"]["archiver.deliver_notifications"]["queue"] == "maintenance"
