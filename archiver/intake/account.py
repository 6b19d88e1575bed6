"""Only our recordings: a webhook's file is confirmed through VideoSDK's REST API before it is copied.

VideoSDK serves its webhook signing key from a public endpoint that names no account, so a valid
signature proves only that VideoSDK sent the webhook, not that the recording is in OUR account: anyone
with a VideoSDK account can point a recording's `webhookUrl` at our receiver. With `[videosdk] api_key`
configured, the worker therefore asks the API, with our credentials, for the recordings of the file's
kind in its room, and copies only a file the API lists: from the URL the API gives, with the size it
reports as the proof of the download's length. A file it does not list is retried for a while (a
recording may appear in the list a little after its webhook) and then refused for good.

The cost per job is kept small: a worker process keeps one client (one connection pool, one TLS
handshake: Runtime.videosdk) and remembers, per room, session and kind, the files the API listed in
the last LISTING_SECONDS. A file found there is confirmed without asking again (it was in our account
moments ago), so the N track recordings of one meeting cost one listing, not N; a file not found
there is always asked about afresh (it may have been listed after the remembered listing).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import replace
from datetime import timedelta

from archiver.domain.recordings import RecordingFile, RecordingKind
from archiver.ledger.store import JobRecord, utcnow
from archiver.retry import Decided
from archiver.runtime import Runtime
from archiver.videosdk.api import VideoSDKAuthError, VideoSDKClient, VideoSDKError
from archiver.videosdk.items import NotReady, Unusable, files_of

# Kinds whose webhooks name files (the others are looked up by id through the API: confirmed already).
CHECKED = frozenset({RecordingKind.ROOM, RecordingKind.PARTICIPANT, RecordingKind.TRACK, RecordingKind.COMPOSITE})
# How long a listing may confirm a file it contains. Short: what it proves is "our account listed this
# file this long ago", which a recording never stops being true of except by a deletion from our
# account; long enough for the track jobs of one meeting, which arrive together, to share one listing.
LISTING_SECONDS = 60.0
LISTINGS_KEPT = 256  # rooms (kind, room, session) remembered per process, least recently used dropped

ListingKey = tuple[RecordingKind, str, "str | None"]


class NotOurs(Decided):
    """The file is not (or not yet) in our account's list. ``final``: the grace window is over."""

    def __init__(self, message: str, *, final: bool) -> None:
        super().__init__(message, code="not_in_account" if final else "not_in_account_yet", retryable=not final)


class CannotConfirm(Decided):
    """The API could not be asked (unavailable: retryable; refused our credentials: not)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message, code="account_check", retryable=retryable)


def needs_confirmation(runtime: Runtime, job: JobRecord) -> bool:
    return (runtime.settings.videosdk.api_key is not None and not job.confirmed
            and job.recording_kind in {str(k) for k in CHECKED})


def confirm(runtime: Runtime, job: JobRecord) -> JobRecord:
    """The job with what the API lists for its file (size, ids, URL), recorded as confirmed in the ledger.
    Raises NotOurs or CannotConfirm."""
    kind = RecordingKind(job.recording_kind)
    where = f"{kind} recordings of room {job.meeting_id!r}"
    try:
        found = _look_up(runtime, kind, job)
    except VideoSDKAuthError as exc:
        raise CannotConfirm(f"could not ask VideoSDK's API for the {where}: {exc}; nothing is copied until it "
                            "answers (set [videosdk] api_key and VIDEOSDK_SECRET_KEY, then `archiver retry "
                            "--failed`)", retryable=False) from None
    except VideoSDKError as exc:
        raise CannotConfirm(f"could not ask VideoSDK's API for the {where}: {exc}",
                            retryable=exc.retryable or exc.code == "not_found") from None
    if found is None:
        grace = timedelta(seconds=runtime.source_policy.not_found_grace)
        final = utcnow() - job.received_at > grace
        raise NotOurs(f"VideoSDK's API, asked with this deployment's api_key, lists no file {job.file_path!r} among "
                      f"the {where}" + (": this webhook was not sent for our account (anyone with a VideoSDK "
                                        "account can point a recording's webhookUrl at this receiver); nothing "
                                        "was copied" if final else "; asking again later"), final=final)
    runtime.ledger.confirm_file(job.job_id, size=found.size, recording_id=found.recording_id,
                                videosdk_file_id=found.file_id, source_url=found.file_url)
    return replace(job, confirmed=True, size=found.size if found.size is not None else job.size,
                   recording_id=found.recording_id or job.recording_id,
                   videosdk_file_id=found.file_id or job.videosdk_file_id,
                   source_url=found.file_url if found.file_url is not None else job.source_url)


class _Listings:
    """The files of recent listings, by (kind, room, session): (when the listing began, its files)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[ListingKey, tuple[float, list[RecordingFile]]] = OrderedDict()

    def recent(self, key: ListingKey) -> list[RecordingFile]:
        with self._lock:
            began, files = self._kept.get(key, (float("-inf"), []))
            if time.monotonic() - began >= LISTING_SECONDS:
                return []
            self._kept.move_to_end(key)
            return files

    def keep(self, key: ListingKey, began: float, files: list[RecordingFile]) -> None:
        with self._lock:
            self._kept[key] = (began, files)
            self._kept.move_to_end(key)
            while len(self._kept) > LISTINGS_KEPT:
                self._kept.popitem(last=False)


# Per client, so per account and process: a client built for another api_key starts with none.
_LISTINGS: weakref.WeakKeyDictionary[VideoSDKClient, _Listings] = weakref.WeakKeyDictionary()
_LISTINGS_LOCK = threading.Lock()


def _look_up(runtime: Runtime, kind: RecordingKind, job: JobRecord) -> RecordingFile | None:
    """The job's file as our account's listing has it (a recent one if it has the file), or None."""
    client = runtime.videosdk()
    with _LISTINGS_LOCK:
        listings = _LISTINGS.setdefault(client, _Listings())
    key: ListingKey = (kind, job.meeting_id, job.session_id)
    if (found := _find(job, listings.recent(key))) is not None:
        return found
    began, files = time.monotonic(), []
    pages = client.item_pages(kind, job.meeting_id, session_id=job.session_id or None)
    try:
        for page in pages:  # page by page: stop at the page that has the file, as a plain walk would
            listed = [f for item in page for f in _files(kind, job, item)]
            files += listed
            if (found := _find(job, listed)) is not None:
                break
    except BaseException as exc:
        if not isinstance(exc, VideoSDKError) or exc.code in ("timeout", "connection"):
            runtime.discard_videosdk(client)  # a connection may be left mid-answer: a fresh pool next time
        raise
    finally:
        pages.close()
    listings.keep(key, began, files)
    return found


def _files(kind: RecordingKind, job: JobRecord, item: object) -> list[RecordingFile]:
    try:
        return files_of(kind, item, meeting_id=job.meeting_id, session_id=job.session_id)
    except (Unusable, NotReady):
        return []


def _find(job: JobRecord, files: list[RecordingFile]) -> RecordingFile | None:
    name = job.file_path.rstrip("/").rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0]
    for f in files:
        if (f.participant_id or None) != job.participant_id or (f.kind or None) != job.kind:
            continue
        if f.session_id and job.session_id and f.session_id != job.session_id:
            continue
        if f.filename == name or (f.file_id is not None and f.file_id in (stem, job.videosdk_file_id)):
            return f
    return None
