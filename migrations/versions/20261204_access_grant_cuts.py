"""access grant cuts: every handover's cut of a grant, so that lifting one gives back only what the others allow

A grant cut by one handover (a leaver's exit) could not be cut again by another (the same person's exit moved
earlier by a later handover): it kept the first end past the new exit, and undoing the first gave back the grant's
own end past the second. Each cut is now a row; the grant's window ends at the earliest of its own end (cut_from)
and every standing cut. Existing cuts become rows.

Revision ID: 3e7a1c5b9d24
Revises: 3c7e1a9d5f20
Create Date: 2026-12-04 20:15:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import app.core.db


revision: str = '3e7a1c5b9d24'
down_revision: str | Sequence[str] | None = '3c7e1a9d5f20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'access_grant_cut',
        sa.Column('grant_id', sa.Integer(), nullable=False),
        sa.Column('handover_id', sa.Integer(), nullable=False),
        sa.Column('cut_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['grant_id'], ['access_grant.id'], name=op.f('fk_access_grant_cut_grant_id_access_grant'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(
            ['handover_id'], ['handover.id'], name=op.f('fk_access_grant_cut_handover_id_handover')
        ),
        sa.PrimaryKeyConstraint('grant_id', 'handover_id', name=op.f('pk_access_grant_cut')),
    )
    with op.batch_alter_table('access_grant_cut', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_grant_cut_handover_id'), ['handover_id'], unique=False)
    op.execute(
        "INSERT INTO access_grant_cut (grant_id, handover_id, cut_at) "
        "SELECT id, cut_by_handover_id, valid_until FROM access_grant "
        "WHERE cut_by_handover_id IS NOT NULL AND valid_until IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table('access_grant_cut', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_grant_cut_handover_id'))
    op.drop_table('access_grant_cut')
