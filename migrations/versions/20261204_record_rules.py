"""record rules: per-handover record rules and overrides, and steps of a record's moves

Issue 16 point 2: `handover.record_rules` (the settings' defaults overridden per handover) and
`handover_record_override` (one record's fate set by hand). Point 3/4: record_move gets `step` in its key, so a
record taken over by the interim owner and moved on to the successor by a late approval keeps both moves and undo
walks them back exactly, and `attendee_id` (a meeting kept by its owner within the transition period).

Revision ID: 3c7e1a9d5f20
Revises: 9b2d4f6a8c13
Create Date: 2026-12-04 20:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import app.core.db


revision: str = "3c7e1a9d5f20"
down_revision: str | Sequence[str] | None = "9b2d4f6a8c13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handover") as batch:
        batch.add_column(
            sa.Column(
                "record_rules",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    op.create_table(
        "handover_record_override",
        sa.Column("handover_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("to_owner_id", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=300), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["handover_id"],
            ["handover.id"],
            name=op.f("fk_handover_record_override_handover_id_handover"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["to_owner_id"], ["employee.external_id"], name=op.f("fk_handover_record_override_to_owner_id_employee")
        ),
        sa.PrimaryKeyConstraint("handover_id", "kind", "external_id", name=op.f("pk_handover_record_override")),
    )
    with op.batch_alter_table("record_move") as batch:
        batch.add_column(sa.Column("step", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("attendee_id", sa.String(length=100), nullable=True))
        batch.drop_constraint("pk_record_move", type_="primary")
        batch.create_primary_key("pk_record_move", ["handover_id", "kind", "external_id", "step"])


def downgrade() -> None:
    op.execute("DELETE FROM record_move WHERE step > 1")
    with op.batch_alter_table("record_move") as batch:
        batch.drop_constraint("pk_record_move", type_="primary")
        batch.create_primary_key("pk_record_move", ["handover_id", "kind", "external_id"])
        batch.drop_column("attendee_id")
        batch.drop_column("step")
    op.drop_table("handover_record_override")
    with op.batch_alter_table("handover") as batch:
        batch.drop_column("record_rules")
