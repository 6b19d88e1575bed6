"""What a start-recording request may ask for: the recording ``config``, file formats and track kinds.

From shared/reference/videosdk.md section 2 ("Starting and stopping recordings") and section 3
("Recording options"). Checked before VideoSDK is called, so a typo is refused here with the field
named and the allowed values listed, instead of a recording that starts with VideoSDK's defaults or a
400 that does not say which value was wrong. Pure: standard library only.

    check_config({"layout": {"type": "GRID", "gridSize": 4}, "theme": "DARK"})  -> the same dict
    check_config({"layout": {"type": "grid"}})  -> RecordingOptionsError(["config.layout.type: 'grid'
        is not one of GRID, SPOTLIGHT, SIDEBAR"])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FILE_FORMATS", "LAYOUT", "OPTIONS", "TRACK_KINDS", "RecordingOptionsError", "check_config",
           "check_file_format", "check_track_kind"]

# layout.<key> and top-level <key> -> the values VideoSDK documents (case as documented)
LAYOUT: dict[str, tuple[str, ...]] = {"type": ("GRID", "SPOTLIGHT", "SIDEBAR"), "priority": ("SPEAKER", "PIN")}
GRID_SIZES = range(1, 5)  # "layout.gridSize <= 4"; a grid of 0 tiles is no layout
OPTIONS: dict[str, tuple[str, ...]] = {
    "theme": ("DARK", "LIGHT", "DEFAULT"),
    "mode": ("video-and-audio", "audio"),
    "quality": ("low", "med", "high"),
    "orientation": ("landscape", "portrait"),
}
# recording target ("room", "participant", "track") -> the fileFormat values its start call accepts
FILE_FORMATS: dict[str, tuple[str, ...]] = {
    "room": ("mp4", "webm"),
    "participant": ("mp4", "webm", "m3u8"),
    "track": ("mp4", "webm", "m3u8", "mp3"),
}
TRACK_KINDS = ("audio", "video", "screen_audio", "screen_video")


class RecordingOptionsError(ValueError):
    """``problems``: one line per bad value, each naming the field and what it may be."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _one_of(path: str, value: Any, allowed: tuple[str, ...]) -> str | None:
    if isinstance(value, str) and value in allowed:
        return None
    return f"{path}: {value!r} is not one of {', '.join(allowed)}"


def _unknown(path: str, table: Mapping[str, Any], known: tuple[str, ...]) -> list[str]:
    # A misspelt key ("qualty") would otherwise be passed on and silently ignored by VideoSDK.
    return [f"{path}.{key}: unknown option (known: {', '.join(known)})" if path else
            f"{key}: unknown option (known: {', '.join(known)})" for key in table if key not in known]


def check_config(config: Any, *, path: str = "config") -> dict[str, Any]:
    """The recording ``config`` of a room recording (start-recording, or a room's autoStartConfig),
    returned unchanged when every value is documented; RecordingOptionsError listing every bad one
    otherwise. Every key is optional: VideoSDK's defaults apply to what is left out."""
    if not isinstance(config, Mapping):
        raise RecordingOptionsError([f"{path}: must be a JSON object, got {type(config).__name__}"])
    problems = _unknown(path, config, ("layout", *OPTIONS))
    layout = config.get("layout")
    if layout is not None:
        if not isinstance(layout, Mapping):
            problems.append(f"{path}.layout: must be an object with type, priority, gridSize")
        else:
            problems += _unknown(f"{path}.layout", layout, (*LAYOUT, "gridSize"))
            problems += [p for key, allowed in LAYOUT.items() if key in layout
                         and (p := _one_of(f"{path}.layout.{key}", layout[key], allowed))]
            if "gridSize" in layout:
                size = layout["gridSize"]
                if isinstance(size, bool) or not isinstance(size, int) or size not in GRID_SIZES:
                    problems.append(f"{path}.layout.gridSize: {size!r} is not an integer from "
                                    f"{GRID_SIZES.start} to {GRID_SIZES.stop - 1}")
    problems += [p for key, allowed in OPTIONS.items() if key in config
                 and (p := _one_of(f"{path}.{key}", config[key], allowed))]
    if problems:
        raise RecordingOptionsError(problems)
    return dict(config)


def check_file_format(target: str, value: Any) -> str:
    """``value`` when it is a fileFormat the ``target``'s start call accepts (``FILE_FORMATS``)."""
    if problem := _one_of(f"fileFormat ({target} recording)", value, FILE_FORMATS[target]):
        raise RecordingOptionsError([problem])
    return str(value)


def check_track_kind(value: Any) -> str:
    """``value`` when it is a track kind VideoSDK records (``TRACK_KINDS``)."""
    if problem := _one_of("kind", value, TRACK_KINDS):
        raise RecordingOptionsError([problem])
    return str(value)
