"""The JSON manifest written beside a copy (``manifest = true``): KEY.json, never over anything else.

Create-only: a re-run after a crash finds its own manifest (same job, key and sha256) and keeps it;
any other object at KEY.json is a conflict, never replaced (an archived recording may have that
name). The planner already refuses a file whose key is another's manifest key (ledger.files.key_taken).
"""

from __future__ import annotations

import io
import json
from typing import Any

from archiver.copy.errors import Conflict
from archiver.ledger.store import JobRecord, utcnow
from archiver.observability.redaction import redact_source
from archiver.settings.config import Destination
from providers import ObjectExists, ObjectInfo, StorageError, StorageProvider

MAX_MANIFEST_BYTES = 16 << 20  # a manifest (with every HLS piece listed) stays far below this


def manifest_key(object_key: str) -> str:
    return f"{object_key}.json"


def write_manifest(provider: StorageProvider, job: JobRecord, dest: Destination, info: ObjectInfo,
                   extra: dict[str, Any]) -> None:
    """Write KEY.json: key, destination, size, sha256, source URL (no query), ids, times, job id, plus
    ``extra`` (HLS pieces). Raises Conflict when something that is not this copy's manifest is there."""
    assert job.object_key is not None
    manifest = {
        "object_key": job.object_key, "destination": dest.name, "size": info.size,
        "sha256": info.checksums.get("sha256"), "source_url": redact_source(job.source_url) if job.source_url else None,
        "file_path": job.file_path, "meeting_id": job.meeting_id, "session_id": job.session_id,
        "participant_id": job.participant_id, "kind": job.kind, "webhook_type": job.webhook_type,
        "recording_id": job.recording_id, "received_at": job.received_at.isoformat(),
        "archived_at": utcnow().isoformat(), "job_id": job.job_id, "storage": job.storage, **extra,
    }
    key = manifest_key(job.object_key)
    body = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    try:
        provider.upload(key, io.BytesIO(body), content_type="application/json", if_absent=not dest.overwrite)
    except ObjectExists:
        if not _ours(provider, key, manifest):
            raise Conflict(f"a different object is already at {provider.describe(key)}, where this copy's manifest "
                           f"goes; it was left as it is and no manifest was written (the copy itself is at "
                           f"{provider.describe(job.object_key)})") from None


def _ours(provider: StorageProvider, key: str, manifest: dict[str, Any]) -> bool:
    """Whether the object at ``key`` is this copy's manifest, written by an earlier run of the same job."""
    try:
        with provider.open_reader(key) as reader:
            data = reader.read(MAX_MANIFEST_BYTES + 1)
        found = json.loads(data) if len(data) <= MAX_MANIFEST_BYTES else None
    except (ValueError, OSError, StorageError):
        return False
    same = ("object_key", "destination", "job_id", "sha256", "size")
    return isinstance(found, dict) and all(found.get(k) == manifest[k] for k in same)
