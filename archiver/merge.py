"""merge-recording-completed carries only an id: the merged file is looked up through VideoSDK's
REST API and then archived like any other recording file."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from archiver.events import RecordingFile, parse_event
from archiver.intake import plan_jobs
from archiver.ledger.store import Accepted, NewFile, utcnow
from archiver.runtime import Runtime
from archiver.videosdk_api import VideoSDKClient, merge_files

log = logging.getLogger("archiver.merge")


class MergeNotUnderstood(Exception):
    """The API answered, but with nothing that names a file (its shape is undocumented)."""


def resolve_merge(runtime: Runtime, event_id: int, client: VideoSDKClient,
                  publish: Callable[[Sequence[int]], None]) -> Accepted:
    body = runtime.ledger.event_body(event_id)
    if body is None:
        raise LookupError(f"event {event_id} is not in the ledger")
    event = parse_event(body)
    assert event.merge_id is not None and event.meeting_id is not None and event.session_id is not None
    found = merge_files(client.get_merge(event.merge_id))
    if not found:
        raise MergeNotUnderstood(f"merge {event.merge_id}: the API response names no file")
    received_at = utcnow()
    planned = []
    for info in found:
        file = RecordingFile(meeting_id=event.meeting_id, session_id=event.session_id, participant_id=None,
                             kind="merged", file_path=info.file_path, file_url=info.file_url,
                             webhook_type=event.webhook_type, recording_id=info.id or event.merge_id)
        new = NewFile(meeting_id=file.meeting_id, session_id=file.session_id, participant_id=None, kind="merged",
                      file_path=file.file_path, source_url=file.file_url, webhook_type=file.webhook_type,
                      recording_id=file.recording_id, size=info.size)
        planned.append((new, plan_jobs(file, runtime.settings.destinations, received_at=received_at)))
    accepted = runtime.ledger.accept(
        body=json.dumps({"mergeId": event.merge_id, "files": [f.file_url for f in found]}),
        dedupe_key=f"merge:{event.merge_id}", webhook_type=event.webhook_type, meeting_id=event.meeting_id,
        session_id=event.session_id, received_at=received_at, verified=True, source="merge-lookup",
        files=planned, publish=publish)
    log.info("merge %s: %d files, %d new jobs", event.merge_id, len(found), len(accepted.created),
             extra={"event_id": event_id})
    return accepted
