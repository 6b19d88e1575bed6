"""Reconcile: archive every recording VideoSDK has that no webhook announced, of every kind.

Rooms come from the ledger (named by an event or a file in the window), ``[videosdk] rooms``, the
operator's ``--room`` and VideoSDK's own room list (``GET /v2/rooms``, bounded by the window: see
``archiver.maintenance.reconcile_rooms``), so a room that never sent a webhook is still found. For each room every
recording kind with a list endpoint is listed (room, participant, track, merge, composite, transcoding,
transcript; ``archiver.maintenance.reconcile_kinds``): new files are recorded with their copy jobs, sizes and ids
the ledger lacks are filled in, and copies whose size differs from VideoSDK's are flagged.

A failing listing is reported and the others go on; an authentication failure stops the run at once
(every further call would fail the same way) with one error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from archiver.domain.recordings import RecordingKind
from archiver.ledger.store import Ledger, utcnow
from archiver.maintenance.reconcile_kinds import SIZE_MISMATCH, SOURCE_TYPE, RoomFiles, reconcile_kind
from archiver.maintenance.reconcile_report import KindCounts, ReconcileReport, RoomReport, count_finds
from archiver.maintenance.reconcile_rooms import Discovery, discover_rooms, rooms_to_scan
from archiver.settings.config import Settings
from archiver.videosdk.api import VideoSDKAuthError, VideoSDKClient, VideoSDKError
from archiver.videosdk.items import ENDPOINTS

__all__ = ["KINDS", "SIZE_MISMATCH", "SOURCE_TYPE", "KindCounts", "ReconcileReport", "RoomReport", "reconcile",
           "rooms_to_scan", "window"]

log = logging.getLogger("archiver.reconcile")
KINDS: tuple[RecordingKind, ...] = tuple(ENDPOINTS)  # every kind with a list endpoint, in RecordingKind order


def reconcile(ledger: Ledger, settings: Settings, client: VideoSDKClient,
              publish: Callable[[Sequence[int]], None] | None, *, since: datetime, rooms: Iterable[str] = (),
              kinds: Iterable[RecordingKind] = KINDS, discover: bool = True) -> ReconcileReport:
    """Reconcile the rooms seen since ``since`` (ledger, config, ``rooms``, and VideoSDK's room list
    unless ``discover`` is False) for each of ``kinds``. ``publish`` puts created jobs on the broker
    (Publisher.copies) inside the ledger transaction that records them; a broker failure propagates."""
    kinds = tuple(kinds)
    report = ReconcileReport(rooms=[], kinds=[str(k) for k in kinds])
    extra = list(rooms)
    discovered: list[str] = []
    if discover:
        try:
            report.discovery = discover_rooms(client, since)
            discovered = report.discovery.rooms
        except VideoSDKAuthError as exc:
            return _stopped(report, exc, ledger, settings, since, extra)
        except VideoSDKError as exc:
            # the rooms the ledger and the configuration name are still worth a look
            report.discovery = Discovery(error=f"{exc.code}: {exc}")
            log.warning("reconcile: listing rooms failed: %s", report.discovery.error)
    scan = rooms_to_scan(ledger, settings, since, extra, discovered)
    report.rooms = [RoomReport(room, found_by=why) for room, why in scan.items()]
    known = RoomFiles(ledger)
    for room in report.rooms:
        for kind in kinds:
            try:
                reconcile_kind(ledger, settings, client, publish, room, kind, known)
            except VideoSDKAuthError as exc:
                report.error = f"{exc.code}: {exc}"  # the caller says it once (the CLI, the task's log)
                count_finds(report)
                return report
            except VideoSDKError as exc:
                room.errors[str(kind)] = f"{exc.code}: {exc}"
                room.counts(str(kind)).failed += 1
                log.warning("reconcile %s %s: %s", room.room, kind, room.errors[str(kind)])
    count_finds(report)
    return report


def _stopped(report: ReconcileReport, exc: VideoSDKError, ledger: Ledger, settings: Settings, since: datetime,
             extra: list[str]) -> ReconcileReport:
    """The run stops before any room: the rooms it would have scanned are listed, untouched."""
    report.error = f"{exc.code}: {exc}"
    report.rooms = [RoomReport(room, found_by=why) for room, why in rooms_to_scan(ledger, settings, since,
                                                                                  extra).items()]
    return report


def window(settings: Settings) -> datetime:
    return utcnow() - timedelta(hours=settings.reconcile.window_hours)
