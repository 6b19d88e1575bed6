"""A key template that cannot render for a file is recoverable: the job fails once, visibly, with the
fix; after the configuration is fixed, `retry` renders the key again; nothing loops, and a template
that could never render for a webhook type its destination accepts is refused at load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.copy import job as copy_job
from archiver.copy.errors import classify
from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.runtime import Runtime
from archiver.settings.config import ConfigError, load_settings
from tests.http_source import HttpSource, content


def runtime_for(root: Path, url: str, events: str = '["participant-recording-stopped"]') -> Runtime:
    (root / "archiver.toml").write_text(f"""
database_url = "sqlite:///{root}/ledger.db"
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
[[destinations]]
name = "local"
url = "{url}"
events = {events}
""")
    settings = load_settings(root / "archiver.toml", environ={})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    return Runtime(settings=settings, ledger=Ledger(engine))


def participant_body(participant: str, url: str) -> str:
    return json.dumps({"webhookType": "participant-recording-stopped",
                       "data": {"meetingId": "m1", "sessionId": "s1", "participantId": participant,
                                "fileDetails": [{"filePath": "/encoded/videos/p.webm", "fileUrl": url}]}})


@pytest.mark.parametrize("participant", ["a/b", "..", "x\\y", "ok\u202e"])
def test_a_hostile_id_fails_once_with_the_fix_and_a_fixed_template_is_applied_on_retry(
        tmp_path: Path, participant: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    runtime = runtime_for(root, f"file://{root}/archive/{{meetingId}}/{{participantId}}/")
    with HttpSource() as cdn:
        _, accepted = accept_event(runtime.ledger, runtime.settings,
                                   participant_body(participant, cdn.file_url("p.webm", size=70_000)), verified=False)
        [job_id] = accepted.job_ids
        job = runtime.ledger.job(job_id)
        assert job is not None and (job.state, job.error_code, job.object_key) == ("failed", "template", None)
        assert "archiver retry" in (job.error_message or "") and "{participantId" in (job.error_message or "")

        # Retried with the same configuration: one final failure again, never an internal error, no loop.
        assert runtime.ledger.requeue([job_id]) == [job_id]
        outcome = copy_job.run_copy_job(runtime, job_id)
        again = runtime.ledger.job(job_id)
        assert outcome.state == "failed" and again is not None
        assert (again.state, again.error_code, again.attempts) == ("failed", "template", 1)

        # The operator takes the participant out of the key; retry renders it with the new template.
        fixed = runtime_for(root, f"file://{root}/archive/{{meetingId}}/{{sessionId}}/")
        assert fixed.ledger.requeue([job_id]) == [job_id]
        outcome = copy_job.run_copy_job(fixed, job_id)
        assert outcome.state == "succeeded", outcome
    done = fixed.ledger.job(job_id)
    assert done is not None and done.object_key == "m1/s1/p.webm"
    assert (root / "archive" / "m1" / "s1" / "p.webm").read_bytes() == content("p.webm", 70_000)


@pytest.mark.parametrize(("url", "events", "variable"), [
    ("s3://b/{meetingId}/{participantId}/", None, "participantId"),
    ("s3://b/{meetingId}/{kind}/", '["participant-recording-stopped"]', "kind"),
    ("s3://b/{meetingId}/{kind}/{filename}", '["recording-stopped", "participant-track-recording-stopped"]', "kind"),
    ("s3://b/{meetingId}/{participantId}/", '["transcription-stopped"]', "participantId"),
    ("s3://b/${participantId}/", '["merge-recording-completed"]', "participantId"),
])
def test_a_template_that_can_never_render_for_an_accepted_type_is_refused(
        tmp_path: Path, url: str, events: str | None, variable: str) -> None:
    (tmp_path / "archiver.toml").write_text(f"""
[[destinations]]
name = "d"
url = "{url}"
region = "us-east-1"
{f"events = {events}" if events else ""}
""")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "archiver.toml", environ={})
    [problem] = caught.value.problems
    assert f"{{{variable}}} has no value" in problem and f"{{{variable}|none}}" in problem


@pytest.mark.parametrize(("url", "events"), [
    ("s3://b/{meetingId}/{participantId|room}/{kind|all}/", None),
    ("s3://b/{meetingId}/{participantId}/", '["participant-recording-stopped", "participant-track-recording-stopped"]'),
    ("s3://b/{meetingId}/{participantId}/{kind}/", '["participant-track-recording-stopped"]'),
    ("s3://b/{meetingId}/{kind}/", '["merge-recording-completed"]'),
    ("s3://b/{meetingId}/{kind}/", '["transcription-stopped", "participant-track-recording-stopped"]'),
    ("s3://b/{recordingId}/", '["participant-track-recording-stopped"]'),
])
def test_templates_that_render_for_every_accepted_type_load(tmp_path: Path, url: str, events: str | None) -> None:
    (tmp_path / "archiver.toml").write_text(f"""
[[destinations]]
name = "d"
url = "{url}"
region = "us-east-1"
{f"events = {events}" if events else ""}
""")
    assert load_settings(tmp_path / "archiver.toml", environ={}).destinations[0].name == "d"


@pytest.mark.parametrize("exc", [AssertionError("job.object_key is None"), TypeError("x"), AttributeError("y")])
def test_a_broken_invariant_is_never_retried(exc: Exception) -> None:
    failure = classify(exc, attempt=1)
    assert failure.code == "internal" and not failure.retryable
