"""checklist templates per tier, the confidentiality steps of a handover

Issue 16 point 4: each client tier's checklist is configurable (checklist_template; a tier without a row uses the
default), sign-off waits for the required entries, and a handover records its confidentiality steps (NDA reminder,
company data returned, non-compete notice) in handover.confidentiality.

Revision ID: 9b2d4f6a8c13
Revises: 5b0d7e3a9c14
Create Date: 2026-12-04 02:40:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import app.core.db


revision: str = '9b2d4f6a8c13'
down_revision: str | Sequence[str] | None = '5b0d7e3a9c14'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'checklist_template',
        sa.Column('tier', sa.String(length=20), nullable=False),
        sa.Column('entries', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('updated_by', sa.String(length=300), nullable=False),
        sa.Column('updated_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('tier'),
    )
    with op.batch_alter_table('handover') as batch_op:
        batch_op.add_column(
            sa.Column(
                'confidentiality',
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('handover') as batch_op:
        batch_op.drop_column('confidentiality')
    op.drop_table('checklist_template')
