"""The ledger's Outbox for a configuration: which endpoint wants which event, and where copies are."""

from __future__ import annotations

from archiver.ledger.outbox import Outbox
from archiver.observability.redaction import mask_url
from archiver.settings.config import Settings


def outbox_for(settings: Settings) -> Outbox:
    """An Outbox routing each event type to the [[notifications]] endpoints that want it; a copy is
    named by its destination's storage URL and key (credentials masked), e.g. s3://bucket/k/x.mp4."""
    destinations = {d.name: d.provider_url.rstrip("/") for d in settings.destinations}

    def locate(destination: str, key: str | None) -> str | None:
        base = destinations.get(destination)
        return None if key is None or base is None else mask_url(f"{base}/{key}")

    return Outbox({n.name: n.events for n in settings.notifications}, locate)
