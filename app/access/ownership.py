"""Grants that keep a client's ownership continuous (issue 15): interim grants the workflow lays ahead for a
handover not approved by its effective time, and the grants the ownership sweeper gives a repaired owner.

Access knows no handover: the workflow names the handover ids and the reason that marks its grants.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, exists, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from app.access import cuts
from app.access.models import AccessGrant
from app.core.bulk import chunks


def add_grants(
    session: Session,
    *,
    employee: str,
    clients: Any,
    level: str,
    valid_from: dt.datetime,
    reason: str,
    handover_id: int | None,
    actor: str,
    now: dt.datetime,
) -> None:
    """`level` grants from `valid_from`, open-ended, for `employee` on every client `clients` (a select of client
    ids) yields, unless the employee already holds one of that level and reason there that has not ended or been
    revoked: one INSERT … SELECT."""
    g = AccessGrant
    source = clients.subquery()
    client_id = source.c[0]
    held = exists().where(
        g.employee_id == employee,
        g.client_id == client_id,
        g.level == level,
        g.reason == reason,
        g.revoked_at.is_(None),
        or_(g.valid_until.is_(None), g.valid_until > valid_from),
        (g.handover_id == handover_id) if handover_id is not None else g.handover_id.is_(None),
    )
    at = g.valid_from.type
    session.execute(
        insert(g).from_select(
            [
                "employee_id",
                "client_id",
                "level",
                "valid_from",
                "valid_until",
                "reason",
                "handover_id",
                "created_by",
                "created_at",
            ],
            select(
                literal(employee),
                client_id,
                literal(level),
                literal(valid_from, at),
                literal(None, at),
                literal(reason),
                literal(handover_id, g.handover_id.type),
                literal(actor),
                literal(now, at),
            ).where(~held),
        )
    )


def end_grants(
    session: Session,
    handover_ids: Sequence[int],
    *,
    reason: str,
    now: dt.datetime,
    actor: str,
    keep_employee: str | None = None,
    started: bool = True,
) -> None:
    """These handovers' grants with this reason stop now: one not started yet is revoked (it never held), one that
    holds ends now (it stays in history; not with `started=False`). With `keep_employee`, that employee's grants
    are kept."""
    if not handover_ids:
        return
    g = AccessGrant
    for part in chunks(list(handover_ids), 5000):
        mine = [g.handover_id.in_(part), g.reason == reason, g.revoked_at.is_(None)]
        if keep_employee is not None:
            mine.append(g.employee_id != keep_employee)
        session.execute(
            update(g)
            .where(*mine, g.valid_from > now)
            .values(revoked_at=now, revoked_by=actor)
            .execution_options(synchronize_session=False)
        )
        if not started:
            continue
        session.execute(
            update(g)
            .where(*mine, g.valid_from <= now, cuts.outlives(now))
            .values(**cuts.end_values(now))
            .execution_options(synchronize_session=False)
        )


def laid_on(handover_id: int, reason: str) -> Any:
    """The clients the workflow laid grants with `reason` on for the handover, ended or not (a select of client
    ids): an interim owner holds for the leaver only the clients its takeover laid a grant on, not ones that became
    theirs another way (an earlier handover of the same leaver gave them a client, its former owner that leaver)."""
    g = AccessGrant
    return select(g.client_id).where(g.handover_id == handover_id, g.reason == reason)


def holding(at: Any) -> Any:
    """A grant that holds at `at` (the access decision's window)."""
    g = AccessGrant
    return and_(
        g.valid_from <= at,
        or_(g.valid_until.is_(None), g.valid_until > at),
        or_(g.revoked_at.is_(None), g.revoked_at > at),
    )
