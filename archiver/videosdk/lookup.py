"""A recording a webhook names only by id (merge-recording-completed, transcription-stopped, a composite
event without a file): fetched through VideoSDK's REST API, then recorded like any other recording.

The lookup is a row in the ledger (written with its event), so it survives a crash and a lost broker
message: the sweeper starts pending lookups again. A lookup that cannot finish yet (the merge is still
running, the API is down, the id is not visible yet) is retried with backoff; only a definite answer
(the item is malformed or failed, or stays missing past the attempt budget) fails it for good.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from archiver.domain.recordings import ANNOUNCED_BY, RecordingKind
from archiver.domain.states import LookupState
from archiver.intake.events import parse_event
from archiver.intake.record import Origin, record_files, short_dedupe_key
from archiver.ledger.store import utcnow
from archiver.retry import Backoff
from archiver.runtime import Runtime
from archiver.videosdk.api import VideoSDKClient, VideoSDKError
from archiver.videosdk.items import NotReady, Unusable, files_of

log = logging.getLogger("archiver.lookup")
MAX_ATTEMPTS = 15  # with the retry backoff (capped at [retry] max_delay) a few hours for a merge to finish
BASE_DELAY = 30.0


@dataclass(frozen=True)
class LookupOutcome:
    lookup_id: int
    state: str  # done | pending (retry_in set) | failed | skipped (done, failed or unknown already)
    retry_in: float | None = None
    error: str | None = None
    created: tuple[int, ...] = ()


def run_lookup(runtime: Runtime, lookup_id: int, client: VideoSDKClient,
               publish: Callable[[Sequence[int]], None] | None) -> LookupOutcome:
    ledger = runtime.ledger
    lookup = ledger.lookups.start(lookup_id)
    if lookup is None:
        return LookupOutcome(lookup_id, LookupState.SKIPPED)
    kind, resource = RecordingKind(lookup.recording_kind), lookup.resource_id
    where = f"{kind} {resource}"
    body = ledger.event_body(lookup.event_id)
    event = parse_event(body) if body is not None else None
    try:
        payload = client.get_item(kind, resource)
        files = files_of(kind, payload, meeting_id=event.meeting_id if event else None,
                         session_id=event.session_id if event else None)
    except NotReady as exc:
        return _again(runtime, lookup_id, lookup.attempts, "not_ready",
                      f"{where}: VideoSDK has no file for it yet ({exc}); looking again later")
    except Unusable as exc:
        return _fail(runtime, lookup_id, "bad_response", f"{where}: the API's answer has no usable {exc}; "
                     "check the recording in VideoSDK's dashboard, then `archiver retry --lookups`")
    except VideoSDKError as exc:
        # A lookup right after its webhook may not be visible yet: a 404 is retried within the budget.
        if exc.retryable or exc.code == "not_found":
            return _again(runtime, lookup_id, lookup.attempts, exc.code, f"{where}: {exc}")
        return _fail(runtime, lookup_id, exc.code, f"{where}: {exc}")
    files = [f if f.recording_id else replace(f, recording_id=resource) for f in files]
    key = f"lookup:{kind}:{resource}"
    origin = Origin(body=json.dumps({"lookup": str(kind), "id": resource, "files": [f.file_path for f in files]}),
                    dedupe_key=short_dedupe_key("lookup", key),
                    webhook_type=ANNOUNCED_BY[kind], meeting_id=files[0].meeting_id if files else None,
                    session_id=files[0].session_id if files else None, received_at=utcnow(), verified=True,
                    source="lookup")
    accepted = record_files(ledger, runtime.settings, origin, files, publish=publish)
    ledger.lookups.finish(lookup_id, state=LookupState.DONE)
    log.info("lookup %s: %d files, %d new jobs", where, len(files), len(accepted.created),
             extra={"lookup_id": lookup_id})
    return LookupOutcome(lookup_id, LookupState.DONE, created=accepted.created)


def _again(runtime: Runtime, lookup_id: int, attempts: int, code: str, message: str) -> LookupOutcome:
    if attempts >= MAX_ATTEMPTS:
        return _fail(runtime, lookup_id, code, f"{message} (gave up after {attempts} attempts; "
                     "`archiver retry --lookups` tries again)")
    runtime.ledger.lookups.finish(lookup_id, state=LookupState.PENDING, code=code, message=message)
    delay = Backoff(BASE_DELAY, runtime.settings.retry.max_delay).seconds(attempts)
    log.info("lookup %s: %s; again in %.0f s", lookup_id, message, delay)
    return LookupOutcome(lookup_id, LookupState.PENDING, retry_in=delay, error=f"{code}: {message}")


def _fail(runtime: Runtime, lookup_id: int, code: str, message: str) -> LookupOutcome:
    runtime.ledger.lookups.finish(lookup_id, state=LookupState.FAILED, code=code, message=message)
    log.error("lookup %s failed for good: %s", lookup_id, message)
    return LookupOutcome(lookup_id, LookupState.FAILED, error=f"{code}: {message}")
