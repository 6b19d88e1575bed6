"""every recording kind: file identity by name, file ids, kinds, customer storage, lookups, copy pieces

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

import json
import posixpath

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_TRACK_KINDS = ("audio", "video", "screen_audio", "screen_video")


def upgrade() -> None:
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_name', sa.String(length=1024), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('videosdk_file_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('recording_kind', sa.String(length=20), nullable=False,
                                      server_default='room'))
        batch_op.add_column(sa.Column('storage', sa.String(length=20), nullable=False, server_default='videosdk'))
        batch_op.add_column(sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('source_url', existing_type=sa.Text(), nullable=True)
        batch_op.create_index(batch_op.f('ix_recording_files_videosdk_file_id'), ['videosdk_file_id'], unique=False)

    # Existing rows: the identity is the base name of the path they were stored with; the kind follows
    # from what the old schema recorded (participant id, track kind, "merged").
    files = sa.table('recording_files', sa.column('id', sa.Integer), sa.column('file_path', sa.String),
                     sa.column('participant_id', sa.String), sa.column('kind', sa.String),
                     sa.column('file_name', sa.String), sa.column('recording_kind', sa.String))
    conn = op.get_bind()
    for row in conn.execute(sa.select(files.c.id, files.c.file_path, files.c.participant_id, files.c.kind)):
        kind = ('merge' if row.kind == 'merged' else 'track' if row.kind in _TRACK_KINDS
                else 'participant' if row.participant_id else 'room')
        conn.execute(files.update().where(files.c.id == row.id).values(
            file_name=posixpath.basename(row.file_path) or row.file_path, recording_kind=kind))

    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.drop_constraint('uq_recording_file', type_='unique')
        batch_op.create_unique_constraint('uq_recording_file_name',
                                          ['meeting_id', 'session_id', 'participant_id', 'kind', 'file_name'])

    op.create_table('lookups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('recording_kind', sa.String(length=20), nullable=False),
    sa.Column('resource_id', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error_code', sa.String(length=100), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('recording_kind', 'resource_id', name='uq_lookup')
    )
    with op.batch_alter_table('lookups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lookups_event_id'), ['event_id'], unique=False)
        batch_op.create_index('ix_lookups_state_updated', ['state', 'updated_at'], unique=False)
    _lookups_for_recorded_merges(conn)

    op.create_table('copy_pieces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('object_key', sa.String(length=1024), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['copy_jobs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'path', name='uq_copy_piece')
    )
    with op.batch_alter_table('copy_pieces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_copy_pieces_job_id'), ['job_id'], unique=False)


def _lookups_for_recorded_merges(conn: sa.Connection) -> None:
    """Before this revision a merge lookup lived only as a broker message: one lost was never started
    again. Every merge-recording-completed event gets its durable lookup now: done when its merged file
    is in the ledger, pending otherwise (the sweeper then starts it)."""
    events = sa.table('events', sa.column('id', sa.Integer), sa.column('webhook_type', sa.String),
                      sa.column('body', sa.Text), sa.column('received_at', sa.DateTime(timezone=True)))
    files = sa.table('recording_files', sa.column('recording_id', sa.String))
    lookups = sa.table('lookups', sa.column('event_id', sa.Integer), sa.column('recording_kind', sa.String),
                       sa.column('resource_id', sa.String), sa.column('state', sa.String),
                       sa.column('attempts', sa.Integer), sa.column('created_at', sa.DateTime(timezone=True)),
                       sa.column('updated_at', sa.DateTime(timezone=True)))
    seen: set[str] = set()
    query = sa.select(events.c.id, events.c.body, events.c.received_at).where(
        events.c.webhook_type == 'merge-recording-completed').order_by(events.c.id)
    for row in conn.execute(query).all():
        try:
            merge_id = json.loads(row.body)['data']['id']
        except (ValueError, KeyError, TypeError):
            continue  # a lookup's own record of what it found, not a webhook body
        if not isinstance(merge_id, str) or not merge_id or merge_id in seen:
            continue
        seen.add(merge_id)
        found = conn.execute(sa.select(files.c.recording_id).where(files.c.recording_id == merge_id)).first()
        conn.execute(lookups.insert().values(event_id=row.id, recording_kind='merge', resource_id=merge_id,
                                             state='done' if found else 'pending', attempts=0,
                                             created_at=row.received_at, updated_at=row.received_at))


def downgrade() -> None:
    op.drop_table('copy_pieces')
    op.drop_table('lookups')
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.drop_constraint('uq_recording_file_name', type_='unique')
        batch_op.create_unique_constraint('uq_recording_file',
                                          ['meeting_id', 'session_id', 'participant_id', 'kind', 'file_path'])
        batch_op.drop_index(batch_op.f('ix_recording_files_videosdk_file_id'))
        batch_op.drop_column('recorded_at')
        batch_op.drop_column('storage')
        batch_op.drop_column('recording_kind')
        batch_op.drop_column('videosdk_file_id')
        batch_op.drop_column('file_name')
