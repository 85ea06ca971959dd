"""delivery lanes: a circuit breaker per webhook endpoint

Issue 17 point 4: after N failed attempts in a row an endpoint is paused (exponential backoff); the state lives
on the endpoint's row so that every worker skips a paused endpoint. Existing endpoints start closed (0, 0, null).

Revision ID: 3d8b6f2a1c47
Revises: 3b7d9e2f4a61
Create Date: 2026-12-02 19:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import app.core.db


revision: str = '3d8b6f2a1c47'
down_revision: str | Sequence[str] | None = '3b7d9e2f4a61'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_streak', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('pauses', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('paused_until', app.core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.drop_column('paused_until')
        batch_op.drop_column('pauses')
        batch_op.drop_column('failure_streak')
