"""ownership continuity

Issue 15 points 4 and 8: a handover not approved by its effective time hands its leaver's clients to an interim
owner (`handover.interim_owner_id`, `handover.interim_at`: who and when), and the worker's ownership sweeper keeps
a row for every client it repaired (`ownership_repair`, the `handover_ownership_repairs_total` counter).

Revision ID: 8a1f3c5d7e92
Revises: 7c4e1a9d2b58
Create Date: 2026-12-04 01:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import app.core.db


revision: str = '8a1f3c5d7e92'
down_revision: str | Sequence[str] | None = '7c4e1a9d2b58'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('handover', schema=None) as batch_op:
        batch_op.add_column(sa.Column('interim_owner_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('interim_at', app.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_handover_interim_owner_id_employee'), 'employee', ['interim_owner_id'], ['external_id']
        )
    op.create_table(
        'ownership_repair',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('client_id', sa.String(length=100), nullable=False),
        sa.Column('from_owner_id', sa.String(length=100), nullable=False),
        sa.Column('to_owner_id', sa.String(length=100), nullable=False),
        sa.Column('reason', sa.String(length=40), nullable=False),
        sa.Column('repaired_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['client_id'], ['client.external_id'], name=op.f('fk_ownership_repair_client_id_client'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['from_owner_id'], ['employee.external_id'], name=op.f('fk_ownership_repair_from_owner_id_employee')),
        sa.ForeignKeyConstraint(['to_owner_id'], ['employee.external_id'], name=op.f('fk_ownership_repair_to_owner_id_employee')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ownership_repair')),
    )
    with op.batch_alter_table('ownership_repair', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ownership_repair_client_id'), ['client_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ownership_repair', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ownership_repair_client_id'))
    op.drop_table('ownership_repair')
    with op.batch_alter_table('handover', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_handover_interim_owner_id_employee'), type_='foreignkey')
        batch_op.drop_column('interim_at')
        batch_op.drop_column('interim_owner_id')
