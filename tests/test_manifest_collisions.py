"""A manifest never replaces anything, and two files never share a key: a recording named
`rec.mp4.json` beside `rec.mp4` (whose manifest is `rec.mp4.json`) is refused at intake with the fix,
and whatever is already at KEY.json is never overwritten by a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from archiver.copy import job as copy_job
from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.models import CopyJob
from archiver.ledger.store import Ledger
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from tests.http_source import HttpSource, content


def runtime_for(root: Path, template: str = "{meetingId}/") -> Runtime:
    (root / "archiver.toml").write_text(f"""
database_url = "sqlite:///{root}/ledger.db"
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
[[destinations]]
name = "local"
url = "file://{root}/archive/{template}"
manifest = true
""")
    settings = load_settings(root / "archiver.toml", environ={})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    return Runtime(settings=settings, ledger=Ledger(engine))


def body(cdn: HttpSource, names: list[str]) -> str:
    return json.dumps({"webhookType": "participant-recording-stopped", "data": {
        "meetingId": "m1", "sessionId": "s1", "participantId": "p1",
        "fileDetails": [{"filePath": f"/encoded/videos/{n}", "fileUrl": cdn.file_url(n, size=50_000)}
                        for n in names]}})


@pytest.mark.parametrize("names", [["rec.mp4", "rec.mp4.json"], ["rec.mp4.json", "rec.mp4"]],
                         ids=["manifest-name-second", "manifest-name-first"])
def test_a_file_named_like_anothers_manifest_is_refused_and_nothing_is_overwritten(tmp_path: Path,
                                                                                  names: list[str]) -> None:
    runtime = runtime_for(tmp_path)
    with HttpSource() as cdn:
        _, accepted = accept_event(runtime.ledger, runtime.settings, body(cdn, names), verified=False)
        jobs = runtime.ledger.jobs(job_ids=list(accepted.job_ids))
        refused = [j for j in jobs if j.state == "failed"]
        assert [j.error_code for j in refused] == ["key_collision"] and len(accepted.created) == 1
        assert "collides with job" in (refused[0].error_message or "") and "archiver retry" in (
            refused[0].error_message or "")
        [kept] = accepted.created
        assert copy_job.run_copy_job(runtime, kept).state == "succeeded"
    folder = tmp_path / "archive" / "m1"
    kept_name = runtime.ledger.job(kept).file_path.rsplit("/", 1)[-1]  # type: ignore[union-attr]
    assert (folder / kept_name).read_bytes() == content(kept_name, 50_000)
    manifest = json.loads((folder / f"{kept_name}.json").read_text())
    assert manifest["object_key"] == f"m1/{kept_name}" and manifest["size"] == 50_000
    assert sorted(p.name for p in folder.iterdir()) == sorted([kept_name, f"{kept_name}.json"])


def test_a_manifest_never_replaces_an_object_already_at_its_key(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path)
    foreign = tmp_path / "archive" / "m1" / "rec.mp4.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"somebody else's recording")
    with HttpSource() as cdn:
        _, accepted = accept_event(runtime.ledger, runtime.settings, body(cdn, ["rec.mp4"]), verified=False)
        [job_id] = accepted.created
        outcome = copy_job.run_copy_job(runtime, job_id)
    assert outcome.state == "failed" and (outcome.error or "").startswith("conflict:"), outcome
    assert "manifest" in (outcome.error or "")
    assert foreign.read_bytes() == b"somebody else's recording"


def test_a_rerun_keeps_its_own_manifest(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path)
    with HttpSource() as cdn:
        _, accepted = accept_event(runtime.ledger, runtime.settings, body(cdn, ["rec.mp4"]), verified=False)
        [job_id] = accepted.created
        assert copy_job.run_copy_job(runtime, job_id).state == "succeeded"
        # a crash after the manifest but before `succeeded` was recorded: the job runs again, finds its
        # object (adopted) and its own manifest (kept), and succeeds
        with runtime.ledger.sessions.begin() as db:
            db.execute(update(CopyJob).where(CopyJob.id == job_id).values(state="pending"))
        again = copy_job.run_copy_job(runtime, job_id)
        assert (again.state, again.uploaded) == ("succeeded", False), again


def test_two_files_that_render_to_one_key_are_refused_at_intake(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path, template="{meetingId}/{participantId|room}.webm")
    with HttpSource() as cdn:
        _, accepted = accept_event(runtime.ledger, runtime.settings, body(cdn, ["a.webm", "b.webm"]), verified=False)
    states = [(j.state, j.error_code) for j in runtime.ledger.jobs(job_ids=list(accepted.job_ids))]
    assert states == [("pending", None), ("failed", "key_collision")] and len(accepted.created) == 1
