"""Verbs that compare the ledger with the world: verify (copies) and reconcile (VideoSDK's lists)."""

from __future__ import annotations

import os
from dataclasses import asdict
from datetime import datetime, timedelta

import click

from archiver.cli.app import FOUND_PROBLEMS, OK, USAGE, settings, verb
from archiver.cli.common import Since, emit, fail, open_publisher, open_runtime, show_table, state
from archiver.domain.recordings import RecordingKind
from archiver.ledger.store import utcnow
from archiver.settings.config import Settings
from archiver.settings.destinations import require_secrets

KINDS = tuple(RecordingKind)


@verb("verify", short_help="check that succeeded copies still exist with the recorded size and checksum",
      help="for each succeeded copy changed in the window, look at the object in its destination and "
           "compare size (and sha256 when the object carries one) with the ledger; --deep reads it back "
           "and hashes it. Records verified_at, or a flag (verify_missing, verify_mismatch). Exit 1 if "
           "any copy is missing, different or could not be checked.")
@click.option("--since", type=Since(), default="24h", show_default=True,
              help="copies that finished since, e.g. 24h, 7d, 2026-11-01")
@click.option("--deep", is_flag=True, help="read every object back and hash it (slow, costs egress)")
def verify(since: datetime, deep: bool) -> int:
    from archiver.copy.verification import problems, verify_copies

    current = settings()
    require_secrets(current.destinations)  # verify reads copies back: a missing secret is no "error" verdict
    runtime = open_runtime(current)
    verdicts = verify_copies(runtime, since=since, deep=deep)
    rows = [{**v.to_json(), "job": v.job_id} for v in verdicts]
    counts = {r: sum(v.result == r for v in verdicts) for r in ("ok", "mismatch", "missing", "error", "unproven")}
    summary = f"{len(verdicts)} copies checked{' (read back)' if deep else ''}: " + \
        ", ".join(f"{n} {r}" for r, n in counts.items() if n or r != "unproven")
    emit([v.to_json() for v in verdicts], rows, ("job", "destination", "key", "result", "detail"), summary)
    return FOUND_PROBLEMS if problems(verdicts) else OK


def missing_credentials(current: Settings) -> str | None:
    """Why VideoSDK's REST API cannot be called (no api_key, no VIDEOSDK_SECRET_KEY), or None."""
    missing = [name for name, value in (("[videosdk] api_key", current.videosdk.api_key),
                                        ("VIDEOSDK_SECRET_KEY", os.environ.get("VIDEOSDK_SECRET_KEY"))) if not value]
    if not missing:
        return None
    return (f"missing_credentials: {' and '.join(missing)} not set; this verb calls VideoSDK's REST API, which "
            f"needs [videosdk] api_key (or ARCHIVER_VIDEOSDK_API_KEY) and the VIDEOSDK_SECRET_KEY environment "
            f"variable (both from app.videosdk.live, API keys)")


@verb("reconcile", short_help="archive recordings of every kind that VideoSDK has and no webhook announced",
      help="archive recordings of every kind that VideoSDK has and no webhook announced: list every "
           "recording kind of every room seen in the ledger in the window, of the rooms VideoSDK lists, "
           "of [videosdk] rooms and of --room; archive files the ledger lacks, fill in sizes and "
           "recording ids, flag copies whose size differs from VideoSDK's. Exit 1 if anything new or "
           "mismatched was found or anything failed; missing credentials stop it at once (exit 2).")
@click.option("--since", type=Since(), default=None, help="the window, e.g. 48h, 7d (default: [reconcile] "
                                                          "window_hours)")
@click.option("--room", multiple=True, metavar="ID", help="also this room (repeatable)")
@click.option("--kind", multiple=True, type=click.Choice([str(k) for k in KINDS]),
              help="only this recording kind (repeatable)")
@click.option("--no-room-list", is_flag=True, help="do not page through GET /v2/rooms (only ledger, configured "
                                                   "and --room rooms)")
def reconcile(since: datetime | None, room: tuple[str, ...], kind: tuple[str, ...], no_room_list: bool) -> int:
    from archiver.maintenance.reconcile import reconcile as run_reconcile
    from archiver.videosdk.api import VideoSDKClient

    current = settings()
    if why := missing_credentials(current):
        return fail(why)
    runtime = open_runtime(current)
    window = since or utcnow() - timedelta(hours=current.reconcile.window_hours)
    publisher = open_publisher(current)
    with VideoSDKClient.from_settings(current) as client:
        report = run_reconcile(runtime.ledger, current, client, publisher.copies, since=window, rooms=list(room),
                               kinds=[RecordingKind(k) for k in kind] or KINDS, discover=not no_room_list)
    if report.error:
        fail(f"stopped: {report.error}")
    if state().json:
        emit(report.to_json())
        return FOUND_PROBLEMS if report.found_anything else OK
    kinds = [{"kind": k, **asdict(c)} for k, c in report.by_kind().items()]
    show_table(kinds, ("kind", "recordings", "listed", "already_archived", "newly_queued", "failed", "not_ready",
                       "mismatches"))
    failed = [{"room": r.room, "kind": k, "error": error} for r in report.rooms for k, error in r.errors.items()]
    if report.discovery is not None and report.discovery.error:
        failed.insert(0, {"room": "(room list)", "kind": "-", "error": report.discovery.error})
    if failed:
        show_table(failed, ("room", "kind", "error"))
    print(report.summary())
    return FOUND_PROBLEMS if report.found_anything else OK


def register(group: click.Group) -> None:
    group.add_command(verify)
    group.add_command(reconcile)


__all__ = ["USAGE", "missing_credentials", "reconcile", "register", "verify"]
