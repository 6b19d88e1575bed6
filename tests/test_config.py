"""archiver.toml and ARCHIVER_* variables: everything validated at once, each problem located."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.settings.config import ConfigError, load_settings
from archiver.settings.destinations import split_destination_url


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(text)
    return path


GOOD = """
broker_url   = "redis://127.0.0.1:6379/0"
database_url = "postgresql+psycopg://postgres@127.0.0.1/archiver"

[source]
allow_hosts = ["cdn.videosdk.live", "*.videosdk.live"]

[[destinations]]
name = "primary"
url  = "s3://acme-recordings/videosdk/{meetingId}/{yyyy}/{MM}/{dd}/"
region = "eu-west-1"
storage_class = "STANDARD_IA"
events = ["recording-stopped"]
manifest = true
overwrite = false
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), environ={})
    dest = settings.destination("primary")
    assert dest.provider_url == "s3://acme-recordings"
    assert dest.template.text == "videosdk/{meetingId}/{yyyy}/{MM}/{dd}/"
    assert dest.options == {"region": "eu-west-1", "storage_class": "STANDARD_IA"}
    assert dest.manifest and not dest.overwrite
    assert dest.wants("recording-stopped") and not dest.wants("participant-recording-stopped")
    assert settings.broker_url == "redis://127.0.0.1:6379/0"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {"ARCHIVER_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//", "ARCHIVER_VISIBILITY_TIMEOUT": "900",
           "ARCHIVER_SOURCE_ALLOW_HOSTS": "cdn.example.com, *.cdn.example.com",
           "ARCHIVER_SOURCE_ALLOW_PRIVATE": "false", "ARCHIVER_SOURCE_ALLOW_HTTP": "yes"}
    settings = load_settings(write(tmp_path, GOOD), environ=env)
    assert settings.broker_url.startswith("amqp://")
    assert settings.visibility_timeout == 900
    assert settings.source.allow_hosts == ("cdn.example.com", "*.cdn.example.com")
    assert settings.source.allow_http is True


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database_url == "sqlite:///./.archiver/ledger.db"
    assert [d.url for d in settings.destinations] == ["file:./archive/{meetingId}/{sessionId}/"]


def test_every_problem_is_reported_with_its_location(tmp_path: Path) -> None:
    path = write(tmp_path, """
visibility_timeout = "long"
colour = 1
[source]
allow_http = "yes"
[[destinations]]
name = "primary"
url = "s3://acme/videosdk/{meetingId}/"
secret_access_key = "AKIA-in-a-file"
access_key_id = "AKIA"
[[destinations]]
name = "backup"
url = "az://recordings/{roomID}/"
[[destinations]]
name = "primary"
url = "gs://bucket/{meetingId"
colour = 2
[[destinations]]
name = "bare"
url = "s3://bucket"
""")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, environ={"ARCHIVER_LEASE_SECONDS": "soon"})
    problems = excinfo.value.problems
    expected = [
        "ARCHIVER_LEASE_SECONDS: must be an integer, got 'soon'",
        "colour: unknown setting",
        "visibility_timeout: must be int, got str",
        "source.allow_http: must be bool, got str",
        "destinations[0].secret_access_key: secrets are not read from the config file",
        "destinations[1].url: unknown variable {roomID}",
        "destinations[2].url: unbalanced '{'",
        "destinations[2]: unknown option 'colour'",
        "destinations[3].url: empty template",
        "destinations: name 'primary' is used more than once",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    assert "AKIA-in-a-file" not in str(excinfo.value)


def test_a_secret_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_S3_SECRET", "s3cr3t-value")
    path = write(tmp_path, """
[[destinations]]
name = "primary"
url = "s3://acme/{meetingId}/"
access_key_id = "AKIAEXAMPLE"
secret_access_key_env = "ACME_S3_SECRET"
""")
    dest = load_settings(path, environ={}).destination("primary")
    assert "s3cr3t-value" not in repr(dest.open())


def test_missing_and_malformed_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "broker_url = "), environ={})


@pytest.mark.parametrize(("url", "provider", "template"), [
    ("s3://b/videosdk/{meetingId}/", "s3://b", "videosdk/{meetingId}/"),
    ("file:./archive/{meetingId}/{sessionId}/", "file:./archive", "{meetingId}/{sessionId}/"),
    ("file:///srv/rec/{meetingId}/", "file:///srv/rec", "{meetingId}/"),
    ("file:///srv/rec/", "file:///srv/rec", "{filename}"),
])
def test_destination_url_splits_into_provider_and_template(url: str, provider: str, template: str) -> None:
    assert split_destination_url(url) == (provider, template)


def test_a_misspelt_events_filter_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[[destinations]]\nname = "a"\nurl = "file:///srv/{meetingId}/"\n'
                           'events = ["recording-stoped", "recording-stopped"]\n')
    with pytest.raises(ConfigError, match=r"destinations\[0\]\.events: 'recording-stoped' never carries a file"):
        load_settings(path, environ={})
