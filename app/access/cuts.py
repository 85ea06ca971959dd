"""Handovers cutting grants short, several at a time.

A handover cuts a person's grants at its effective time (their exit, or a role change on the clients that move).
One grant can be cut by several handovers: a departed leaver's exit moved earlier by a later handover, a receiver's
own exit, a cut that lands on a grant an earlier handover had cut. Each cut is a row (`AccessGrantCut`); the grant
keeps its own end in `cut_from` while any cut stands, names the earliest cut in `cut_by_handover_id`, and its
window ends at the earliest of its own end and every standing cut. Lifting one cut (cancel, undo, reschedule)
gives back what the others and its own end still allow, never more; an end set directly meanwhile (the CRM moved
the client, the grant's handover ended it) is the grant's own end from then on (`end_values`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, delete, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from app.access.models import AccessGrant, AccessGrantCut


def own_end() -> Any:
    """The grant's end before any standing cut (NULL: open-ended)."""
    g = AccessGrant
    return case((g.cut_by_handover_id.is_not(None), g.cut_from), else_=g.valid_until)


def _earliest_cut() -> Any:
    k = AccessGrantCut
    return select(func.min(k.cut_at)).where(k.grant_id == AccessGrant.id).scalar_subquery()


def _earlier(a: Any, b: Any) -> Any:
    """The earlier of two ends, NULL being open-ended (later than any time)."""
    return case((a.is_(None), b), (b.is_(None), a), (a < b, a), else_=b)


def outlives(at: Any) -> Any:
    """The grant's own end is later than `at` (or open): ending it at `at` changes something."""
    end = own_end()
    return or_(end.is_(None), end > at)


def end_values(at: Any) -> dict[str, Any]:
    """SET clauses ending grants at `at` directly (not a cut): the window ends there at the latest, and so does the
    own end a lifted cut would give back."""
    g = AccessGrant
    return {
        "valid_until": case((or_(g.valid_until.is_(None), g.valid_until > at), at), else_=g.valid_until),
        "cut_from": case(
            (and_(g.cut_by_handover_id.is_not(None), or_(g.cut_from.is_(None), g.cut_from > at)), at),
            else_=g.cut_from,
        ),
    }


def own_end_values(end: Any) -> dict[str, Any]:
    """SET clauses giving grants a new own end (a window that moved): standing cuts still end it earlier."""
    g = AccessGrant
    cut = g.cut_by_handover_id.is_not(None)
    return {
        "cut_from": case((cut, end), else_=g.cut_from),
        "valid_until": case((cut, _earlier(literal(end, g.valid_until.type), _earliest_cut())), else_=end),
    }


def cut(session: Session, rows: Any, *, by_client: bool = False) -> None:
    """Every (handover_id, employee_id, effective_at[, client_id]) row of `rows` (a subquery) cuts that employee's
    grants (on that client, `by_client`) at the effective time: each grant not revoked by then whose own end is
    later gets the handover's cut (once per handover), and its window ends at its earliest cut. A grant revoked
    after the effective time is cut too: its window held that time, and a lifted cut gives its own end back."""
    g, k = AccessGrant, AccessGrantCut
    at = rows.c.effective_at
    match = [g.employee_id == rows.c.employee_id, or_(g.revoked_at.is_(None), g.revoked_at > at), outlives(at)]
    if by_client:
        match.append(g.client_id == rows.c.client_id)
    fresh = select(g.id, rows.c.handover_id, rows.c.effective_at).where(
        *match, ~exists().where(k.grant_id == g.id, k.handover_id == rows.c.handover_id)
    )
    session.execute(insert(k).from_select(["grant_id", "handover_id", "cut_at"], fresh.distinct()))
    earliest = _earliest_cut()
    first = select(k.handover_id).where(k.grant_id == g.id).order_by(k.cut_at, k.handover_id).limit(1).scalar_subquery()
    session.execute(
        update(g)
        .where(exists().where(k.grant_id == g.id, k.handover_id.in_(select(rows.c.handover_id))))
        .values(
            cut_from=case((g.cut_by_handover_id.is_(None), g.valid_until), else_=g.cut_from),
            valid_until=case((or_(g.valid_until.is_(None), g.valid_until > earliest), earliest), else_=g.valid_until),
            cut_by_handover_id=first,
        )
        .execution_options(synchronize_session=False)
    )


def lift(session: Session, handover_id: int, *, except_clients: Any = None) -> None:
    """The handover's cuts are lifted (except on `except_clients`, a select of client ids): a grant it ended gets
    back the earlier of its own end and the cuts that still stand; one ended earlier by something else keeps that."""
    g, k = AccessGrant, AccessGrantCut
    others = (k.grant_id == g.id, k.handover_id != handover_id)
    rest = select(func.min(k.cut_at)).where(*others).scalar_subquery()
    next_by = select(k.handover_id).where(*others).order_by(k.cut_at, k.handover_id).limit(1).scalar_subquery()
    this_cut = select(k.cut_at).where(k.grant_id == g.id, k.handover_id == handover_id).scalar_subquery()
    where: list[Any] = [exists().where(k.grant_id == g.id, k.handover_id == handover_id)]
    if except_clients is not None:
        where.append(g.client_id.not_in(except_clients))
    session.execute(
        update(g)
        .where(*where)
        .values(
            valid_until=case((g.valid_until == this_cut, _earlier(g.cut_from, rest)), else_=g.valid_until),
            cut_from=case((rest.is_(None), None), else_=g.cut_from),
            cut_by_handover_id=next_by,
        )
        .execution_options(synchronize_session=False)
    )
    gone = delete(k).where(k.handover_id == handover_id)
    if except_clients is not None:
        gone = gone.where(k.grant_id.in_(select(g.id).where(g.client_id.not_in(except_clients))))
    session.execute(gone.execution_options(synchronize_session=False))
