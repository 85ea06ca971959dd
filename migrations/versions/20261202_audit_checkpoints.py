"""audit checkpoints

Signed checkpoints of the audit chain's head (issue 18): each row says "the entry at seq has this hash", signed
with an Ed25519 key the database does not hold, so a database writer can no longer truncate the log or recompute
its hashes before a checkpoint undetected. Existing logs start with none; the worker signs the first one.

Revision ID: 5e1c0a7d9b24
Revises: 7e1d3c5a9b20
Create Date: 2026-12-02 10:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import app.core.db


revision: str = '5e1c0a7d9b24'
down_revision: str | Sequence[str] | None = '7e1d3c5a9b20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_checkpoint',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_count', sa.BigInteger(), nullable=False),
    sa.Column('taken_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('verified', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=50), nullable=False),
    sa.Column('signature', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoint'))
    )
    with op.batch_alter_table('audit_checkpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_checkpoint_seq'), ['seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_checkpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_checkpoint_seq'))
    op.drop_table('audit_checkpoint')
