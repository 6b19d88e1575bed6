"""`archiver verify` on real copies (a local folder and S3 on moto), made by `archiver archive` from the
stand-in CDN, then deleted or replaced behind the archiver's back."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from archiver.cli import main
from archiver.ledger.database import create_ledger_engine
from archiver.ledger.models import CopyJob
from archiver.ledger.store import Ledger
from tests import http_source
from tests.backends import create_s3_bucket, unique_name
from tests.http_source import HttpSource

SIZE = 300_000


pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def setup(tmp_path: Path, database_url: str, moto_url: str, source: HttpSource,
          monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    bucket = unique_name()
    create_s3_bucket(moto_url, bucket)
    config = tmp_path / "archiver.toml"
    config.write_text(f"""
database_url = "{database_url}"
broker_url = "sqla+sqlite:///{tmp_path}/broker.db"

[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]

[[destinations]]
name = "disk"
url = "file://{tmp_path}/disk/{{meetingId}}/"

[[destinations]]
name = "s3"
url = "s3://{bucket}/v/{{meetingId}}/"
endpoint_url = "{moto_url}"
region = "us-east-1"
addressing_style = "path"
access_key_id = "testing"
secret_access_key_env = "VERIFY_TEST_S3_SECRET"
""")
    monkeypatch.setenv("ARCHIVER_CONFIG", str(config))
    monkeypatch.setenv("VERIFY_TEST_S3_SECRET", "moto-secret-key")
    meeting = f"mtg-{secrets.token_hex(4)}"
    name = f"{meeting}.mp4"
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"webhookType": "recording-stopped", "data": {
        "meetingId": meeting, "sessionId": "s1", "filePath": f"/encoded/videos/{name}",
        "fileUrl": source.file_url(name, size=SIZE)}}))
    assert main(["archive", str(event)]) == 0
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    return {"ledger": Ledger(create_ledger_engine(database_url)), "meeting": meeting, "name": name,
            "disk": tmp_path / "disk" / meeting / name, "s3": s3, "bucket": bucket, "s3_key": f"v/{meeting}/{name}"}


def verify(capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, dict[str, dict[str, Any]]]:
    capsys.readouterr()
    code = main(["verify", "--json", *options])
    return code, {v["destination"]: v for v in json.loads(capsys.readouterr().out)}


def ledger_state(ledger: Ledger) -> dict[str, tuple[str, str | None, bool]]:
    with ledger.sessions() as db:
        return {j.destination: (j.state, j.error_code, j.verified_at is not None) for j in db.scalars(select(CopyJob))}


def test_missing_and_replaced_objects_are_found_and_recorded(setup: dict[str, Any],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    ledger, s3 = setup["ledger"], setup["s3"]
    code, verdicts = verify(capsys)
    assert code == 0 and {d: v["result"] for d, v in verdicts.items()} == {"disk": "ok", "s3": "ok"}
    assert ledger_state(ledger) == {"disk": ("succeeded", None, True), "s3": ("succeeded", None, True)}

    s3.delete_object(Bucket=setup["bucket"], Key=setup["s3_key"])
    setup["disk"].write_bytes(bytes(SIZE))  # same size, other bytes, in place
    code, verdicts = verify(capsys)
    assert code == 1
    assert verdicts["s3"]["result"] == "missing"
    assert verdicts["disk"]["result"] == "ok"  # size and recorded checksum agree: only reading tells
    code, verdicts = verify(capsys, "--deep")
    assert code == 1 and verdicts["disk"]["result"] == "mismatch" and "sha256" in verdicts["disk"]["detail"]
    # the copies did happen, so the state stays; what is wrong shows as the error, and they are unverified
    assert ledger_state(ledger) == {"disk": ("succeeded", "verify_mismatch", False),
                                    "s3": ("succeeded", "verify_missing", False)}
    capsys.readouterr()
    assert main(["status", "--meeting", setup["meeting"]]) == 0
    assert "verify_missing" in capsys.readouterr().out

    s3.put_object(Bucket=setup["bucket"], Key=setup["s3_key"], Body=b"somebody else's recording")
    code, verdicts = verify(capsys)
    assert code == 1 and verdicts["s3"]["result"] == "mismatch"
    assert f"ledger {SIZE} bytes, object 25 bytes" in verdicts["s3"]["detail"]

    original = http_source.content(setup["name"], SIZE)
    s3.put_object(Bucket=setup["bucket"], Key=setup["s3_key"], Body=original)
    setup["disk"].write_bytes(original)
    code, verdicts = verify(capsys, "--deep")
    assert code == 0 and {v["result"] for v in verdicts.values()} == {"ok"}
    assert ledger_state(ledger) == {"disk": ("succeeded", None, True), "s3": ("succeeded", None, True)}


def test_table_output_window_and_foreign_flags(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    ledger = setup["ledger"]
    disk_job = next(j.job_id for j in ledger.jobs() if j.destination == "disk")
    ledger.flag_copy(disk_job, "size_mismatch", "copy has 1 bytes, VideoSDK reports 2 bytes")  # as reconcile does
    capsys.readouterr()
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["JOB", "DESTINATION", "KEY", "RESULT", "DETAIL"]
    assert out.rstrip().endswith("2 copies checked: 2 ok, 0 mismatch, 0 missing, 0 error")
    # verify checked the copy against the ledger, not the source: reconcile's flag is not its to clear
    assert ledger_state(ledger)["disk"] == ("succeeded", "size_mismatch", True)

    setup["s3"].delete_object(Bucket=setup["bucket"], Key=setup["s3_key"])
    assert main(["verify", "--since", "2999-01-01"]) == 0  # nothing in the window: nothing checked
    assert capsys.readouterr().out.strip() == "0 copies checked: 0 ok, 0 mismatch, 0 missing, 0 error"
    with pytest.raises(SystemExit) as usage:
        main(["verify", "--since", "yesterday"])
    assert usage.value.code == 2
