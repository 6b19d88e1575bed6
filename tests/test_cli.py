"""The `archiver` command line itself (click): --version, --json and --config on every verb, "did you mean",
one line and exit 2 for a ledger or broker that cannot be reached, missing credentials, render-path with
one destination, and `make run` installing the product alone (issue 12 item 3, issue 13 items 1, 6, 7, 16)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from archiver.cli import cli, main
from archiver.cli.app import parse
from tests.emulators import ROOT, free_port

pytestmark = pytest.mark.usefixtures("restore_root_logging")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`archiver ARGV` in this process: (exit code, stdout, stderr); a usage error's SystemExit is its code."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def leaf_verbs(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += leaf_verbs(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(f'database_url = "sqlite:///{tmp_path}/ledger.db"\n'
                    f'broker_url = "sqla+sqlite:///{tmp_path}/broker.db"\n\n'
                    f'[[destinations]]\nname = "disk"\nurl = "file://{tmp_path}/disk/{{meetingId}}/"\n')
    for name in ("ARCHIVER_CONFIG", "ARCHIVER_DATABASE_URL", "ARCHIVER_BROKER_URL", "ARCHIVER_VIDEOSDK_API_KEY",
                 "VIDEOSDK_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return path


def test_version_and_json_on_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("archiver ")
    verbs = leaf_verbs(cli)
    assert {("status",), ("prune",), ("db", "upgrade"), ("config", "validate"), ("up",)} <= set(verbs)
    for path in verbs:
        command: click.Command = cli
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        options = {o for p in command.params for o in p.opts}
        # `recording start --config FILE` is VideoSDK's recording config (issue 14's form); the archiver's
        # own config goes before the verb there (`archiver --config X recording start ...`).
        assert {"--json", "--config"} <= options or (path[0] == "recording" and "--json" in options), path
    assert parse(cli, ["db", "upgrade", "--json"])[0] == ["db", "upgrade"]


def test_did_you_mean_for_verbs_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "stauts")
    assert code == 2 and "did you mean 'status'" in err
    code, _, err = run(capsys, "db", "upgarde")
    assert code == 2 and "did you mean 'upgrade'" in err
    code, _, err = run(capsys, "status", "--jsn")
    assert code == 2 and "--json" in err and "id you mean" in err


def test_config_goes_before_or_after_the_verb(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--config", str(config), "config", "validate"], ["config", "validate", "--config", str(config)],
                 ["config", "--config", str(config), "validate"]):
        code, out, err = run(capsys, *argv)
        assert code == 0 and f"{config}: valid; 1 destination(s): disk" in out, (argv, err)
    assert run(capsys, "--config", str(config), "db", "upgrade")[0] == 0
    code, out, _ = run(capsys, "status", "--config", str(config), "--json")
    assert (code, out.strip()) == (0, "[]")


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv", [["status"], ["status", "--summary"], ["db", "upgrade"], ["retry", "--failed"],
                                  ["verify"], ["prune", "--dry-run"], ["archive", "EVENT"], ["reconcile"]])
def test_a_ledger_that_cannot_be_reached_is_one_line_naming_it_exit_2(
        argv: list[str], config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://postgres:pg-secret@127.0.0.1:{free_port()}/archiver"
    monkeypatch.setenv("ARCHIVER_CONFIG", str(config))
    monkeypatch.setenv("ARCHIVER_DATABASE_URL", url)
    monkeypatch.setenv("ARCHIVER_VIDEOSDK_API_KEY", "key")
    monkeypatch.setenv("VIDEOSDK_SECRET_KEY", "secret")
    event = tmp_path / "event.json"
    event.write_text('{"webhookType": "recording-stopped", "data": {"meetingId": "m", "sessionId": "s", '
                     '"filePath": "/encoded/videos/a.mp4", "fileUrl": "https://cdn.videosdk.live/a.mp4"}}')
    code, _, err = run(capsys, *[str(event) if a == "EVENT" else a for a in argv])
    line = _one_line(err)
    assert code == 2 and line.startswith(f"archiver {argv[0]}: ledger "), err
    assert url.replace(":pg-secret@", ":***@") in line and "ARCHIVER_DATABASE_URL" in line
    assert "pg-secret" not in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["replay", "EVENT"], ["retry", "1"]])
def test_a_broker_that_cannot_be_reached_is_one_line_naming_it_exit_2(
        argv: list[str], config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ARCHIVER_CONFIG", str(config))
    assert run(capsys, "db", "upgrade")[0] == 0
    url = f"redis://:broker-secret@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("ARCHIVER_BROKER_URL", url)
    event = tmp_path / "event.json"
    event.write_text('{"webhookType": "recording-stopped", "data": {"meetingId": "m", "sessionId": "s", '
                     '"filePath": "/encoded/videos/a.mp4", "fileUrl": "https://cdn.videosdk.live/a.mp4"}}')
    code, _, err = run(capsys, *[str(event) if a == "EVENT" else a for a in argv])
    line = _one_line(err)
    assert code == 2 and line.startswith(f"archiver {argv[0]}: broker "), err
    assert url.replace(":broker-secret@", ":***@") in line and "ARCHIVER_BROKER_URL" in line
    assert "broker-secret" not in err


def test_reconcile_without_api_key_stops_at_once(config: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ARCHIVER_CONFIG", str(config))
    assert run(capsys, "db", "upgrade")[0] == 0
    code, out, err = run(capsys, "reconcile", "--room", "room-a", "--room", "room-b")
    line = _one_line(err)
    assert code == 2 and out == ""
    assert line.startswith("archiver reconcile: missing_credentials:") and "api_key" in line
    assert "VIDEOSDK_SECRET_KEY" in line


def test_render_path_needs_no_dest_with_one_destination(config: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"webhookType": "recording-stopped", "data": {"meetingId": "room-1", "sessionId": "s", '
                     '"filePath": "/encoded/videos/a.mp4", "fileUrl": "https://cdn.videosdk.live/a.mp4"}}')
    code, out, err = run(capsys, "--config", str(config), "render-path", str(event))
    assert code == 0, err
    assert out.strip() == f"file://{tmp_path}/disk/room-1/a.mp4"
    two = tmp_path / "two.toml"
    two.write_text(config.read_text() + f'\n[[destinations]]\nname = "b"\nurl = "file://{tmp_path}/b/"\n')
    code, _, err = run(capsys, "--config", str(two), "render-path", str(event))
    assert code == 2 and "--dest NAME is needed: 2 destinations are configured (disk, b)" in err


def test_make_run_installs_the_product_without_the_test_extra(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml", "package.json", "package-lock.json"):
        shutil.copy(ROOT / name, tmp_path / name)

    def dry(target: str) -> str:  # make -n prints the recipe and runs nothing
        return subprocess.run(["make", "-n", "-C", str(tmp_path), target], capture_output=True, text=True,
                              check=True).stdout

    run_recipe, test_recipe = dry("run"), dry("test")
    assert "pip install --quiet -e ." in run_recipe and "[test]" not in run_recipe
    assert "archiver up" in run_recipe
    assert "-e '.[test]'" in test_recipe


def test_a_verb_another_module_adds_sees_the_config_and_its_errors_are_named(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    @click.command("probe-config")
    def probe() -> int:
        click.echo(os.environ["ARCHIVER_CONFIG"])
        return 0

    @click.command("probe-error")
    def broken() -> int:
        from archiver.settings.config import load_settings

        load_settings(str(config.parent / "missing.toml"))
        return 0

    cli.add_command(probe)
    cli.add_command(broken)
    try:
        code, out, _ = run(capsys, "--config", str(config), "probe-config")
        assert (code, out.strip()) == (0, str(config))
        code, _, err = run(capsys, "probe-error")
        assert code == 2 and err.startswith("archiver probe-error: ") and "missing.toml does not exist" in err
    finally:
        del cli.commands["probe-config"], cli.commands["probe-error"]
