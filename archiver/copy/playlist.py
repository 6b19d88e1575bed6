"""Archive an HLS recording: the playlist plus every segment, part, init section, key and variant
playlist it names (``archiver.copy.hls_playlist``), each fetched from the same origin under the same source
policy, each piece at its relative path under the archived playlist's folder.

Order, so that nothing a player can see is ever incomplete and a retry does only what is missing:
the playlist is fetched and every URI in it checked before any piece is fetched; each piece is
committed (create-only, verified) and then recorded in ``copy_pieces``; a variant playlist is written
after its own pieces; the job's own playlist is written LAST, through the same intent -> commit ->
adopt-or-conflict step as any file. A retry skips pieces recorded and still present (``stat``), and
adopts a piece a dead attempt committed but did not record (same size and sha256).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from hashlib import sha256
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from archiver.copy.errors import LeaseLost
from archiver.copy.hls_playlist import (
    KEY,
    MAX_DEPTH,
    MAX_PLAYLIST_BYTES,
    PLAYLIST,
    LayoutError,
    Piece,
    folder_of,
    references,
)
from archiver.copy.object import BytesDownload, Copied, CopyTask, SizeProof, existing, put
from archiver.copy.source.opener import SourceError
from archiver.copy.sources import Download, Origin
from archiver.domain.formats import FORMATS, declared_format, object_content_type
from archiver.ledger.pieces import PieceRecord
from archiver.retry import Backoff
from providers import ObjectInfo, StorageError

PIECE_TRIES = 4  # per piece within one attempt; then the job retries with backoff, resuming
PIECE_BACKOFF_CAP = 5.0  # seconds
PLAYLIST_FORMAT = FORMATS["m3u8"]
T = TypeVar("T")


def copy_playlist(task: CopyTask, origin: Origin, opened: tuple[Download, bytes] | None = None) -> Copied:
    """Copy the job's playlist (``opened``: already open, with the first bytes read) and all it names."""
    task.many = True
    walk = _Walk(task, origin)
    # VideoSDK's reported size is not held against the playlist: whether it counts the segments too is
    # not documented. The playlist's length is proven by its own answer, like any piece's.
    body, proof, served = _read_rest(*opened) if opened is not None else walk.retrying(
        "playlist", lambda: _fetch(origin, origin.root))
    if proof[0] is False:
        walk.unproven.append(f"the playlist: {proof[1]}")
    walk.visit(body, origin.root, depth=0)
    content_type = object_content_type(PLAYLIST_FORMAT, served)
    runtime, job = task.runtime, task.job
    info, uploaded = put(task, task.key, BytesDownload(body, served, proof), content_type=content_type,
                         intent=lambda size, sha: runtime.ledger.record_intent(job.job_id, runtime.worker_id,
                                                                                 size, sha))
    pieces = [{"path": p.path, "object_key": p.object_key, "size": p.bytes, "sha256": p.sha256}
              for p in walk.listed.values()]
    manifest = {"format": "hls", "pieces": pieces, "pieces_size": sum(p.bytes for p in walk.listed.values())}
    if walk.unproven:
        return Copied(info, uploaded, (False, "; ".join(walk.unproven)), manifest)
    return Copied(info, uploaded, (True, f"the playlist and its {len(pieces)} pieces, each proven"), manifest)


def _read_rest(download: Download, head: bytes) -> Fetched:
    """The rest of an open playlist download, bounded (a playlist is parsed in memory)."""
    data = bytearray(head)
    buffer = bytearray(1 << 16)
    while n := download.readinto(buffer):
        data += buffer[:n]
        if len(data) > MAX_PLAYLIST_BYTES:
            raise LayoutError(f"the playlist is more than {MAX_PLAYLIST_BYTES} bytes; this archiver parses playlists "
                              "in memory up to that size")
    return bytes(data), (download.size_proven, download.size_note), download.content_type


Fetched = tuple[bytes, SizeProof, str | None]  # a playlist's bytes, how its length was proven, its served type


def _fetch(origin: Origin, location: str) -> Fetched:
    with origin.open(location, declared=PLAYLIST_FORMAT) as download:
        return _read_rest(download, b"")


class _Walk:
    """One pass over a playlist tree for one attempt of one job."""

    def __init__(self, task: CopyTask, origin: Origin) -> None:
        self.task, self.origin = task, origin
        self.folder = folder_of(origin.root)  # what every piece must stay under (URL path form)
        self.key_folder = posixpath.dirname(task.key)  # where the pieces go
        self.done = task.runtime.ledger.pieces.of(task.job.job_id)  # committed by earlier attempts
        self.listed: dict[str, PieceRecord] = {}  # every piece of this recording, for the manifest
        # the job's own playlist, by its path as a piece would name it: a playlist naming it is no new piece
        self.visited = {unquote(urlsplit(origin.root).path[len(self.folder):])}
        self.unproven: list[str] = []

    def visit(self, body: bytes, base: str, depth: int) -> None:
        """Copy every piece ``body`` (the playlist at ``base``) names, its own playlists' pieces first."""
        pieces = references(body, base, self.folder)  # every URI checked before anything is fetched
        for piece in pieces:
            if piece.role != PLAYLIST:
                self.piece(piece)
        for piece in pieces:
            if piece.role != PLAYLIST or piece.path in self.visited:
                continue
            self.visited.add(piece.path)
            if depth + 1 > MAX_DEPTH:
                raise LayoutError(f"playlist {piece.path!r} is nested more than {MAX_DEPTH} deep")
            child = self._playlist_body(piece)
            self.visit(child[0], piece.url, depth + 1)
            self.piece(piece, child)  # after its own pieces

    def _playlist_body(self, piece: Piece) -> Fetched:
        """A variant playlist: the archived copy when an earlier attempt committed it (no second fetch
        from the source), else fetched."""
        record, key = self.done.get(piece.path), self._key(piece)
        if record is not None and record.object_key == key and record.bytes <= MAX_PLAYLIST_BYTES:
            try:
                with self.task.provider.open_reader(key) as reader:
                    data = reader.read(MAX_PLAYLIST_BYTES + 1)
                if len(data) == record.bytes and sha256(data).hexdigest() == record.sha256:
                    return data, (True, "as archived"), None
            except StorageError:
                pass  # gone or unreadable: fetch it again
        return self.retrying(self._what(piece), lambda: _fetch(self.origin, piece.url))

    def _key(self, piece: Piece) -> str:
        return posixpath.join(self.key_folder, piece.path) if self.key_folder else piece.path

    def piece(self, piece: Piece, body: Fetched | None = None) -> None:
        if piece.path in self.listed:
            return  # named by two playlists (an init section, a key): one object
        key = self._key(piece)
        record = self.done.get(piece.path)
        if record is not None and record.object_key == key and self._still_there(key, record):
            self.listed[piece.path] = record
            return
        info = self.retrying(self._what(piece), lambda: self._copy_piece(piece, key, body))
        record = PieceRecord(piece.path, key, info.size, info.checksums["sha256"])
        if not self.task.runtime.ledger.pieces.record(self.task.job.job_id, self.task.runtime.worker_id, record):
            raise LeaseLost(f"job {self.task.job.job_id}: lease lost while copying {piece.path}")
        self.listed[piece.path] = record

    def _copy_piece(self, piece: Piece, key: str, body: Fetched | None) -> ObjectInfo:
        declared = declared_format(piece.path)
        if self.task.job.attempts > 1:
            self.task.provider.discard_incomplete(key)  # a dead attempt's unfinished multipart upload
        download: Download = (BytesDownload(body[0], body[2], body[1]) if body is not None
                              else self.origin.open(piece.url, declared=declared))
        with download:
            info, _ = put(self.task, key, download, content_type=object_content_type(declared, download.content_type))
            if download.size_proven is False:
                self.unproven.append(f"{piece.path}: {download.size_note}")
            return info

    def _still_there(self, key: str, record: PieceRecord) -> bool:
        found = existing(self.task.provider, key)
        if found is None or found.size != record.bytes:
            return False
        return found.checksums.get("sha256", record.sha256) == record.sha256

    def _what(self, piece: Piece) -> str:
        return f"{piece.role} {piece.path!r}"

    def retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action``, again on a fault a moment may heal (bounded), naming ``what`` in the error."""
        for attempt in range(PIECE_TRIES):
            try:
                return action()
            except (SourceError, StorageError) as exc:
                if not _worth_another_try(exc) or attempt == PIECE_TRIES - 1:
                    raise _about(what, exc) from exc
            self.task.lease.check()
            time.sleep(Backoff(self.task.runtime.source_policy.resume_backoff, PIECE_BACKOFF_CAP,
                               jitter=False).seconds(attempt + 1))
        raise AssertionError("unreachable")


def _worth_another_try(exc: SourceError | StorageError) -> bool:
    # A piece not on the CDN yet is left to the job's own retries, which wait through the grace window.
    if isinstance(exc, SourceError):
        return exc.retryable and exc.code != "not_found_yet"
    return exc.retryable


def _about(what: str, exc: SourceError | StorageError) -> Exception:
    """The same error (class, code, retryability), its message saying which piece."""
    note = (": the segments are encrypted with this key and cannot be played without it"
            if what.startswith(KEY) else "")
    if isinstance(exc, SourceError):
        return type(exc)(f"{what}: {exc}{note}", code=exc.code)
    return type(exc)(f"{what}: {exc.message}{note}", retryable=exc.retryable, code=exc.code)
