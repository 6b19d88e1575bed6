"""retention: recording_files.deleted_from_videosdk_at and the deletions table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table in place beyond ADD COLUMN; env.py turns batch on for it.
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_from_videosdk_at', sa.DateTime(timezone=True), nullable=True))

    op.create_table('deletions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.String(length=100), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['file_id'], ['recording_files.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deletions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deletions_file_id'), ['file_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deletions_recording_id'), ['recording_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deletions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deletions_recording_id'))
        batch_op.drop_index(batch_op.f('ix_deletions_file_id'))

    op.drop_table('deletions')
    with op.batch_alter_table('recording_files', schema=None) as batch_op:
        batch_op.drop_column('deleted_from_videosdk_at')
