"""book records: the records the CRM holds beside its clients, and the moves a handover made of them

Issue 16 points 1 and 3: a generic record (deal, task, case, …) keyed by (kind, external_id), owned by an employee
and optionally a client's; record_move keeps which open records a handover's execution gave to the client's new
owner, so that undo gives each back.

Revision ID: 5b0d7e3a9c14
Revises: 8a1f3c5d7e92
Create Date: 2026-12-04 02:40:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import app.core.db


revision: str = '5b0d7e3a9c14'
down_revision: str | Sequence[str] | None = '8a1f3c5d7e92'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'record',
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('external_id', sa.String(length=100), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('client_id', sa.String(length=100), nullable=True),
        sa.Column('owner_id', sa.String(length=100), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('stage', sa.String(length=100), nullable=True),
        sa.Column('due_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('amount', sa.Numeric(precision=16, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=True),
        sa.Column('progress', sa.Integer(), nullable=True),
        sa.Column('url', sa.String(length=2000), nullable=True),
        sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.Column('created_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('deal', 'task', 'case', 'meeting', 'contract', 'invoice', 'project', 'automation', 'other')",
            name=op.f('ck_record_kind'),
        ),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f('ck_record_status')),
        sa.CheckConstraint(
            'progress IS NULL OR (progress >= 0 AND progress <= 100)', name=op.f('ck_record_progress')
        ),
        sa.CheckConstraint('amount IS NULL OR currency IS NOT NULL', name=op.f('ck_record_amount_currency')),
        sa.ForeignKeyConstraint(['client_id'], ['client.external_id'], name=op.f('fk_record_client_id_client')),
        sa.ForeignKeyConstraint(['owner_id'], ['employee.external_id'], name=op.f('fk_record_owner_id_employee')),
        sa.PrimaryKeyConstraint('kind', 'external_id', name=op.f('pk_record')),
    )
    op.create_index(op.f('ix_record_client_id'), 'record', ['client_id'], unique=False)
    op.create_index('ix_record_owner_status', 'record', ['owner_id', 'status'], unique=False)
    op.create_table(
        'record_move',
        sa.Column('handover_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('external_id', sa.String(length=100), nullable=False),
        sa.Column('from_owner_id', sa.String(length=100), nullable=False),
        sa.Column('to_owner_id', sa.String(length=100), nullable=False),
        sa.Column('moved_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('restored_at', app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('handover_id', 'kind', 'external_id', name=op.f('pk_record_move')),
    )


def downgrade() -> None:
    op.drop_table('record_move')
    op.drop_index('ix_record_owner_status', table_name='record')
    op.drop_index(op.f('ix_record_client_id'), table_name='record')
    op.drop_table('record')
