"""What an HLS playlist names, and where each piece goes so the archived playlist plays as it is.

An archived playlist is kept byte for byte (its sha256 is the source's), so every URI in it must still
lead to its piece when the playlist is read from the destination: only relative URIs that resolve
inside the ROOT playlist's folder qualify, and the piece lands at the same relative path under the
archived playlist's folder (``seg/0001.ts`` next to ``<key folder>/index.m3u8`` lands at
``<key folder>/seg/0001.ts``). Anything else (an absolute URL, another host, an absolute path, a
``../`` out of the folder, an encoded slash) cannot keep that promise and is refused with
``LayoutError`` before anything is fetched: rewriting the playlist would archive bytes the source
never had, and fetching a URI the playlist names on another host would widen what a webhook can make
the worker download.

Pure: parsing with the ``m3u8`` package and URL arithmetic; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import m3u8

from archiver.copy.source.status import PermanentSourceError

__all__ = ["MAX_PIECES", "MAX_PLAYLIST_BYTES", "LayoutError", "Piece", "folder_of", "references"]

MAX_PLAYLIST_BYTES = 16 << 20  # one playlist held in memory to parse; 10 h of 1 s segments is ~2 MB
MAX_PIECES = 200_000  # per recording: far beyond any real one, short of a playlist built to exhaust us
MAX_DEPTH = 3  # a master names media playlists; HLS nests no deeper

# What each kind of reference is, in messages and the manifest.
SEGMENT, PART, INIT, KEY, PLAYLIST, SESSION_DATA = "segment", "part", "init section", "key", "playlist", "session data"


class LayoutError(PermanentSourceError):
    """A playlist that cannot be archived so that it plays from the destination: final, since the same
    playlist fails the same way on every attempt (ledger code ``source_playlist``)."""

    default_code = "playlist"


@dataclass(frozen=True)
class Piece:
    """One file a playlist names.

    ``path``: relative to the root playlist's folder, percent-decoded: the key suffix under the
    archived playlist's folder. ``url``: the reference resolved against its playlist's location
    (query kept: a signed CDN may need it). ``role``: one of SEGMENT, PART, INIT, KEY, PLAYLIST,
    SESSION_DATA."""

    path: str
    url: str
    role: str


def folder_of(location: str) -> str:
    """The URL path of the folder a playlist is in, ending with "/": what its pieces must stay under."""
    path = urlsplit(location).path
    return path[: path.rfind("/") + 1] or "/"


def _redact(uri: str) -> str:
    return uri.split("?", 1)[0].split("#", 1)[0]  # a query may carry a signed URL's token


def _uris(playlist: m3u8.M3U8) -> Iterator[tuple[str, str]]:
    """(role, uri) of every file a playlist names, in playlist order, duplicates included.

    Left out on purpose: EXT-X-PRELOAD-HINT (a live stream's promise of a part that may never exist),
    EXT-X-RENDITION-REPORT (points at the other renditions, which the master already names) and
    EXT-X-CONTENT-STEERING (a server, not a file)."""
    for key in [*playlist.keys, *playlist.session_keys]:
        if key is not None and key.uri and (key.method or "").upper() != "NONE":
            yield KEY, key.uri
    for section in playlist.segment_map or []:
        if section.uri:
            yield INIT, section.uri
    for segment in playlist.segments:
        for part in segment.parts:
            if part.uri:
                yield PART, part.uri
        if segment.uri:  # a trailing entry of parts only has none
            yield SEGMENT, segment.uri
    for variant in [*playlist.playlists, *playlist.iframe_playlists, *playlist.image_playlists]:
        if variant.uri:
            yield PLAYLIST, variant.uri
    for media in playlist.media:
        if media.uri:
            yield PLAYLIST, media.uri
    for data in playlist.session_data:
        if data.uri:
            yield SESSION_DATA, data.uri


def _place(role: str, uri: str, base: str, root_folder: str) -> Piece | None:
    """Where ``uri`` (named in the playlist at ``base``) goes, or None for inline data; raises LayoutError."""
    uri = uri.strip()
    parts = urlsplit(uri)
    shown = f"{role} {_redact(uri)!r}"
    if parts.scheme.lower() == "data":
        return None  # inline: nothing to fetch, the playlist carries it
    if parts.scheme or parts.netloc or uri.startswith("/"):
        raise LayoutError(f"{shown} is an absolute URI; only URIs relative to the playlist can keep pointing "
                          "at their copies when the archived playlist is played from the destination")
    if "" in parts.path.split("/"):
        # urljoin would fold "a//b" into "a/b", a player asks for "a//b": the copy would be elsewhere
        raise LayoutError(f"{shown} has an empty path segment (//)")
    resolved = urljoin(base, uri)
    path = urlsplit(resolved).path
    if not path.startswith(root_folder):
        raise LayoutError(f"{shown} resolves outside the playlist's folder ({_redact(resolved)}); its copy "
                          "could not sit where the archived playlist looks for it")
    relative = path[len(root_folder):]
    if "%2f" in relative.lower() or "%5c" in relative.lower():
        raise LayoutError(f"{shown} encodes a slash or backslash in a name; no key keeps that layout")
    decoded = unquote(relative)
    segments = decoded.split("/")
    if any(s in ("", ".", "..") for s in segments) or "\\" in decoded or any(ord(c) < 32 or ord(c) == 127
                                                                             for c in decoded):
        raise LayoutError(f"{shown} has an empty, '.' or '..' segment, a backslash or a control character")
    return Piece(decoded, resolved, role)


def references(text: bytes, base: str, root_folder: str) -> list[Piece]:
    """Every file the playlist ``text`` (fetched from ``base``) names, each once, in playlist order;
    every one checked against ``root_folder`` (see ``folder_of``) before the caller fetches any.

    Raises LayoutError for a URI that cannot keep its layout and for a body that is not a playlist."""
    if len(text) > MAX_PLAYLIST_BYTES:
        raise LayoutError(f"the playlist is {len(text)} bytes, more than the {MAX_PLAYLIST_BYTES} this archiver "
                          "parses")
    try:
        body = text.decode("utf-8-sig")  # RFC 8216: UTF-8; a BOM is tolerated by players
    except UnicodeDecodeError as exc:
        raise LayoutError(f"the playlist is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not body.lstrip().startswith("#EXTM3U"):
        raise LayoutError("the file is not an HLS playlist (its first line is not #EXTM3U)")
    try:
        parsed = m3u8.loads(body)
    except Exception as exc:  # the parser raises assorted types on malformed tags
        raise LayoutError(f"the playlist cannot be parsed: {type(exc).__name__}: {exc}") from None
    pieces: dict[str, Piece] = {}
    for role, uri in _uris(parsed):
        piece = _place(role, uri, base, root_folder)
        # Byte ranges of one file, or one file under two queries: one object either way.
        if piece is not None and piece.path not in pieces:
            pieces[piece.path] = piece
        if len(pieces) > MAX_PIECES:
            raise LayoutError(f"the playlist names more than {MAX_PIECES} files")
    return list(pieces.values())
