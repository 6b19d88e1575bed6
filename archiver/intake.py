"""Accept a webhook body: parse it, render each file's key for each destination, record it all in
one ledger transaction. Returns the jobs to enqueue. Pure of Celery: the receiver, the CLI's
`replay`, reconcile and the tests all call this."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from archiver.config import Destination, Settings
from archiver.events import RecordingFile, WebhookEvent, dedupe_key, parse_event
from archiver.ledger.store import Accepted, JobRecord, Ledger, NewFile, NewJob, utcnow
from archiver.templates import RenderError, template_values


def plan_jobs(file: RecordingFile, destinations: Sequence[Destination], *, received_at: datetime) -> list[NewJob]:
    jobs = []
    for dest in destinations:
        if not dest.wants(file.webhook_type):
            continue
        try:
            key = dest.template.render(template_values(file, received_at=received_at, destination=dest.name))
            jobs.append(NewJob(dest.name, key))
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
                         webhook_type=job.webhook_type, recording_id=job.recording_id)
    return dest.template.render(template_values(file, received_at=job.received_at, destination=dest.name))


def accept_event(ledger: Ledger, settings: Settings, body: bytes | str, *, verified: bool,
                 source: str = "webhook", received_at: datetime | None = None,
                 event: WebhookEvent | None = None,
                 publish: Callable[[Sequence[int]], None] | None = None,
                 on_new_event: Callable[[int], None] | None = None) -> tuple[WebhookEvent, Accepted]:
    """Record the event, its files and their jobs; `publish` puts new jobs on the broker inside the
    ledger transaction (see Ledger.accept). Raises EventValidationError on bad input."""
    event = event or parse_event(body)
    received_at = received_at or utcnow()
    text = body.decode() if isinstance(body, bytes) else body
    planned = [(NewFile(meeting_id=f.meeting_id, session_id=f.session_id, participant_id=f.participant_id,
                        kind=f.kind, file_path=f.file_path, source_url=f.file_url, webhook_type=f.webhook_type,
                        recording_id=f.recording_id),
                plan_jobs(f, settings.destinations, received_at=received_at)) for f in event.files]
    accepted = ledger.accept(body=text, dedupe_key=dedupe_key(json.loads(text)), webhook_type=event.webhook_type,
                             meeting_id=event.meeting_id, session_id=event.session_id, received_at=received_at,
                             verified=verified, source=source, files=planned,
                             publish=publish, on_new_event=on_new_event)
    return event, accepted
