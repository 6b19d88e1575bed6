"""Start and stop VideoSDK recordings, and create rooms that record themselves, pointed at our receiver.

Calls and bodies from shared/reference/videosdk.md section 2 ("Starting and stopping recordings"):

    POST /v2/recordings/start                  roomId, awsDirPath, webhookUrl, config, templateUrl, fileFormat
    POST /v2/recordings/end                    roomId
    POST /v2/recordings/participant/start|end  roomId, participantId, fileFormat, webhookUrl, bucketDirPath
    POST /v2/recordings/participant/track/...  the same plus kind
    POST /v2/rooms                             autoStartConfig.recording {templateUrl, config, awsDirPath},
                                               webhook {endPoint, events}

Everything is checked before VideoSDK is called (RecordingOptionsError names each bad value), and
the webhook URL must be one VideoSDK can reach (``webhook_target``): a recording whose webhooks go
nowhere is a recording the archiver never hears of. Errors from VideoSDK are ``VideoSDKError``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from archiver.domain.recording_options import (
    RecordingOptionsError,
    check_config,
    check_file_format,
    check_track_kind,
)
from archiver.videosdk.api import VideoSDKClient

__all__ = ["ROOMS", "ROOM_EVENTS", "Target", "WebhookUnreachable", "create_room", "room_body", "start_body",
           "start_recording", "stop_recording", "webhook_target"]

_PATHS = {"room": "/v2/recordings", "participant": "/v2/recordings/participant",
          "track": "/v2/recordings/participant/track"}
# what a room created by `archiver room create` subscribes its webhook to: every recording family the
# receiver records (states for the timeline, stopped/completed for the files); "*" would add session,
# participant and HLS chatter the receiver only acknowledges
ROOM_EVENTS = ("recording-*", "participant-recording-*", "participant-track-recording-*", "merge-recording-*",
               "transcription-*", "composite-recording-*", "composite-merge-*")
ROOMS = "/v2/rooms"
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".home.arpa")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


class WebhookUnreachable(ValueError):
    """The webhook URL would not reach this receiver (or there is none): say what to set."""


@dataclass(frozen=True)
class Target:
    """What to record: a room, one participant of it, or one track (``kind``) of a participant."""

    room_id: str
    participant_id: str | None = None
    kind: str | None = None

    def __post_init__(self) -> None:
        problems = [f"{name}: must be a non-empty string" for name, value in
                    (("roomId", self.room_id), ("participantId", self.participant_id), ("kind", self.kind))
                    if value is not None and (not isinstance(value, str) or not value.strip())]
        if self.kind is not None and self.participant_id is None:
            problems.append("kind: a track is a participant's: give participantId too")
        if problems:
            raise RecordingOptionsError(problems)
        if self.kind is not None:
            check_track_kind(self.kind)

    @property
    def level(self) -> str:
        """"room", "participant" or "track": the key of FILE_FORMATS and of the endpoint."""
        return "track" if self.kind else "participant" if self.participant_id else "room"

    @property
    def endpoint(self) -> str:
        """The path whose /start and /end start and stop this target's recording."""
        return _PATHS[self.level]

    def ids(self) -> dict[str, str]:
        found = {"roomId": self.room_id, "participantId": self.participant_id, "kind": self.kind}
        return {k: v for k, v in found.items() if v is not None}


def webhook_target(public_url: str | None, receiver_path: str, explicit: str | None = None) -> str:
    """The webhookUrl to give VideoSDK. ``explicit`` (the operator's --webhook-url) is taken as it is
    once it is an absolute http(s) URL: the operator chose it. Otherwise ``public_url`` (with
    ``receiver_path`` appended when it has no path) must be an https URL on a public host: no
    public_url, plain http, a loopback/private/link-local address or a local-only name raise
    WebhookUnreachable saying what to set. Names are not resolved here (no DNS at this step)."""
    if explicit is not None:
        parts = urlsplit(explicit)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookUnreachable(f"webhook URL {explicit!r} is not an absolute http(s) URL")
        return explicit
    fix = ("set [receiver] public_url to the https URL at which VideoSDK reaches this receiver (a tunnel or "
           "reverse proxy to it), or pass --webhook-url to send this recording's webhooks elsewhere knowingly")
    if not public_url:
        raise WebhookUnreachable(f"no webhook URL: VideoSDK would not tell the archiver about this recording; {fix}")
    parts = urlsplit(public_url)
    url = public_url.rstrip("/") + receiver_path if parts.path in ("", "/") else public_url
    host = (parts.hostname or "").rstrip(".").lower()
    why = None
    if parts.scheme != "https":
        why = "is not https (VideoSDK must reach the receiver over HTTPS)"
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host == "localhost" or host.endswith(_LOCAL_NAMES[1:]) or "." not in host:
                why = f"names a local-only host ({host}), which VideoSDK cannot reach"
        else:
            if not address.is_global:
                why = f"is a loopback, private or link-local address ({host}), which VideoSDK cannot reach"
    if why:
        raise WebhookUnreachable(f"webhook would not reach this receiver: [receiver] public_url {public_url!r} "
                                 f"{why}; {fix}")
    return url


def _dir_path(name: str, value: str, target: Target) -> str:
    """VideoSDK does not expand placeholders (reference section 5): the ones known at start are
    expanded here; one that is not (sessionId) would become a folder literally named ${sessionId}."""
    known = {"meetingId": target.room_id, "roomId": target.room_id, "participantId": target.participant_id,
             "kind": target.kind}
    unknown = [m for m in _PLACEHOLDER.findall(value) if known.get(m) is None]
    if unknown:
        usable = ", ".join(f"${{{k}}}" for k, v in known.items() if v is not None)
        raise RecordingOptionsError([f"{name}: ${{{unknown[0]}}} is not known when a recording starts and VideoSDK "
                                     f"does not expand placeholders (usable here: {usable})"])
    return _PLACEHOLDER.sub(lambda m: str(known[m.group(1)]), value)


def _gather(problems: list[str], body: dict[str, Any], field: str, check: Any, *args: Any) -> None:
    """body[field] = check(*args), or its problems added to ``problems``: every bad value is reported at once."""
    try:
        body[field] = check(*args)
    except RecordingOptionsError as exc:
        problems += exc.problems


def start_body(target: Target, *, webhook_url: str, dir_path: str | None = None,
               config: Mapping[str, Any] | None = None, file_format: str | None = None,
               template_url: str | None = None) -> dict[str, Any]:
    """The JSON body of the start call for ``target``. ``dir_path`` is sent as awsDirPath (room) or
    bucketDirPath (participant, track). ``config`` and ``template_url`` apply to room recordings only.
    Raises RecordingOptionsError listing every problem."""
    problems: list[str] = []
    body: dict[str, Any] = {**target.ids(), "webhookUrl": webhook_url}
    if target.level != "room" and (config is not None or template_url is not None):
        problems.append(f"config and templateUrl apply to room recordings only, not to a {target.level} recording")
    dir_field = "awsDirPath" if target.level == "room" else "bucketDirPath"
    if config is not None:
        _gather(problems, body, "config", check_config, config)
    if file_format is not None:
        _gather(problems, body, "fileFormat", check_file_format, target.level, file_format)
    if dir_path is not None:
        _gather(problems, body, dir_field, _dir_path, dir_field, dir_path, target)
    if template_url is not None and target.level == "room":
        body["templateUrl"] = template_url
    if problems:
        raise RecordingOptionsError(problems)
    return body


def start_recording(client: VideoSDKClient, target: Target, **options: Any) -> dict[str, Any]:
    """POST the start call (body from ``start_body(target, **options)``); VideoSDK's answer as it is."""
    return client.post(f"{target.endpoint}/start", start_body(target, **options))


def stop_recording(client: VideoSDKClient, target: Target) -> dict[str, Any]:
    """POST the end call for ``target``; VideoSDK's answer as it is."""
    return client.post(f"{target.endpoint}/end", target.ids())


def room_body(*, webhook_url: str, events: Sequence[str] = ROOM_EVENTS, auto_record: bool = False,
              config: Mapping[str, Any] | None = None, aws_dir_path: str | None = None,
              template_url: str | None = None, custom_room_id: str | None = None) -> dict[str, Any]:
    """The body of POST /v2/rooms: the room's webhook at ``webhook_url`` for ``events`` and, with
    ``auto_record``, ``autoStartConfig.recording`` so every session is recorded from its start.
    Raises RecordingOptionsError (recording options without auto_record are refused: they would be
    silently unused)."""
    problems = [f"events: {e!r} is not an event name or pattern" for e in events
                if not isinstance(e, str) or not e.strip()]
    if not events:
        problems.append("events: give at least one event name or pattern (e.g. recording-*)")
    recording: dict[str, Any] = {}
    if config is not None:
        try:
            recording["config"] = check_config(config)
        except RecordingOptionsError as exc:
            problems += exc.problems
    if aws_dir_path is not None:
        if _PLACEHOLDER.search(aws_dir_path):
            # one room, many sessions: nothing but the room is known, and VideoSDK expands nothing
            problems.append("awsDirPath: placeholders are not expanded by VideoSDK; a room's recordings share "
                            "one fixed prefix (the archiver's own destination keys can use {sessionId})")
        recording["awsDirPath"] = aws_dir_path
    if template_url is not None:
        recording["templateUrl"] = template_url
    if recording and not auto_record:
        problems.append("config, awsDirPath and templateUrl of a room are its autoStartConfig: add --auto-record")
    if problems:
        raise RecordingOptionsError(problems)
    body: dict[str, Any] = {"webhook": {"endPoint": webhook_url, "events": list(events)}}
    if custom_room_id is not None:
        body["customRoomId"] = custom_room_id
    if auto_record:
        body["autoStartConfig"] = {"recording": recording}
    return body


def create_room(client: VideoSDKClient, **options: Any) -> dict[str, Any]:
    """POST /v2/rooms with ``room_body(**options)``; the room VideoSDK made (``roomId``, ...)."""
    return client.post(ROOMS, room_body(**options))
