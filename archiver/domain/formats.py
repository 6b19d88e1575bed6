"""What a recording file is, by its declared format: the name's extension and the recording kind.

Decides three things for every file, from what VideoSDK declared rather than from a global rule:
the Content-Type the archived object gets, whether a body of a given served type may be the file
(an HTML page never is; JSON only when the file is declared JSON or its format is unknown), and
whether the file is an HLS playlist to be archived with everything it names. Pure: no I/O.
Formats from shared/reference/videosdk.md section 4.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FORMATS", "PLAYLIST_TYPES", "Family", "Format", "declared_format", "looks_like_playlist",
           "object_content_type", "refusal"]


class Family(StrEnum):
    MEDIA = "media"  # audio/video: never JSON, never HTML
    PLAYLIST = "playlist"  # HLS: archived with its segments, keys, init sections and variants
    TEXT = "text"  # transcripts other than JSON
    JSON = "json"  # JSON transcripts: application/json is the file, not an error document
    UNKNOWN = "unknown"  # no or an unknown extension (e.g. an encrypted recording's key and meta files)


@dataclass(frozen=True)
class Format:
    extension: str  # lower case, without the dot; "" when the name has none
    family: Family
    content_type: str  # what the archived object is stored with


_TABLE: dict[str, tuple[Family, str]] = {
    "mp4": (Family.MEDIA, "video/mp4"),
    "webm": (Family.MEDIA, "video/webm"),
    "mp3": (Family.MEDIA, "audio/mpeg"),
    "m4a": (Family.MEDIA, "audio/mp4"),
    "aac": (Family.MEDIA, "audio/aac"),
    "ts": (Family.MEDIA, "video/mp2t"),
    "m4s": (Family.MEDIA, "video/iso.segment"),
    "m3u8": (Family.PLAYLIST, "application/vnd.apple.mpegurl"),
    "m3u": (Family.PLAYLIST, "application/vnd.apple.mpegurl"),
    "json": (Family.JSON, "application/json"),
    "srt": (Family.TEXT, "application/x-subrip"),
    "vtt": (Family.TEXT, "text/vtt"),
    "txt": (Family.TEXT, "text/plain; charset=utf-8"),
    "tsv": (Family.TEXT, "text/tab-separated-values"),
}
FORMATS: dict[str, Format] = {ext: Format(ext, family, ctype) for ext, (family, ctype) in _TABLE.items()}
OCTET_STREAM = "application/octet-stream"
# What servers call an HLS playlist (RFC 8216 section 4 and the older names players still accept).
PLAYLIST_TYPES = frozenset({"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl",
                            "audio/x-mpegurl"})
_GENERIC = frozenset({"", OCTET_STREAM, "binary/octet-stream"})
_HTML = frozenset({"text/html", "application/xhtml+xml"})


def declared_format(file_path: str) -> Format:
    """The format a file's name (a path or URL path; a query is ignored) declares by its extension.
    VideoSDK's transcript links name their format (.json, .srt, .txt, .tsv, .vtt); a name without a
    known extension is UNKNOWN, which accepts JSON, so a transcript so named is not refused either."""
    name = posixpath.basename(file_path.split("?", 1)[0])
    head, dot, tail = name.rpartition(".")
    extension = tail.lower() if dot and head else ""
    known = FORMATS.get(extension)
    if known is not None:
        return known
    return Format(extension, Family.UNKNOWN, OCTET_STREAM)


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def refusal(fmt: Format, served: str | None) -> str | None:
    """Why a 200 with Content-Type ``served`` cannot be a file of format ``fmt``, or None.

    A broken or expired link answers 200 with an error page or an error document; archiving that in
    place of the recording would be worse than failing. HTML is no format of ours. JSON is the file
    only when the file is declared JSON, or its format is unknown (an encrypted recording's key and
    meta files: VideoSDK does not document their names or types)."""
    media = _media_type(served)
    if media in _HTML:
        return f"Content-Type {media} is an error page, not a {fmt.extension or 'recording'} file"
    is_json = media == "application/json" or media.endswith("+json")
    if is_json and fmt.family not in (Family.JSON, Family.UNKNOWN):
        return f"Content-Type {media} is not a {fmt.extension} file (an error document, probably)"
    return None


def object_content_type(fmt: Format, served: str | None) -> str:
    """The Content-Type the archived object is stored with: the declared format's, so players and
    browsers treat the copy right whatever the CDN said; for an unknown format the served one, unless
    generic or HTML."""
    if fmt.family is not Family.UNKNOWN:
        return fmt.content_type
    if _media_type(served) in _GENERIC or _media_type(served) in _HTML:
        return OCTET_STREAM
    return served or OCTET_STREAM


def looks_like_playlist(fmt: Format, served: str | None, head: bytes) -> bool:
    """A playlist by name, by served type, or (for a name that declares no known format) by content:
    RFC 8216 requires the first line to be #EXTM3U."""
    if fmt.family is Family.PLAYLIST:
        return True
    if fmt.family is not Family.UNKNOWN:
        return False  # an .mp4 or a transcript is what its name says; a sniff would only add surprises
    return _media_type(served) in PLAYLIST_TYPES or head.removeprefix(b"\xef\xbb\xbf").startswith(b"#EXTM3U")
