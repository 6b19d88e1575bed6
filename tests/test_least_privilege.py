"""Least privilege: only processes that open a destination need its secrets.

The receiver faces the Internet; it validates the configuration (option names, types, combinations,
that an `*_env` option names a variable) but never reads a storage secret, so it can run without any.
The worker, `check`, `archive` and `verify` open destinations and refuse to start, naming the
variable, when one is missing; `config validate` reports a missing one as a warning.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from archiver.cli import main
from archiver.settings.config import ConfigError, load_settings
from providers import ConfigurationError, MissingSecret, open_provider
from tests.emulators import ROOT, free_port
from tests.receiver_harness import PATH, new_key

SECRET_VARIABLES = ("LP_S3_SECRET", "LP_AZURE_CONNECTION", "LP_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING")


def write_config(root: Path, broker_url: str, extra: str = "") -> Path:
    """Every kind of secret a destination can need, none of them available to this process."""
    path = root / "archiver.toml"
    path.write_text(f"""
broker_url = "{broker_url}"
database_url = "sqlite:///{root}/ledger.db"
{extra}
[[destinations]]
name = "s3"
url = "s3://acme/{{meetingId}}/"
access_key_id = "AKIAEXAMPLE"
secret_access_key_env = "LP_S3_SECRET"

[[destinations]]
name = "azure"
url = "az://recordings/{{meetingId}}/"
connection_string_env = "LP_AZURE_CONNECTION"

[[destinations]]
name = "azure-sas"
url = "az://recordings/sas/{{meetingId}}/"
account_url = "https://acct.blob.core.windows.net"
sas_token_env = "LP_SAS_TOKEN"

[[destinations]]
name = "azure-default"
url = "az://recordings/default/{{meetingId}}/"

[[destinations]]
name = "gcs"
url = "gs://acme/{{meetingId}}/"
credentials_file = "{root}/not-mounted-here.json"

[[destinations]]
name = "local"
url = "file://{root}/archive/{{meetingId}}/"
""")
    return path


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_loading_needs_no_secret_and_reads_none(tmp_path: Path, no_secrets: None) -> None:
    settings = load_settings(write_config(tmp_path, "redis://127.0.0.1:1/0"), environ={})
    assert [d.name for d in settings.destinations] == ["s3", "azure", "azure-sas", "azure-default", "gcs", "local"]
    for dest in settings.destinations:
        provider = dest.open()
        clone = pickle.loads(pickle.dumps(provider))  # a receiver may hand it on; still nothing read
        assert "<redacted>" in repr(clone) or dest.name in ("azure-default", "gcs", "local")


def test_an_env_option_must_name_a_variable(tmp_path: Path, no_secrets: None) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[destinations]]\nname = "s3"\nurl = "s3://acme/{meetingId}/"\naccess_key_id = "AKIA"\n'
                    'secret_access_key_env = 5\n[[destinations]]\nname = "az"\nurl = "az://rec/{meetingId}/"\n'
                    'connection_string_env = "not a name"\n[[destinations]]\nname = "az2"\n'
                    'url = "az://rec/{meetingId}/"\naccount_url = "https://a.blob.core.windows.net"\n'
                    'account_key_env = "K"\nsas_token_env = "S"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, environ={})
    problems = "\n".join(excinfo.value.problems)
    assert "destinations[0]: option 'secret_access_key_env'" in problems and "must name an environment" in problems
    assert "destinations[1]: option 'connection_string_env'" in problems
    assert "destinations[2]: give one credential" in problems  # combinations are checked without values


def test_a_secret_is_read_and_checked_at_the_first_client(monkeypatch: pytest.MonkeyPatch, no_secrets: None) -> None:
    provider = open_provider("az://recordings/pre", account_url="https://acct.blob.core.windows.net",
                             sas_token_env="LP_SAS_TOKEN")
    with pytest.raises(MissingSecret, match="LP_SAS_TOKEN is not set in this process") as excinfo:
        provider.stat("k.bin")
    assert excinfo.value.what == "LP_SAS_TOKEN"
    monkeypatch.setenv("LP_SAS_TOKEN", "not-a-signature")
    with pytest.raises(ConfigurationError, match=r"'sas_token'.*sig=") as bad:
        provider.resolve_secrets()
    assert "not-a-signature" not in str(bad.value)


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"archiver serve exited with {proc.returncode}:\n{proc.communicate()[0][-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("archiver serve did not start")


@pytest.fixture
def serve(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, object]]:
    """`archiver serve` as a process of its own whose environment holds none of the secrets."""
    from archiver.ledger.database import create_ledger_engine, upgrade

    private, pem = new_key()
    (tmp_path / "webhook.pem").write_text(pem)
    config = write_config(tmp_path, redis_url, f'[videosdk]\nwebhook_public_key = "{tmp_path}/webhook.pem"')
    upgrade(create_ledger_engine(f"sqlite:///{tmp_path}/ledger.db"))
    env = {k: v for k, v in os.environ.items()
           if k not in SECRET_VARIABLES and not k.startswith(("ARCHIVER_", "AWS_", "GOOGLE_"))}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "archiver.cli", "--config", str(config), "serve", "--port",
                             str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}", private
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_serve_starts_and_accepts_a_webhook_without_any_storage_secret(serve: tuple[str, object]) -> None:
    from archiver.intake.signature import sign_body

    url, private = serve
    body = json.dumps({"webhookType": "recording-stopped",
                       "data": {"meetingId": "lp-room", "sessionId": "s1", "filePath": "/encoded/videos/a.mp4",
                                "fileUrl": "https://cdn.videosdk.live/encoded/videos/a.mp4"}}).encode()
    answer = httpx.post(url + PATH, content=body, timeout=30, headers={
        "content-type": "application/json", "videosdk-signature": sign_body(body, private)})  # type: ignore[arg-type]
    assert answer.status_code == 202, answer.text
    assert len(answer.json()["jobs"]) == 6  # one per destination, each with its secret still unread
    assert httpx.get(f"{url}/readyz", timeout=10).json() == {"broker": "ok", "ledger": "ok",
                                                               "webhook_key": "ok"}


def _cli(config: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.usefixtures("restore_root_logging", "no_secrets")
def test_processes_that_open_destinations_refuse_to_start_naming_the_variable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "redis://127.0.0.1:1/0")
    for argv in (["worker"], ["check"], ["verify"]):
        code, _, err = _cli(config, capsys, *argv)
        assert code == 2, (argv, err)
        for needed in ("LP_S3_SECRET", "LP_AZURE_CONNECTION", "LP_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
                       "not-mounted-here.json"):
            assert needed in err, (argv, needed, err)
    code, _, err = _cli(config, capsys, "check", "s3")
    assert code == 2 and "LP_S3_SECRET" in err and "LP_AZURE_CONNECTION" not in err
    code, out, err = _cli(config, capsys, "check", "local")
    assert code == 0 and "FAIL" not in out  # a destination without secrets is checked as before


@pytest.mark.usefixtures("restore_root_logging", "no_secrets")
def test_config_validate_reports_missing_secrets_as_warnings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, "redis://127.0.0.1:1/0")
    code, out, err = _cli(config, capsys, "config", "validate")
    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 5 and all("every worker needs it" in w for w in warnings)
    for name in ("LP_S3_SECRET", "LP_AZURE_CONNECTION", "LP_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING"):
        assert sum(name in w for w in warnings) == 1, (name, warnings)
    monkeypatch.setenv("LP_AZURE_CONNECTION", "AccountName=a;AccountKey=not-base64!")
    code, _, err = _cli(config, capsys, "config", "validate")  # present but malformed: an error
    assert code == 2 and "destination azure" in err and "not-base64" not in err


# ---- exposure: worker metrics listen on loopback unless told otherwise -------------------------------

def test_worker_metrics_listen_on_loopback_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.cli import cli
    from archiver.cli.app import parse
    from archiver.observability.metrics import serve_worker_metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _, params = parse(cli, ["worker", "--metrics-port", "9100"])
    assert params["metrics_host"] == "127.0.0.1"
    assert parse(cli, ["worker", "--metrics-host", "0.0.0.0"])[1]["metrics_host"] == "0.0.0.0"
    for host in ("127.0.0.1", None):
        port = free_port()
        server = serve_worker_metrics(port, host) if host else serve_worker_metrics(port)
        try:
            assert server.server_address[0] == "127.0.0.1"
            assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
        finally:
            server.shutdown()
            server.server_close()
