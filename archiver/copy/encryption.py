"""An encrypted recording's key and meta files (``encryption: {keyUrl, metaUrl}`` in its webhook): each
is archived as a file of the recording (``archiver.intake.events``), and a copy of the media without them is
unusable, so a failure to archive one says so. Pure: no I/O."""

from __future__ import annotations

import json
from typing import Any

ROLES = {"keyUrl": "key file (encryption.keyUrl)", "metaUrl": "meta file (encryption.metaUrl)"}


def encryption_role(event_body: str | None, source_url: str | None) -> str | None:
    """What ``source_url`` is to the recording the event announced: "key file (...)", "meta file (...)",
    or None when it is not one of the event's encryption files."""
    if not event_body or not source_url:
        return None
    try:
        data: Any = json.loads(event_body).get("data")
    except (ValueError, AttributeError):
        return None
    encryption = data.get("encryption") if isinstance(data, dict) else None
    if not isinstance(encryption, dict):
        return None
    return next((role for name, role in ROLES.items() if encryption.get(name) == source_url), None)


def unusable_note(role: str) -> str:
    return (f"; this file is the recording's encryption {role}: the archived media is encrypted and cannot be "
            "decrypted without it, so the recording is not usable from the archive until this copy succeeds")
