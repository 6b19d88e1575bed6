"""Verbs that compare the ledger with the world: verify (copies), reconcile (VideoSDK), prune (retention)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from archiver.cli.common import FOUND_PROBLEMS, OK, USAGE, format_table, settings_of, since
from archiver.domain.recordings import RecordingKind
from archiver.ledger.store import utcnow
from archiver.runtime import Runtime
from archiver.settings.destinations import require_secrets


def _print(args: argparse.Namespace, data: Any, rows: list[dict[str, Any]], columns: tuple[str, ...],
           summary: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    if rows:
        print(format_table(rows, columns))
    print(summary)


KINDS = tuple(RecordingKind)


def cmd_verify(args: argparse.Namespace) -> int:
    from archiver.copy.verification import problems, verify_copies

    settings = settings_of(args)
    require_secrets(settings.destinations)  # verify reads copies back: a missing secret is no "error" verdict
    runtime = Runtime.create(settings)
    verdicts = verify_copies(runtime, since=args.since, deep=args.deep)
    rows = [{**v.to_json(), "job": v.job_id} for v in verdicts]
    bad = problems(verdicts)
    counts = {r: sum(v.result == r for v in verdicts) for r in ("ok", "mismatch", "missing", "error", "unproven")}
    summary = f"{len(verdicts)} copies checked{' (read back)' if args.deep else ''}: " + \
        ", ".join(f"{n} {r}" for r, n in counts.items() if n or r != "unproven")
    _print(args, [v.to_json() for v in verdicts], rows, ("job", "destination", "key", "result", "detail"), summary)
    return FOUND_PROBLEMS if bad else OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from archiver.maintenance.reconcile import reconcile
    from archiver.videosdk.api import VideoSDKClient
    from archiver.worker.app import BrokerUnreachable, Publisher, create_app

    settings = settings_of(args)
    runtime = Runtime.create(settings)
    window = args.since or utcnow() - timedelta(hours=settings.reconcile.window_hours)
    publisher = Publisher(create_app(settings))
    try:
        with VideoSDKClient.from_settings(settings) as client:
            report = reconcile(runtime.ledger, settings, client, publisher.copies, since=window, rooms=args.room,
                               kinds=[RecordingKind(k) for k in args.kind] or KINDS, discover=not args.no_room_list)
    except BrokerUnreachable as exc:  # publishing happens inside the ledger transaction: nothing was recorded
        print(f"archiver reconcile: the broker is unreachable ({exc}); nothing new was recorded", file=sys.stderr)
        return FOUND_PROBLEMS
    if report.error:
        print(f"archiver reconcile: stopped: {report.error}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=str))
        return FOUND_PROBLEMS if report.found_anything else OK
    kinds = [{"kind": kind, **asdict(c)} for kind, c in report.by_kind().items()]
    print(format_table(kinds, ("kind", "recordings", "listed", "already_archived", "newly_queued", "failed",
                               "not_ready", "mismatches")))
    failed = [{"room": r.room, "kind": kind, "error": error} for r in report.rooms for kind, error in r.errors.items()]
    if report.discovery is not None and report.discovery.error:
        failed.insert(0, {"room": "(room list)", "kind": "-", "error": report.discovery.error})
    if failed:
        print(format_table(failed, ("room", "kind", "error")))
    print(report.summary())
    return FOUND_PROBLEMS if report.found_anything else OK


def cmd_prune(args: argparse.Namespace) -> int:
    from archiver.maintenance.retention import RetentionOff, failures, prune
    from archiver.videosdk.api import VideoSDKClient

    settings = settings_of(args)
    runtime = Runtime.create(settings)
    try:
        if args.dry_run:
            decisions = prune(runtime.ledger, settings, None, dry_run=True)
        else:
            with VideoSDKClient.from_settings(settings) as client:
                decisions = prune(runtime.ledger, settings, client)
    except RetentionOff as exc:
        print(f"archiver prune: {exc}", file=sys.stderr)
        return USAGE
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d.action] = counts.get(d.action, 0) + 1
    summary = ("dry run, nothing deleted: " if args.dry_run else "") + \
        (", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "no recordings awaiting deletion")
    _print(args, [d.to_json() for d in decisions], [d.to_json() for d in decisions],
           ("kind", "recording_id", "meeting_id", "files", "action", "reason"), summary)
    return FOUND_PROBLEMS if failures(decisions) else OK


def register(verbs: Any) -> None:
    verify = verbs.add_parser(
        "verify", help="check that succeeded copies still exist with the recorded size and checksum",
        description="For each succeeded copy changed in the window, look at the object in its destination and "
                    "compare size (and sha256 when the object carries one) with the ledger; --deep reads it back "
                    "and hashes it. Records verified_at, or an error (verify_missing, verify_mismatch). "
                    "Exit 1 if any copy is missing, different or could not be checked.")
    verify.add_argument("--since", type=since, default="24h",
                        help="copies that finished since, e.g. 24h (default), 7d, 2026-11-01")
    verify.add_argument("--deep", action="store_true", help="read every object back and hash it (slow, costs egress)")
    verify.add_argument("--json", action="store_true", help="print a JSON array")
    verify.set_defaults(func=cmd_verify)

    reconcile = verbs.add_parser(
        "reconcile", help="archive recordings of every kind that VideoSDK has and no webhook announced",
        description="List every recording kind (room, participant, track, merge, composite, transcoding, "
                    "transcript) of every room seen in the ledger in the window, of the rooms VideoSDK lists "
                    "(GET /v2/rooms, created or updated in the window), of [videosdk] rooms and of --room; "
                    "archive files the ledger lacks, fill in sizes and recording ids, flag copies whose size "
                    "differs from VideoSDK's. Exit 1 if anything new or mismatched was found or anything failed; "
                    "an authentication failure stops the run at once.")
    reconcile.add_argument("--since", type=since, default=None,
                           help="the window, e.g. 48h, 7d (default: [reconcile] window_hours)")
    reconcile.add_argument("--room", action="append", default=[], metavar="ID", help="also this room (repeatable)")
    reconcile.add_argument("--kind", action="append", choices=[str(k) for k in KINDS], default=[],
                           metavar="KIND", help="only this recording kind (repeatable): "
                                                + ", ".join(map(str, KINDS)))
    reconcile.add_argument("--no-room-list", action="store_true",
                           help="do not page through GET /v2/rooms (only ledger, configured and --room rooms)")
    reconcile.add_argument("--json", action="store_true", help="print a JSON object")
    reconcile.set_defaults(func=cmd_reconcile)

    prune = verbs.add_parser(
        "prune", help="delete recordings from VideoSDK once every copy is verified ([retention])",
        description="Needs [retention] delete_from_videosdk = \"after-verified\" (exit 2 otherwise). Deletes a "
                    "room, participant, track or composite recording from VideoSDK only when every file of it has, "
                    "in every destination, a succeeded, verified, unflagged copy of the right size, and VideoSDK "
                    "lists no file of it the ledger lacks; records every deletion. Exit 1 if a deletion failed.")
    prune.add_argument("--dry-run", action="store_true",
                       help="print what would be deleted, judged on the ledger alone; call and delete nothing")
    prune.add_argument("--json", action="store_true", help="print a JSON array")
    prune.set_defaults(func=cmd_prune)
