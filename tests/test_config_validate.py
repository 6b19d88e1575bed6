"""`archiver config validate` as an operator meets it: every URL checked at load, every provider option
problem in one run, a variable's bad value blamed on the variable, misspelt names and templates answered
with a suggestion, and relative paths that do not depend on the current folder (issue 13 items 2-5, 12)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.settings.config import ConfigError, load_settings


@pytest.fixture
def validate(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, restore_root_logging: None,
             tmp_path: Path):
    """Run `archiver --config FILE config validate` with only the given ARCHIVER_* variables set."""
    monkeypatch.setenv("ARCHIVER_CONFIG", "")  # main() sets it from --config; restored afterwards

    def run(toml: str, **env: str) -> tuple[int, str, str]:
        path = tmp_path / "archiver.toml"
        path.write_text(toml)
        for name in [n for n in os.environ if n.startswith("ARCHIVER_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = main(["--config", str(path), "config", "validate"])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


LOCAL = '[[destinations]]\nname = "local"\nurl = "file:///srv/archive/{meetingId}/"\n'


@pytest.mark.parametrize(("setting", "url", "expected"), [
    ("database_url", "postgres://archiver:pw@db:5432/archiver",
     "database_url: 'postgres://' is not a PostgreSQL driver this product ships; write postgresql+psycopg://"),
    ("database_url", "postgresql://archiver:pw@db:5432/archiver", "write postgresql+psycopg://"),
    ("database_url", "mysql://archiver@db/archiver", "'mysql://' is not a ledger this product supports"),
    ("database_url", "sqlite://host/ledger.db", "a SQLite URL names no host"),
    ("broker_url", "redis//redis:6379/9", "broker_url: not a broker URL: 'redis' must be followed by '://'"),
    ("broker_url", "redis://redis:6379/nine", "a Redis URL's path is the database number"),
    ("broker_url", "kafka://broker:9092", "'kafka://' is not a broker transport this product supports"),
    ("broker_url", "amqp://", "broker_url: names no host"),
])
def test_urls_are_checked_at_load(validate, setting: str, url: str, expected: str) -> None:
    code, out, err = validate(f'{setting} = "{url}"\n' + LOCAL)
    assert code == 2 and expected in err and out == ""
    assert ":pw@" not in err  # a URL that may hold a password is never quoted


def test_a_placeholder_in_the_bucket_is_refused(validate) -> None:
    code, _, err = validate('[[destinations]]\nname = "s3"\nurl = "s3://{meetingId}/x/"\nregion = "eu-west-1"\n'
                            '[videosdk]\nstorage = "gs://{roomId}"\n')
    assert code == 2
    assert "destinations[0].url: the bucket '{meetingId}' holds a placeholder" in err
    assert "e.g. s3://my-bucket/{meetingId}/" in err
    assert "videosdk.storage.url: the bucket '{roomId}' holds a placeholder" in err


def test_every_provider_option_problem_is_reported_in_one_run(validate) -> None:
    code, _, err = validate('[[destinations]]\nname = "s3"\nurl = "s3://bucket/{meetingId}/"\n'
                            'part_size = "big"\nconcurrency = 0\ntimeout = "soon"\ncolour = "red"\n'
                            '[[destinations]]\nname = "az"\nurl = "az://rec/{meetingId}/"\nconcurency = 4\n'
                            'connection_string_env = "AZ"\n')
    assert code == 2
    for fragment in ("destinations[0]: unknown option 'colour'", "destinations[0]: option 'part_size'",
                     "destinations[0]: option 'concurrency' for s3://bucket must be positive",
                     "destinations[0]: option 'timeout'", "destinations[1]: unknown option 'concurency'"):
        assert fragment in err, (fragment, err)
    assert "6 problems" not in err and "5 problems" in err


def test_a_variables_bad_value_names_the_variable(validate) -> None:
    code, _, err = validate(LOCAL, ARCHIVER_RETRY_MAX_ATTEMPTS="0", ARCHIVER_VISIBILITY_TIMEOUT="5",
                            ARCHIVER_BROKER_URL="redis//redis:6379/0")
    assert code == 2
    assert "ARCHIVER_RETRY_MAX_ATTEMPTS: must be at least 1, got 0 (retry.max_attempts)" in err
    assert "ARCHIVER_VISIBILITY_TIMEOUT: must be at least 10 seconds, got 5 (visibility_timeout)" in err
    assert "ARCHIVER_BROKER_URL: not a broker URL" in err
    assert "and ARCHIVER_* variables: 3 problems" in err  # the heading does not blame the file alone
    code, _, err = validate(LOCAL + "[retry]\nmax_attempts = 0\n", ARCHIVER_RETRY_MAX_ATEMPTS="3")
    assert "warning: ARCHIVER_RETRY_MAX_ATEMPTS is not a setting and is ignored; did you mean " \
           "ARCHIVER_RETRY_MAX_ATTEMPTS?" in err  # listed with the problems: it may be why
    assert code == 2 and "archiver.toml: 1 problem:\n  retry.max_attempts: must be at least 1" in err


def test_a_misspelt_variable_is_warned_about_with_a_suggestion(validate) -> None:
    code, out, _ = validate(LOCAL, ARCHIVER_BROKER_ULR="redis://redis:6379/0", ARCHIVER_RETRY_MAXATTEMPTS="3",
                            ARCHIVER_COLOUR="blue", ARCHIVER_TEST_DATABASE_URL="postgresql+psycopg://x/y")
    assert code == 0
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: ARCHIVER_BROKER_ULR is not a setting and is ignored; did you mean ARCHIVER_BROKER_URL?",
        "warning: ARCHIVER_COLOUR is not a setting and is ignored; see the README's Configuration reference",
        "warning: ARCHIVER_RETRY_MAXATTEMPTS is not a setting and is ignored; did you mean "
        "ARCHIVER_RETRY_MAX_ATTEMPTS?",
    ]


def test_variables_the_file_names_for_secrets_are_not_called_unknown(validate) -> None:
    toml = LOCAL + ('[[notifications]]\nname = "app"\nurl = "https://app.example.com/hooks"\n'
                    'secret_env = "ARCHIVER_NOTIFY_APP_SECRET"\n')
    code, out, err = validate(toml, ARCHIVER_NOTIFY_APP_SECRET="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
                              ARCHIVER_NOTIFY_APP_SECRT="x")
    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: ARCHIVER_NOTIFY_APP_SECRT is not a setting and is ignored; did you mean "
                        "ARCHIVER_NOTIFY_APP_SECRET?"]


def test_a_misspelt_file_key_gets_a_suggestion(validate) -> None:
    code, _, err = validate(LOCAL + "[retry]\nmax_atempts = 3\n")
    assert code == 2 and "retry.max_atempts: unknown setting, did you mean 'max_attempts'?" in err


@pytest.mark.parametrize(("written", "meant"), [("meeting_id", "meetingId"), ("sesionId", "sessionId"),
                                                 ("participant_id", "participantId"), ("filname", "filename")])
def test_a_misspelt_template_variable_gets_a_suggestion(validate, written: str, meant: str) -> None:
    code, _, err = validate(f'[[destinations]]\nname = "d"\nurl = "file:///srv/a/{{{written}}}/"\n')
    assert code == 2 and f"unknown variable {{{written}}} at column 1 (did you mean {{{meant}}}?)" in err


@pytest.mark.parametrize(("template", "warned"), [
    ("{yyyy}-{MM}", True), ("{meetingId}/{sessionId}", True), ("{meetingId}/{yyyy}-{MM}/", False),
    ("{meetingId}/{filename}", False), ("{meetingId}/{stem}.{ext}", False),
])
def test_a_template_that_makes_keys_collide_is_warned_about(validate, template: str, warned: bool) -> None:
    code, out, _ = validate(f'[[destinations]]\nname = "d"\nurl = "file:///srv/a/{template}"\n')
    assert code == 0
    warning = "warning: destinations[0].url: every file with the same"
    if template == "{yyyy}-{MM}":
        assert f"{warning} {{yyyy}}, {{MM}} gets the same key '{{yyyy}}-{{MM}}'" in out
    assert (warning in out) is warned, out
    if warned:
        assert "end the template with '/'" in out


def test_relative_paths_are_relative_to_the_config_file_not_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, validate) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = validate('database_url = "sqlite:///./state/ledger.db"\n'
                            'broker_url = "sqla+sqlite:///state/broker.db"\n'
                            '[[destinations]]\nname = "local"\nurl = "file:./archive/{meetingId}/"\n')
    assert code == 0
    config = (tmp_path / "archiver.toml").resolve()
    assert f"config file: {config} (relative paths are relative to its folder)" in out
    assert f"ledger: SQLite file {tmp_path.resolve() / 'state' / 'ledger.db'}" in out
    settings = load_settings(config, environ={})
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/state/ledger.db"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path.resolve()}/state/broker.db"
    assert settings.destination("local").provider_url == f"file://{tmp_path.resolve()}/archive"
    assert settings.destination("local").template.text == "{meetingId}/"


def test_without_a_config_file_validate_says_the_defaults_and_the_ledger_are_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        restore_root_logging: None) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ARCHIVER_")]:
        monkeypatch.delenv(name)
    assert main(["config", "validate"]) == 0
    out = capsys.readouterr().out
    assert "config file: none found (built-in defaults" in out
    assert f"ledger: SQLite file {tmp_path.resolve() / '.archiver' / 'ledger.db'}" in out


def test_the_up_banner_names_the_config_file(tmp_path: Path) -> None:
    from archiver.cli.service import describe

    path = tmp_path / "archiver.toml"
    path.write_text(LOCAL)
    banner = describe(load_settings(path, environ={}), "127.0.0.1", 8000)
    assert f"config    {path.resolve()}" in banner
    assert f"ledger    sqlite:///{tmp_path.resolve()}/.archiver/ledger.db" in banner


def test_problems_keep_their_file_locations(tmp_path: Path) -> None:
    path = tmp_path / "archiver.toml"
    path.write_text('[receiver]\nport = 0\npath = "hooks"\n[retention]\ndelete_from_videosdk = "always"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value).startswith(f"{path.resolve()}: 3 problems:")
    assert caught.value.problems == [
        "retention.delete_from_videosdk: must be one of 'off', 'after-verified', got 'always'",
        "receiver.port: must be 1-65535, got 0",
        "receiver.path: must start with '/', got 'hooks'",
    ]


def test_serve_says_which_config_and_ledger_it_uses_from_any_folder(tmp_path: Path) -> None:
    """`cd elsewhere && archiver serve` opens the ledger beside the config file, and says so."""
    import subprocess
    import sys

    from tests.emulators import free_port

    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    config = home / "archiver.toml"
    config.write_text('database_url = "sqlite:///state/ledger.db"\nbroker_url = "sqla+sqlite:///state/broker.db"\n'
                      '[videosdk]\nverify_signatures = false\n' + LOCAL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env.update(ARCHIVER_CONFIG=str(config), ARCHIVER_LEASE_SECOND="30", PYTHONPATH=str(Path.cwd()))
    serve = subprocess.Popen([sys.executable, "-m", "archiver.cli", "serve", "--port", str(free_port())],
                             cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        assert serve.stderr is not None
        # Off a terminal the service writes JSON log lines on stderr: the warning first, then the banner.
        while not any("archiver receiver:" in line for line in seen):
            line = serve.stderr.readline()
            assert line, seen
            seen.append(line)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    messages = [json.loads(line)["message"] for line in seen]
    banner = messages[-1]
    assert f"config file: {config.resolve()}" in banner, messages
    assert f"ledger: SQLite file {home.resolve() / 'state' / 'ledger.db'}" in banner
    assert "warning: ARCHIVER_LEASE_SECOND is not a setting and is ignored; did you mean ARCHIVER_LEASE_SECONDS?" \
        in messages
    assert (home / "state" / "ledger.db").exists() and not (elsewhere / "state").exists()
