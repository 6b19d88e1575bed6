"""Ledger database maintenance: db upgrade (schema to this version), db copy (to another database)."""

from __future__ import annotations

import json

import click

from archiver.cli.app import OK, settings, state, verb
from archiver.ledger.database import create_ledger_engine, upgrade
from archiver.observability.redaction import mask_url
from archiver.preflight import check_ledger


@verb("upgrade", help="create or migrate the ledger schema to this version")
def db_upgrade() -> int:
    current = settings()
    check_ledger(current, create_embedded=False, require_current=False)  # one line if it cannot be opened
    before, after = upgrade(create_ledger_engine(current.database_url))
    if state().json:
        click.echo(json.dumps({"before": before, "after": after}))
    else:
        click.echo(f"ledger schema: {before or 'empty'} -> {after}")
    return OK


@verb("copy", help="copy the whole ledger into a new, empty database (e.g. SQLite to PostgreSQL): every "
                   "table with its ids; stop every process first (README runbook: Move to PostgreSQL and Redis)")
@click.option("--to", "target", required=True, metavar="URL", help="the new ledger, e.g. postgresql+psycopg://...")
@click.option("--from", "source", metavar="URL", help="the ledger to copy (default: database_url)")
def db_copy(target: str, source: str | None) -> int:
    from archiver.ledger.transfer import copy_ledger

    origin = source or settings().database_url
    quiet = state().json
    copied = copy_ledger(origin, target, progress=None if quiet else lambda t: click.echo(f"{t.table}: {t.rows} rows"))
    if quiet:
        click.echo(json.dumps({"from": mask_url(origin), "to": mask_url(target),
                               "tables": {t.table: t.rows for t in copied}}))
    else:
        click.echo(f"copied {sum(t.rows for t in copied)} rows from {mask_url(origin)} to {mask_url(target)}; "
                   "now set database_url (ARCHIVER_DATABASE_URL) to the new ledger")
    return OK


def register(group: click.Group) -> None:
    @group.group("db", help="ledger database maintenance: upgrade, copy")
    def db() -> None:
        pass

    db.add_command(db_upgrade)
    db.add_command(db_copy)
