"""handover seats: the account-team seats a leaver loses at execution

Issue 15 point 6: at the effective time the leaver leaves every client's account team; each seat is kept on the
handover (handover_seat) so that undo gives it back exactly.

Revision ID: 7c4e1a9d2b58
Revises: 7c4e1a9d2b60
Create Date: 2026-12-04 01:45:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import app.core.db


revision: str = '7c4e1a9d2b58'
down_revision: str | Sequence[str] | None = '7c4e1a9d2b60'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'handover_seat',
        sa.Column('handover_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.String(length=100), nullable=False),
        sa.Column('employee_id', sa.String(length=100), nullable=False),
        sa.Column('role', sa.String(length=100), nullable=False),
        sa.Column('removed_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('restored_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['client.external_id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['employee_id'], ['employee.external_id']),
        sa.ForeignKeyConstraint(['handover_id'], ['handover.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('handover_id', 'client_id'),
    )


def downgrade() -> None:
    op.drop_table('handover_seat')
