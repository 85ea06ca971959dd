"""leave delegations and role changes

Issue 15 point 7: a leave (`reason: leave`) is a delegation, not an exit. The handover keeps when the person
comes back (`return_at`) and who holds their clients meanwhile (`delegate_id`); the person's own access is
suspended for [effective_at, return_at) by an `access_suspension` row the access decision reads (a stored window,
like a grant's). A scheduled leave is an open handover: the one-open-handover-per-person index covers the new
status `scheduled`.

Revision ID: 7c4e1a9d2b60
Revises: 3d8b6f2a1c47
Create Date: 2026-12-04 01:45:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import app.core.db


revision: str = '7c4e1a9d2b60'
down_revision: str | Sequence[str] | None = '3d8b6f2a1c47'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_OPEN = "status IN ('draft', 'planned', 'approved', 'executed')"
NEW_OPEN = "status IN ('draft', 'planned', 'approved', 'executed', 'scheduled')"
ACTOR = 300  # app.core.db.ACTOR_LENGTH when this revision was written


def _open_index(batch_op: object, where: str) -> None:
    batch_op.create_index(  # type: ignore[attr-defined]
        'uq_handover_open_leaver',
        ['leaver_id'],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table('handover', schema=None) as batch_op:
        batch_op.add_column(sa.Column('return_at', app.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('delegate_id', sa.String(length=100), nullable=True))
        batch_op.create_foreign_key(
            'fk_handover_delegate_id_employee', 'employee', ['delegate_id'], ['external_id']
        )
        batch_op.drop_index('uq_handover_open_leaver', sqlite_where=sa.text(OLD_OPEN), postgresql_where=sa.text(OLD_OPEN))
        _open_index(batch_op, NEW_OPEN)
    op.create_table(
        'access_suspension',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('employee_id', sa.String(length=100), nullable=False),
        sa.Column('valid_from', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('valid_until', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('revoked_by', sa.String(length=ACTOR), nullable=True),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('handover_id', sa.Integer(), nullable=True),
        sa.Column('created_by', sa.String(length=ACTOR), nullable=False),
        sa.Column('created_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['employee_id'], ['employee.external_id'], name=op.f('fk_access_suspension_employee_id_employee')),
        sa.ForeignKeyConstraint(['handover_id'], ['handover.id'], name=op.f('fk_access_suspension_handover_id_handover')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_access_suspension')),
    )
    with op.batch_alter_table('access_suspension', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_suspension_employee_id'), ['employee_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_suspension_handover_id'), ['handover_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('access_suspension', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_suspension_handover_id'))
        batch_op.drop_index(batch_op.f('ix_access_suspension_employee_id'))
    op.drop_table('access_suspension')
    with op.batch_alter_table('handover', schema=None) as batch_op:
        batch_op.drop_index('uq_handover_open_leaver', sqlite_where=sa.text(NEW_OPEN), postgresql_where=sa.text(NEW_OPEN))
        _open_index(batch_op, OLD_OPEN)
        batch_op.drop_constraint('fk_handover_delegate_id_employee', type_='foreignkey')
        batch_op.drop_column('delegate_id')
        batch_op.drop_column('return_at')
