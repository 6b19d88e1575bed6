"""account binding: recording_files.confirmed_at; copy_jobs indexed by destination and key

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
    # Files whose recording id came from VideoSDK's REST API (reconcile, a lookup) were listed by it,
    # asked with our credentials: they are confirmed. Webhook files are confirmed by the next copy.
    events = sa.table('events', sa.column('id', sa.Integer), sa.column('source', sa.String))
    files = sa.table('recording_files', sa.column('event_id', sa.Integer), sa.column('received_at', sa.DateTime),
                     sa.column('confirmed_at', sa.DateTime))
    api = sa.select(events.c.id).where(events.c.source.in_(('reconcile', 'lookup', 'merge-lookup')))
    op.get_bind().execute(files.update().where(files.c.event_id.in_(api)).values(confirmed_at=files.c.received_at))
    with op.batch_alter_table('copy_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_copy_jobs_destination_key', ['destination', 'object_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('copy_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_copy_jobs_destination_key')
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.drop_column('confirmed_at')
