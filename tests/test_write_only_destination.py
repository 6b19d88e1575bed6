"""A destination whose credentials may write but not read (a common least-privilege archive policy):
the copy is committed and recorded, flagged `unverified` rather than failed or deleted, and
`archiver verify` with read access confirms it later. Real Azurite, real SAS tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

from archiver.copy import job as copy_job
from archiver.copy.verification import verify_copies
from archiver.intake.record import accept_event
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.ledger.store import Ledger
from archiver.runtime import Runtime
from archiver.settings.config import load_settings
from tests.backends import create_az_container, unique_name
from tests.emulators import AZURITE_ACCOUNT, AZURITE_KEY
from tests.http_source import HttpSource, content, sha256

VARIABLE = "ARCHIVER_TEST_WRITE_ONLY_SAS"


def runtime_for(root: Path, endpoint: str, container: str) -> Runtime:
    (root / "archiver.toml").write_text(f"""
database_url = "sqlite:///{root}/ledger.db"
[source]
allow_hosts = ["127.0.0.1"]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
[[destinations]]
name = "azure"
url = "az://{container}/rec/{{meetingId}}/"
account_url = "{endpoint}"
sas_token_env = "{VARIABLE}"
part_size = "1MiB"
""")
    settings = load_settings(root / "archiver.toml", environ={})
    engine = create_ledger_engine(settings.database_url)
    upgrade(engine)
    return Runtime(settings=settings, ledger=Ledger(engine))


@pytest.mark.parametrize("size", [100_000, 3 << 20], ids=["single-put", "blocks"])
def test_a_write_only_sas_copy_is_recorded_unverified_then_verified_with_read_access(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, azurite_connection_string: str, size: int) -> None:
    container = unique_name()
    create_az_container(azurite_connection_string, container)
    endpoint = next(p.split("=", 1)[1] for p in azurite_connection_string.split(";") if p.startswith("BlobEndpoint="))

    def sas(**permissions: bool) -> str:
        return generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                      permission=ContainerSasPermissions(**permissions),
                                      expiry=datetime.now(UTC) + timedelta(hours=1))

    monkeypatch.setenv(VARIABLE, sas(create=True, write=True))
    runtime = runtime_for(tmp_path, endpoint, container)
    with HttpSource() as cdn:
        body = json.dumps({"webhookType": "recording-stopped", "data": {
            "meetingId": "m1", "sessionId": "s1", "filePath": "/encoded/videos/w.mp4",
            "fileUrl": cdn.file_url("w.mp4", size=size)}})
        _, accepted = accept_event(runtime.ledger, runtime.settings, body, verified=False)
        [job_id] = accepted.created
        outcome = copy_job.run_copy_job(runtime, job_id)
    job = runtime.ledger.job(job_id)
    assert outcome.state == "succeeded", outcome
    assert job is not None and (job.state, job.error_code) == ("succeeded", "unverified")
    assert "not read back" in (job.error_message or "") and job.sha256 == sha256("w.mp4", size)
    owner = ContainerClient.from_connection_string(azurite_connection_string, container)
    assert [b.name for b in owner.list_blobs()] == ["rec/m1/w.mp4"]  # visible, and the ledger accounts for it
    assert owner.download_blob("rec/m1/w.mp4").readall() == content("w.mp4", size)

    # An operator with read access verifies it: the flag goes, the copy is verified.
    monkeypatch.setenv(VARIABLE, sas(create=True, write=True, read=True))
    reader = runtime_for(tmp_path, endpoint, container)
    [verdict] = verify_copies(reader, since=None, deep=True)
    assert verdict.result == "ok", verdict
    done = reader.ledger.job(job_id)
    assert done is not None and done.error_code is None and done.verified_at is not None
