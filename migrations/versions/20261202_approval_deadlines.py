"""approval deadlines

Issue 15 point 3: a handover's approval deadline (default 3 working days before the effective time) and the
reminders the worker sends from then on. Existing handovers get no deadline here: the worker gives each one
still awaiting approval its deadline on its first pass (app/transfer/deadlines.py), from the current setting.

Revision ID: 3b7d2f9c41e6
Revises: 5e1c0a7d9b24
Create Date: 2026-12-02 19:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import app.core.db


revision: str = '3b7d2f9c41e6'
down_revision: str | Sequence[str] | None = '5e1c0a7d9b24'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('handover', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approval_deadline', app.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reminders_sent', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('last_reminded_at', app.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_handover_approval_deadline'), ['approval_deadline'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('handover', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_handover_approval_deadline'))
        batch_op.drop_column('last_reminded_at')
        batch_op.drop_column('reminders_sent')
        batch_op.drop_column('approval_deadline')
