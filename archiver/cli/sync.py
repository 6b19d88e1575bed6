"""Verbs that compare the ledger with the world: verify (copies), reconcile (VideoSDK), prune (retention)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from archiver.cli.common import FOUND_PROBLEMS, OK, USAGE, format_table, settings_of, since
from archiver.destinations import require_secrets
from archiver.ledger.store import utcnow
from archiver.runtime import Runtime


def _print(args: argparse.Namespace, data: Any, rows: list[dict[str, Any]], columns: tuple[str, ...],
           summary: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    if rows:
        print(format_table(rows, columns))
    print(summary)


def cmd_verify(args: argparse.Namespace) -> int:
    from archiver.verification import problems, verify_copies

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
    from kombu.exceptions import OperationalError

    from archiver.celery_app import Publisher, create_app
    from archiver.reconcile import reconcile
    from archiver.videosdk_api import VideoSDKClient

    settings = settings_of(args)
    runtime = Runtime.create(settings)
    window = args.since or utcnow() - timedelta(hours=settings.reconcile.window_hours)
    publisher = Publisher(create_app(settings))
    try:
        with VideoSDKClient.from_settings(settings) as client:
            report = reconcile(runtime.ledger, settings, client, publisher.copies, since=window, rooms=args.room)
    except OperationalError as exc:  # publishing happens inside the ledger transaction: nothing was recorded
        print(f"archiver reconcile: the broker is unreachable ({exc}); nothing new was recorded", file=sys.stderr)
        return FOUND_PROBLEMS
    data = report.to_json()
    rows = [{"room": r.room, "recordings": r.recordings, "new_files": r.new_files, "jobs": r.jobs_created,
             "mismatches": r.mismatches, "error": r.error} for r in report.rooms]
    summary = (f"rooms scanned {data['rooms_scanned']}, recordings seen {data['recordings_seen']}, "
               f"files new {data['files_new']}, jobs created {data['jobs_created']}, "
               f"mismatches {data['mismatches']}, rooms failed {data['rooms_failed']}")
    _print(args, data, rows, ("room", "recordings", "new_files", "jobs", "mismatches", "error"), summary)
    return FOUND_PROBLEMS if report.found_anything else OK


def cmd_prune(args: argparse.Namespace) -> int:
    from archiver.retention import RetentionOff, failures, prune
    from archiver.videosdk_api import VideoSDKClient

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
           ("recording_id", "meeting_id", "file_path", "action", "reason"), summary)
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
        "reconcile", help="archive recordings VideoSDK has that no webhook announced",
        description="List the recordings of every room seen in the ledger in the window, of [videosdk] rooms and "
                    "of --room; archive files the ledger lacks, fill in sizes and recording ids, flag copies whose "
                    "size differs from VideoSDK's. Exit 1 if anything new or mismatched was found or a room failed.")
    reconcile.add_argument("--since", type=since, default=None,
                           help="rooms seen since, e.g. 48h, 7d (default: [reconcile] window_hours)")
    reconcile.add_argument("--room", action="append", default=[], metavar="ID", help="also this room (repeatable)")
    reconcile.add_argument("--json", action="store_true", help="print a JSON object")
    reconcile.set_defaults(func=cmd_reconcile)

    prune = verbs.add_parser(
        "prune", help="delete recordings from VideoSDK once every copy is verified ([retention])",
        description="Needs [retention] delete_from_videosdk = \"after-verified\" (exit 2 otherwise). Deletes a "
                    "room recording from VideoSDK only when every destination has a succeeded, verified, "
                    "unflagged copy of the right size; records every deletion. Exit 1 if a deletion failed.")
    prune.add_argument("--dry-run", action="store_true", help="print what would be deleted; delete nothing")
    prune.add_argument("--json", action="store_true", help="print a JSON array")
    prune.set_defaults(func=cmd_prune)
