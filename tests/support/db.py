"""Reading the database in tests: whole tables (to prove a refusal wrote nothing) and a few counts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.core.db import Database
from app.directory.models import Employee
from app.metadata import metadata
from app.transfer.models import Handover

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(db: Database, tables: Iterable[str]) -> Snapshot:
    """Every row of these tables, in primary-key order."""
    out: Snapshot = {}
    with db.engine.connect() as conn:
        for name in tables:
            table = metadata.tables[name]
            out[name] = [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
    return out


def count(db: Database, table: str) -> int:
    with db.session(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(metadata.tables[table])) or 0)


def audit_count(db: Database, action: str) -> int:
    with db.session(write=False) as s:
        return int(s.scalar(select(func.count()).where(AuditEntry.action == action)) or 0)


def handovers(db: Database, leaver: str = "e0") -> list[Handover]:
    with db.session(write=False) as session:
        return list(session.scalars(select(Handover).where(Handover.leaver_id == leaver).order_by(Handover.id)))


def employee(db: Database, external_id: str) -> Employee | None:
    with db.session(write=False) as session:
        return session.get(Employee, external_id)
