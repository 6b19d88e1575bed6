"""Record what an origin found: the one path by which recording files enter the ledger.

A webhook body (receiver, `replay`, `archive`), a REST lookup by id (merge, transcript, composite)
and reconcile's listings all describe their finds as ``RecordingFile`` values and call
``record_files``: each file's key is rendered for each destination, and the event, its files, their
jobs and any lookups are written in one ledger transaction, with the new work published to the
broker before it commits; the receiver instead hands it to its relay after the commit
(archiver.intake.relay), and writes a fresh event through archiver.ledger.fresh. Pure of Celery: the
receiver, the CLI, the tasks and the tests call it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from archiver.domain.recordings import RecordingFile, RecordingKind, Storage
from archiver.domain.templates import RenderError, template_values
from archiver.intake.events import WebhookEvent, dedupe_key, parse_event
from archiver.ledger.fresh import FreshEvents, eligible
from archiver.ledger.store import API_ORIGINS, Accepted, JobRecord, Ledger, NewJob, utcnow
from archiver.settings.config import Destination, Settings

Publish = Callable[[Sequence[int]], None]


@dataclass(frozen=True)
class Origin:
    """Where files came from; becomes one row of the ledger's events (deduplicated by ``dedupe_key``)."""

    body: str  # the webhook body, or a JSON description of what a lookup or reconcile found
    dedupe_key: str  # at most 64 characters
    webhook_type: str
    meeting_id: str | None
    session_id: str | None
    received_at: datetime  # timezone-aware
    verified: bool
    source: str  # webhook | replay | cli | lookup | reconcile


def short_dedupe_key(origin: str, key: str) -> str:
    """``key`` as an Origin.dedupe_key: itself when it fits in 64 characters, else ``origin:`` and as
    much of its SHA-256 (hex) as fits, so a long key still deduplicates exactly."""
    if len(key) <= 64:
        return key
    head = f"{origin}:"
    return head + hashlib.sha256(key.encode()).hexdigest()[:64 - len(head)]


def held_reason(file: RecordingFile, settings: Settings) -> str | None:
    """Why a file cannot be copied yet, or None: one in the customer's storage needs that storage as a source."""
    if file.storage is Storage.CUSTOMER and settings.videosdk.storage is None:
        return ("held in the customer's storage (VideoSDK wrote it to your own bucket: fileUrl is "
                f"{'null' if file.file_url is None else 'on a storage host'}); to copy it into the other "
                "destinations set [videosdk] storage = \"s3://bucket\" (or az://, gs://) with its options, "
                "then `archiver retry --held`")
    return None


def plan_jobs(file: RecordingFile, destinations: Sequence[Destination], *, received_at: datetime,
              held: str | None = None) -> list[NewJob]:
    jobs = []
    for dest in destinations:
        if not dest.wants(file.webhook_type):
            continue
        try:
            key = dest.template.render(template_values(file, received_at=received_at, destination=dest.name))
            jobs.append(NewJob(dest.name, key, held=held, manifest=dest.manifest))
        except RenderError as exc:
            jobs.append(NewJob(dest.name, None, error=template_failure(dest, exc)))
    return jobs


def template_failure(dest: Destination, exc: RenderError) -> str:
    """The one message a key that cannot be made gets: what failed and how to fix it, once."""
    return (f"{dest.name}: {exc}; this file's key cannot be made with the template {dest.template.text!r}: "
            "change the destination's url (a default such as {participantId|room}, or leave the variable out), "
            "then `archiver retry JOB_ID` renders the key again with the new configuration")


def render_job_key(job: JobRecord, dest: Destination) -> str:
    """The key for a job recorded without one (its template failed at intake, or the job was retried
    after the template was fixed), rendered with the CURRENT configuration and the time the file was
    received, as at intake. Raises RenderError."""
    file = RecordingFile(meeting_id=job.meeting_id, session_id=job.session_id, participant_id=job.participant_id,
                         kind=job.kind, file_path=job.file_path, file_url=job.source_url,
                         webhook_type=job.webhook_type, recording_id=job.recording_id,
                         recording_kind=RecordingKind(job.recording_kind), file_id=job.videosdk_file_id)
    return dest.template.render(template_values(file, received_at=job.received_at, destination=dest.name))


def record_files(ledger: Ledger, settings: Settings, origin: Origin, files: Sequence[RecordingFile], *,
                 lookups: Sequence[tuple[str, str]] = (), publish: Publish | None = None,
                 publish_lookups: Publish | None = None, fresh: FreshEvents | None = None) -> Accepted:
    """Record ``origin`` with ``files`` (a job per file x destination that wants it) and ``lookups``
    ((recording kind, resource id)) in one transaction; new jobs and lookups are published before it
    commits (see Ledger.accept). A file VideoSDK wrote to the customer's storage gets jobs held until
    that storage is configured as a source. Date parts of keys come from ``received_at``, as stored.

    ``fresh`` (the receiver's, which publishes after the commit): an event never seen whose files and
    keys are new is written by it in three statements (archiver.ledger.fresh); anything else, and
    every call that publishes inside the transaction, goes through Ledger.accept."""
    planned = [(f, plan_jobs(f, settings.destinations, received_at=origin.received_at,
                             held=held_reason(f, settings))) for f in files]
    if (fresh is not None and publish is None and publish_lookups is None and not lookups
            and eligible(origin.source in API_ORIGINS or origin.source == "reconcile", planned)):
        recorded = fresh.record(body=origin.body, dedupe_key=origin.dedupe_key, webhook_type=origin.webhook_type,
                                meeting_id=origin.meeting_id, session_id=origin.session_id,
                                received_at=origin.received_at, verified=origin.verified, source=origin.source,
                                files=planned)
        if recorded is not None:
            return recorded
    return ledger.accept(body=origin.body, dedupe_key=origin.dedupe_key, webhook_type=origin.webhook_type,
                         meeting_id=origin.meeting_id, session_id=origin.session_id,
                         received_at=origin.received_at, verified=origin.verified, source=origin.source,
                         files=planned, lookups=lookups, publish=publish, publish_lookups=publish_lookups)


def accept_event(ledger: Ledger, settings: Settings, body: bytes | str, *, verified: bool,
                 source: str = "webhook", received_at: datetime | None = None,
                 event: WebhookEvent | None = None, publish: Publish | None = None,
                 publish_lookups: Publish | None = None,
                 fresh: FreshEvents | None = None) -> tuple[WebhookEvent, Accepted]:
    """Record a webhook body: the event, its files and their jobs, and the lookup of a recording it names
    only by id (``fresh``: see record_files). Raises EventValidationError on bad input."""
    event = event or parse_event(body)
    text = body.decode() if isinstance(body, bytes) else body
    origin = Origin(body=text, dedupe_key=dedupe_key(json.loads(text)), webhook_type=event.webhook_type,
                    meeting_id=event.meeting_id, session_id=event.session_id,
                    received_at=received_at or utcnow(), verified=verified, source=source)
    lookups = [(str(event.lookup.kind), event.lookup.resource_id)] if event.lookup is not None else []
    accepted = record_files(ledger, settings, origin, event.files, lookups=lookups, publish=publish,
                            publish_lookups=publish_lookups, fresh=fresh)
    return event, accepted
