"""Delete recordings from VideoSDK's storage once every copy of every one of their files is known good.

Deletion is the one irreversible thing the archiver does, so the rule is strict. A recording is the
ledger's files of one recording kind and recording id (learned by reconcile or a lookup). It goes
only when, for EVERY one of its files, each destination that archives that file has a copy that
succeeded, was verified afterwards (`archiver verify`), carries no error and has VideoSDK's size when
that is known; one file without such copies (pending, failed, unverified, flagged, no copy) keeps the
whole recording. Right before deleting, the recording is fetched from VideoSDK and every file it
lists must be one of those files: a file the ledger lacks (a track recording grew one at an unmute
after the last reconcile) keeps it too. Only kinds with a documented DELETE are considered (room,
participant, track, composite); a room recording's delete is a soft delete on VideoSDK's side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from archiver.domain.recordings import ANNOUNCED_BY, RecordingKind
from archiver.domain.states import JobState
from archiver.ledger.store import FileRecord, Ledger
from archiver.maintenance.reconcile_kinds import SOURCE_TYPE, match
from archiver.settings.config import Settings
from archiver.videosdk.api import VideoSDKAuthError, VideoSDKClient, VideoSDKError
from archiver.videosdk.items import DELETABLE, NotReady, Unusable, files_of

log = logging.getLogger("archiver.retention")

ENABLED = "after-verified"
DELETE, KEEP = "delete", "keep"  # decisions; the outcomes of a real run: deleted, already_gone, failed


class RetentionOff(Exception):
    pass


@dataclass(frozen=True)
class Decision:
    recording_kind: str
    recording_id: str
    meeting_id: str
    file_ids: tuple[int, ...]
    file_paths: tuple[str, ...]
    action: str  # keep | delete (dry run) | deleted | already_gone | failed
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.recording_kind, "recording_id": self.recording_id, "meeting_id": self.meeting_id,
                "files": len(self.file_ids), "file_ids": list(self.file_ids), "file_paths": list(self.file_paths),
                "action": self.action, "reason": self.reason}


def enabled(settings: Settings) -> bool:
    return settings.retention.delete_from_videosdk == ENABLED


def judge(file: FileRecord, settings: Settings) -> tuple[str, str]:
    """(delete | keep, why) for one recording file, from the ledger alone."""
    # Rows reconciled before every kind was known were stored with the type "reconcile"; they were
    # planned as the webhook that should have announced them, so destination filters apply to that.
    kind = ANNOUNCED_BY[RecordingKind.ROOM] if file.webhook_type == SOURCE_TYPE else file.webhook_type
    required = [d.name for d in settings.destinations if d.wants(kind)]
    if not required:
        return KEEP, "no configured destination archives this file"
    copies = {c.destination: c for c in file.copies}
    for name in required:
        copy = copies.get(name)
        if copy is None:
            return KEEP, f"{name}: no copy"
        if copy.state != JobState.SUCCEEDED:
            return KEEP, f"{name}: copy {copy.state}"
        if copy.error_code is not None:
            return KEEP, f"{name}: copy flagged {copy.error_code}"
        if copy.verified_at is None:
            return KEEP, f"{name}: copy not verified (run `archiver verify`)"
        if file.size is not None and copy.bytes != file.size:
            return KEEP, f"{name}: copy has {copy.bytes} bytes, VideoSDK reports {file.size}"
    return DELETE, f"verified in {', '.join(required)}"


def judge_recording(files: Sequence[FileRecord], settings: Settings) -> tuple[str, str]:
    """(delete | keep, why) for all files of one recording: each must qualify on its own."""
    reasons = []
    for file in files:
        action, reason = judge(file, settings)
        if action == KEEP:
            return KEEP, reason if len(files) == 1 else f"{file.file_name or file.file_path}: {reason}"
        reasons.append(reason)
    if len(files) == 1:
        return DELETE, reasons[0]
    return DELETE, f"all {len(files)} files " + (reasons[0] if len(set(reasons)) == 1 else "verified")


def recordings(ledger: Ledger) -> dict[tuple[str, str], list[FileRecord]]:
    """(recording kind, recording id) -> its files not yet deleted, for the kinds VideoSDK can delete."""
    grouped: dict[tuple[str, str], list[FileRecord]] = {}
    deletable = {str(kind) for kind in DELETABLE}
    for file in ledger.files(awaiting_deletion=True):
        if file.recording_id is not None and file.recording_kind in deletable:
            grouped.setdefault((file.recording_kind, file.recording_id), []).append(file)
    return grouped


def prune(ledger: Ledger, settings: Settings, client: VideoSDKClient | None, *,
          dry_run: bool = False) -> list[Decision]:
    """Judge every recording not yet deleted; unless ``dry_run``, delete those that qualify and record
    each attempt. ``client`` may be None for a dry run (no call is made, so VideoSDK's own list of the
    recording's files is compared only when deleting). A dry run works while retention is off: it is
    how an operator previews what turning it on would delete."""
    if not dry_run and not enabled(settings):
        raise RetentionOff("retention is off: set [retention] delete_from_videosdk = \"after-verified\" to "
                           "delete recordings from VideoSDK once every copy is verified")
    decisions: list[Decision] = []
    stop: str | None = None  # after an auth failure every further call would fail the same way
    for (kind, recording_id), files in sorted(recordings(ledger).items()):
        action, reason = judge_recording(files, settings)
        if action == DELETE and not dry_run:
            if stop is not None:
                action, reason = "failed", f"not attempted after {stop}"
            else:
                assert client is not None
                action, reason, fatal = _delete(ledger, client, RecordingKind(kind), recording_id, files)
                stop = reason if fatal else None
        decisions.append(Decision(kind, recording_id, files[0].meeting_id, tuple(f.file_id for f in files),
                                  tuple(f.file_path for f in files), action, reason))
    return decisions


def _delete(ledger: Ledger, client: VideoSDKClient, kind: RecordingKind, recording_id: str,
            files: Sequence[FileRecord]) -> tuple[str, str, bool]:
    """(outcome, detail, whether to stop: an authentication failure would repeat for every recording)."""
    try:
        listed = files_of(kind, client.get_item(kind, recording_id), meeting_id=files[0].meeting_id)
        missing = [f.filename for f in listed if match(files, f) is None]
        if missing:
            return KEEP, (f"VideoSDK lists {len(missing)} file(s) of this recording the ledger has no verified "
                          f"copy of ({', '.join(missing[:3])}); run `archiver reconcile`"), False
        client.delete_item(kind, recording_id)
    except (NotReady, Unusable) as exc:
        return KEEP, f"VideoSDK's answer for this recording cannot be compared with the ledger ({exc})", False
    except VideoSDKError as exc:
        if exc.code == "not_found":
            # Gone already (deleted by hand, or by an earlier run that died before recording it):
            # the end state is the one we wanted, so it is recorded and never tried again.
            _record(ledger, files, recording_id, "already_gone", str(exc))
            return "already_gone", "VideoSDK answered 404: already deleted", False
        detail = f"{exc.code}: {exc}"
        _record(ledger, files, recording_id, "failed", detail)
        log.warning("deleting %s recording %s from VideoSDK failed: %s", kind, recording_id, detail)
        return "failed", detail, isinstance(exc, VideoSDKAuthError)
    _record(ledger, files, recording_id, "deleted")
    log.info("deleted %s recording %s (%d files) from VideoSDK", kind, recording_id, len(files))
    return "deleted", "deleted from VideoSDK", False


def _record(ledger: Ledger, files: Sequence[FileRecord], recording_id: str, outcome: str,
            detail: str | None = None) -> None:
    for file in files:  # every file of the recording: each is then never considered again (or retried)
        ledger.record_deletion(file.file_id, recording_id, outcome, detail)


def failures(decisions: Sequence[Decision]) -> int:
    return sum(d.action == "failed" for d in decisions)
