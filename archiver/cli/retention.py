"""`archiver prune`: delete recordings from VideoSDK once every copy is verified ([retention])."""

from __future__ import annotations

import click

from archiver.cli.app import FOUND_PROBLEMS, OK, settings, verb
from archiver.cli.common import confirm, emit, fail, open_runtime
from archiver.cli.sync import missing_credentials


@verb("prune", short_help="delete recordings from VideoSDK once every copy is verified",
      help="delete a room, participant, track or composite recording from VideoSDK only when every file "
           "of it has, in every destination, a succeeded, verified, unflagged copy of the right size, and "
           "VideoSDK lists no file of it the ledger lacks; records every deletion. Needs [retention] "
           "delete_from_videosdk = \"after-verified\" (exit 2 otherwise) except for --dry-run. Asks "
           "before deleting unless --yes. Exit 1 if a deletion failed.")
@click.option("--dry-run", is_flag=True, help="print what would be deleted, judged on the ledger alone; call and "
                                              "delete nothing (works while retention is off)")
@click.option("--yes", "-y", is_flag=True, help="do not ask before deleting")
def prune(dry_run: bool, yes: bool) -> int:
    from archiver.maintenance.retention import DELETE, RetentionOff, enabled, failures
    from archiver.maintenance.retention import prune as run_prune
    from archiver.videosdk.api import VideoSDKClient

    current = settings()
    if not dry_run and not enabled(current):
        return fail("retention is off: set [retention] delete_from_videosdk = \"after-verified\" to delete "
                    "recordings from VideoSDK once every copy is verified (`archiver prune --dry-run` previews)")
    runtime = open_runtime(current)
    try:
        if dry_run:
            decisions = run_prune(runtime.ledger, current, None, dry_run=True)
        else:
            plan = [d for d in run_prune(runtime.ledger, current, None, dry_run=True) if d.action == DELETE]
            if plan and (why := missing_credentials(current)):
                return fail(why)
            if plan and (stop := confirm(f"delete {len(plan)} recording(s) from VideoSDK?", yes=yes)) is not None:
                return stop
            with VideoSDKClient.from_settings(current) as client:
                decisions = run_prune(runtime.ledger, current, client)
    except RetentionOff as exc:
        return fail(str(exc))
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d.action] = counts.get(d.action, 0) + 1
    off = "" if enabled(current) else " (retention is off: nothing is deleted until [retention] " \
                                      "delete_from_videosdk = \"after-verified\")"
    summary = ("dry run, nothing deleted: " if dry_run else "") + \
        (", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "no recordings awaiting deletion") + off
    rows = [d.to_json() for d in decisions]
    emit(rows, rows, ("kind", "recording_id", "meeting_id", "files", "action", "reason"), summary)
    return FOUND_PROBLEMS if failures(decisions) else OK


def register(group: click.Group) -> None:
    group.add_command(prune)
