"""actor columns fit long subjects

Every column that stores an actor (`role:sub` of a token) grows from 200 to 300 characters: the longest
role, ':' and a 255-character `sub` (the OIDC limit, which the token check now enforces). PostgreSQL
refused a longer actor on every write; SQLite stored it silently. On PostgreSQL each column is altered
in place (widening a varchar rewrites no rows); on SQLite each table is rebuilt by batch mode, with
foreign keys switched off around the migration by env.py so that no rebuilt parent loses its children.

Revision ID: 7e1d3c5a9b20
Revises: d72790d5bb8c
Create Date: 2026-12-02 10:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '7e1d3c5a9b20'
down_revision: str | Sequence[str] | None = 'd72790d5bb8c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (column, nullable)
ACTOR_COLUMNS: dict[str, list[tuple[str, bool]]] = {
    'access_grant': [('created_by', False), ('revoked_by', True)],
    'alert': [('resolved_by', True)],
    'audit_entry': [('actor', False)],
    'webhook_endpoint': [('created_by', False)],
    'notification_template': [('updated_by', False)],
    'risk_model_version': [('created_by', False), ('activated_by', True)],
    'handover': [
        ('created_by', False),
        ('approved_by', True),
        ('completed_by', True),
        ('cancelled_by', True),
        ('undone_by', True),
    ],
    'handover_item': [('outgoing_signed_by', True), ('incoming_signed_by', True)],
    'follow_up': [('completed_by', True)],
}


def _resize(old: int, new: int) -> None:
    for table, columns in ACTOR_COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, nullable in columns:
                batch_op.alter_column(
                    column,
                    existing_type=sa.String(length=old),
                    type_=sa.String(length=new),
                    existing_nullable=nullable,
                )


def upgrade() -> None:
    _resize(200, 300)


def downgrade() -> None:
    # Fails on PostgreSQL if an actor longer than 200 characters was stored since: nothing is cut silently.
    _resize(300, 200)
