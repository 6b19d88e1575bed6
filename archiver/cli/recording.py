"""Verbs that drive VideoSDK's recordings: `archiver recording start|stop` and `archiver room create`.

Click groups added to the `archiver` command by ``register(group)``. Every value is checked before
VideoSDK is called (exit 2 naming each bad one and what it may be), and webhooks go to this
deployment's receiver ([receiver] public_url) unless --webhook-url says otherwise. Exit codes: 0 done,
1 VideoSDK refused or failed, 2 usage, configuration or a webhook that would not reach us.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from archiver.cli.common import FOUND_PROBLEMS, OK, USAGE
from archiver.domain.recording_options import FILE_FORMATS, TRACK_KINDS, RecordingOptionsError
from archiver.settings.config import Settings, load_settings
from archiver.videosdk.api import VideoSDKClient, VideoSDKError
from archiver.videosdk.recording_controls import (
    ROOM_EVENTS,
    ROOMS,
    Target,
    WebhookUnreachable,
    room_body,
    start_body,
    stop_recording,
    webhook_target,
)

# a flag -> the config field it sets (and how its text becomes the value)
_CONFIG_FLAGS: dict[str, tuple[tuple[str, ...], Any]] = {
    "layout": (("layout", "type"), str), "priority": (("layout", "priority"), str),
    "grid_size": (("layout", "gridSize"), lambda t: int(t) if t.strip().lstrip("-").isdigit() else t),
    "theme": (("theme",), str), "mode": (("mode",), str), "quality": (("quality",), str),
    "orientation": (("orientation",), str),
}


def _config_options(command: Any) -> Any:
    """--config FILE or the one-value flags (--layout, --grid-size, ...) of a recording's config."""
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="the recording config as a JSON file ({\"layout\": {\"type\": \"GRID\"}, ...}); "
                          "not archiver.toml, which is `archiver --config` before the verb"),
        click.option("--layout", help="layout.type: GRID, SPOTLIGHT or SIDEBAR"),
        click.option("--priority", help="layout.priority: SPEAKER or PIN"),
        click.option("--grid-size", help="layout.gridSize: 1 to 4"),
        click.option("--theme", help="DARK, LIGHT or DEFAULT"),
        click.option("--mode", help="video-and-audio or audio"),
        click.option("--quality", help="low, med or high"),
        click.option("--orientation", help="landscape or portrait"),
        click.option("--template-url", help="templateUrl: a custom layout page for the room recording"),
        click.option("--webhook-url", help="send webhooks here instead of [receiver] public_url "
                                           "(the reachability check is skipped: you chose it)"),
        click.option("--json", "as_json", is_flag=True, help="print the request and VideoSDK's answer as JSON"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _config_from(config_file: Path | None, flags: dict[str, str | None]) -> dict[str, Any] | None:
    given = {name: value for name, value in flags.items() if value is not None}
    if config_file is not None and given:
        raise click.UsageError(f"give --config FILE or {', '.join('--' + n.replace('_', '-') for n in given)}, "
                               "not both")
    if config_file is not None:
        try:
            return json.loads(config_file.read_text())
        except OSError as exc:
            raise click.UsageError(f"--config {config_file}: cannot be read ({exc.strerror})") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"--config {config_file}: not a JSON file ({exc})") from None
    if not given:
        return None
    config: dict[str, Any] = {}
    for name, text in given.items():
        path, parse = _CONFIG_FLAGS[name]
        table = config.setdefault(path[0], {}) if len(path) == 2 else config
        table[path[-1]] = parse(text)
    return config


def _with_flags(problems: list[str]) -> str:
    """Name the flag next to the field, so the fix is obvious from either."""
    fields = {".".join(("config", *path)): "--" + name.replace("_", "-") for name, (path, _) in _CONFIG_FLAGS.items()}
    fields.update({"fileFormat": "--file-format", "awsDirPath": "--aws-dir-path", "bucketDirPath": "--bucket-dir-path",
                   "kind": "--kind"})
    named = []
    for problem in problems:
        field = problem.split(":", 1)[0].split(" ", 1)[0]
        named.append(f"{fields[field]} ({problem})" if field in fields else problem)
    return "\n  ".join(named)


def _settings(ctx: click.Context) -> Settings:
    config = ctx.find_root().obj.get("config") if isinstance(ctx.find_root().obj, dict) else None
    return load_settings(config)


def _fail(ctx: click.Context, code: int, message: str) -> None:
    click.echo(f"{ctx.command_path}: {message}", err=True)
    ctx.exit(code)


def _call(ctx: click.Context, settings: Settings, what: Any) -> dict[str, Any]:
    try:
        with VideoSDKClient.from_settings(settings) as client:
            return what(client)
    except VideoSDKError as exc:
        # missing credentials are configuration; anything VideoSDK answered or failed to answer is a failure
        _fail(ctx, USAGE if exc.code == "missing_credentials" else FOUND_PROBLEMS, str(exc))
        raise AssertionError("unreachable") from None


def _show(ctx: click.Context, as_json: bool, summary: str, request: dict[str, Any], answer: dict[str, Any]) -> None:
    if as_json:
        click.echo(json.dumps({"request": request, "response": answer}, indent=2, ensure_ascii=False))
    else:
        click.echo(summary)
        click.echo(f"  VideoSDK answered: {json.dumps(answer, ensure_ascii=False)}")
    ctx.exit(OK)


def _target(room: str, participant: str | None, kind: str | None) -> Target:
    if kind is not None and participant is None:
        raise click.UsageError("--kind records one track of a participant: give --participant too")
    return Target(room, participant, kind)


@click.group("recording", help="Start and stop VideoSDK recordings whose webhooks reach this receiver.")
def recording() -> None:
    pass


@recording.command("start", help="Start recording a room, a participant (--participant) or one of its "
                                 "tracks (--kind). Exit 2 names every bad value with the allowed ones.")
@click.option("--room", required=True, help="the room (meeting) id")
@click.option("--participant", help="record this participant only")
@click.option("--kind", help=f"record one track of the participant: {', '.join(TRACK_KINDS)}")
@click.option("--file-format", help="room: " + "/".join(FILE_FORMATS["room"]) + "; participant: "
              + "/".join(FILE_FORMATS["participant"]) + "; track: " + "/".join(FILE_FORMATS["track"]))
@click.option("--aws-dir-path", "--bucket-dir-path", "dir_path",
              help="prefix in the bucket configured on the VideoSDK account (awsDirPath for a room, "
                   "bucketDirPath otherwise); ${meetingId}, ${participantId} and ${kind} are filled in here")
@_config_options
@click.pass_context
def start(ctx: click.Context, room: str, participant: str | None, kind: str | None, file_format: str | None,
          dir_path: str | None, config_file: Path | None, template_url: str | None, webhook_url: str | None,
          as_json: bool, **flags: str | None) -> None:
    settings = _settings(ctx)
    try:
        target = _target(room, participant, kind)
        config = _config_from(config_file, flags)
        # every bad value first, then where the webhooks go: one run names all there is to fix
        body = start_body(target, webhook_url="", dir_path=dir_path, config=config, file_format=file_format,
                          template_url=template_url)
        body["webhookUrl"] = url = webhook_target(settings.receiver.public_url, settings.receiver.path, webhook_url)
    except RecordingOptionsError as exc:
        return _fail(ctx, USAGE, "refused before calling VideoSDK:\n  " + _with_flags(exc.problems))
    except WebhookUnreachable as exc:
        return _fail(ctx, USAGE, str(exc))
    answer = _call(ctx, settings, lambda client: client.post(f"{target.endpoint}/start", body))
    _show(ctx, as_json, f"{target.level} recording started: {_describe(target)}\n  webhooks go to {url}", body, answer)


@recording.command("stop", help="Stop a room, participant or track recording; VideoSDK then sends the "
                                "stopped webhook with the files, which the archiver copies.")
@click.option("--room", required=True, help="the room (meeting) id")
@click.option("--participant", help="the participant whose recording to stop")
@click.option("--kind", help=f"the track to stop: {', '.join(TRACK_KINDS)}")
@click.option("--json", "as_json", is_flag=True, help="print the request and VideoSDK's answer as JSON")
@click.pass_context
def stop(ctx: click.Context, room: str, participant: str | None, kind: str | None, as_json: bool) -> None:
    settings = _settings(ctx)
    try:
        target = _target(room, participant, kind)
    except RecordingOptionsError as exc:
        return _fail(ctx, USAGE, "refused before calling VideoSDK:\n  " + _with_flags(exc.problems))
    answer = _call(ctx, settings, lambda client: stop_recording(client, target))
    _show(ctx, as_json, f"{target.level} recording stopping: {_describe(target)}", target.ids(), answer)


@click.group("room", help="Create VideoSDK rooms whose webhooks reach this receiver.")
def room() -> None:
    pass


@room.command("create", help="Create a room with its webhook set to this receiver; with --auto-record every "
                             "session of it is recorded (autoStartConfig.recording) and archived.")
@click.option("--auto-record", is_flag=True, help="record every session from its start")
@click.option("--aws-dir-path", help="awsDirPath of the automatic recordings (a fixed prefix)")
@click.option("--event", "events", multiple=True,
              help=f"webhook events or patterns (repeatable; default {', '.join(ROOM_EVENTS)})")
@click.option("--custom-room-id", help="customRoomId: your own name for the room")
@_config_options
@click.pass_context
def create(ctx: click.Context, auto_record: bool, aws_dir_path: str | None, events: tuple[str, ...],
           custom_room_id: str | None, config_file: Path | None, template_url: str | None, webhook_url: str | None,
           as_json: bool, **flags: str | None) -> None:
    settings = _settings(ctx)
    try:
        config = _config_from(config_file, flags)
        body = room_body(webhook_url="", events=events or ROOM_EVENTS, auto_record=auto_record, config=config,
                         aws_dir_path=aws_dir_path, template_url=template_url, custom_room_id=custom_room_id)
        body["webhook"]["endPoint"] = url = webhook_target(settings.receiver.public_url, settings.receiver.path,
                                                           webhook_url)
    except RecordingOptionsError as exc:
        return _fail(ctx, USAGE, "refused before calling VideoSDK:\n  " + _with_flags(exc.problems))
    except WebhookUnreachable as exc:
        return _fail(ctx, USAGE, str(exc))
    answer = _call(ctx, settings, lambda client: client.post(ROOMS, body))
    made = answer.get("roomId", "(VideoSDK named no roomId)")
    _show(ctx, as_json, f"room {made} created{' (records every session)' if auto_record else ''}\n"
                        f"  webhooks go to {url}", body, answer)


def _describe(target: Target) -> str:
    return ", ".join(f"{k} {v}" for k, v in target.ids().items())


def register(group: click.Group) -> None:
    """Add `recording` and `room` to the `archiver` click group."""
    group.add_command(recording)
    group.add_command(room)
