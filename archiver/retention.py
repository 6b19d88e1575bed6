"""Delete recordings from VideoSDK's storage once every copy of them is known good.

Deletion is the one irreversible thing the archiver does, so the rule is strict and checked on the
ledger only: a recording goes when each destination that archives its kind of file has a copy that
succeeded, was verified afterwards (`archiver verify`), carries no error and has VideoSDK's size
when that is known. Anything else (no copy, pending, running, failed, unverified, flagged) keeps it.
Only room recordings are considered: theirs is the id DELETE /recordings/{id} documents.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from archiver.config import Settings
from archiver.ledger.store import FileRecord, Ledger
from archiver.reconcile import ANNOUNCED_AS, SOURCE_TYPE
from archiver.videosdk_api import VideoSDKAuthError, VideoSDKClient, VideoSDKError

log = logging.getLogger("archiver.retention")

ENABLED = "after-verified"
DELETE, KEEP = "delete", "keep"  # decisions; the outcomes of a real run: deleted, already_gone, failed


class RetentionOff(Exception):
    pass


@dataclass(frozen=True)
class Decision:
    file_id: int
    recording_id: str
    meeting_id: str
    file_path: str
    action: str  # keep | delete (dry run) | deleted | already_gone | failed
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def enabled(settings: Settings) -> bool:
    return settings.retention.delete_from_videosdk == ENABLED


def judge(file: FileRecord, settings: Settings) -> tuple[str, str]:
    """(delete | keep, why) for one recording file, from the ledger alone."""
    # A reconciled row is stored as "reconcile" but was planned as the webhook that should have
    # announced it (archiver.reconcile): destination filters are applied to that type here too.
    kind = ANNOUNCED_AS if file.webhook_type == SOURCE_TYPE else file.webhook_type
    required = [d.name for d in settings.destinations if d.wants(kind)]
    if not required:
        return KEEP, "no configured destination archives this file"
    copies = {c.destination: c for c in file.copies}
    for name in required:
        copy = copies.get(name)
        if copy is None:
            return KEEP, f"{name}: no copy"
        if copy.state != "succeeded":
            return KEEP, f"{name}: copy {copy.state}"
        if copy.error_code is not None:
            return KEEP, f"{name}: copy flagged {copy.error_code}"
        if copy.verified_at is None:
            return KEEP, f"{name}: copy not verified (run `archiver verify`)"
        if file.size is not None and copy.bytes != file.size:
            return KEEP, f"{name}: copy has {copy.bytes} bytes, VideoSDK reports {file.size}"
    return DELETE, f"verified in {', '.join(required)}"


def prune(ledger: Ledger, settings: Settings, client: VideoSDKClient | None, *,
          dry_run: bool = False) -> list[Decision]:
    """Judge every recording not yet deleted; unless `dry_run`, delete those that qualify and record
    each attempt. `client` may be None for a dry run (no call is made)."""
    if not enabled(settings):
        raise RetentionOff("retention is off: set [retention] delete_from_videosdk = \"after-verified\" to "
                           "delete recordings from VideoSDK once every copy is verified")
    decisions: list[Decision] = []
    stop: str | None = None  # after an auth failure every further delete would fail the same way
    for file in ledger.files(awaiting_deletion=True):
        assert file.recording_id is not None
        if file.participant_id is not None or file.kind is not None:
            # Only room recordings carry an id from GET /recordings, the id DELETE /recordings/{id}
            # takes; a merged file's id is the merge's, which that endpoint does not document.
            continue
        action, reason = judge(file, settings)
        if action == DELETE and not dry_run:
            if stop is not None:
                action, reason = "failed", f"not attempted after {stop}"
            else:
                assert client is not None
                action, reason, fatal = _delete(ledger, client, file)
                stop = reason if fatal else None
        decisions.append(Decision(file.file_id, file.recording_id, file.meeting_id, file.file_path, action, reason))
    return decisions


def _delete(ledger: Ledger, client: VideoSDKClient, file: FileRecord) -> tuple[str, str, bool]:
    """(outcome, detail, whether to stop: an authentication failure would repeat for every file)."""
    assert file.recording_id is not None
    try:
        client.delete_recording(file.recording_id)
    except VideoSDKError as exc:
        if exc.code == "not_found":
            # Gone already (deleted by hand, or by an earlier run that died before recording it):
            # the end state is the one we wanted, so it is recorded and never tried again.
            ledger.record_deletion(file.file_id, file.recording_id, "already_gone", str(exc))
            return "already_gone", "VideoSDK answered 404: already deleted", False
        detail = f"{exc.code}: {exc}"
        ledger.record_deletion(file.file_id, file.recording_id, "failed", detail)
        log.warning("deleting recording %s from VideoSDK failed: %s", file.recording_id, detail)
        return "failed", detail, isinstance(exc, VideoSDKAuthError)
    ledger.record_deletion(file.file_id, file.recording_id, "deleted")
    log.info("deleted recording %s (%s) from VideoSDK", file.recording_id, file.file_path)
    return "deleted", "deleted from VideoSDK", False


def failures(decisions: Sequence[Decision]) -> int:
    return sum(d.action == "failed" for d in decisions)
