"""Who sees a handover and who manages it, as SQL (so lists filter in the database), and the reads they get."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.errors import Forbidden, NotFound
from app.directory import service as directory
from app.directory.models import Client
from app.transfer.models import Handover, HandoverItem


def handover_management(principal: Principal) -> Any:
    """Who manages a handover (plans, overrides, approves, cancels, completes, undoes it): the unrestricted roles,
    and a manager for the handovers that name them manager or whose leaver is in their subtree, except their own
    (the subtree holds its root: a leaving manager could otherwise cancel or re-plan their own exit)."""
    if principal.unrestricted:
        return true()
    if principal.employee is None or principal.role != "manager":
        return false()
    tree = directory.subtree(principal.employee)
    return and_(
        Handover.leaver_id != principal.employee,
        or_(Handover.manager_id == principal.employee, Handover.leaver_id.in_(tree)),
    )


def _participation(employee: str) -> Any:
    """The leaver, or the successor or interim owner of one of its items (a client moves only to one of those)."""
    involved = exists().where(
        HandoverItem.handover_id == Handover.id,
        or_(HandoverItem.successor_id == employee, HandoverItem.interim_owner_id == employee),
    )
    return or_(Handover.leaver_id == employee, involved)


def _rules(principal: Principal) -> tuple[Any, Any]:
    """(manages, sees) as SQL; `sees` reuses `manages`, so a statement holding both has one subtree CTE."""
    manages = handover_management(principal)
    if principal.unrestricted or principal.employee is None:
        return manages, manages
    return manages, or_(manages, _participation(principal.employee))


def handover_visibility(principal: Principal) -> Any:
    """Who sees a handover: whoever manages it, and its participants (a manager may be a successor elsewhere)."""
    return _rules(principal)[1]


def manages(session: Session, principal: Principal, h: Handover) -> bool:
    """`handover_management` for one loaded handover (a query only for a manager who is not its manager)."""
    if principal.unrestricted:
        return True
    if principal.role != "manager" or principal.employee is None or h.leaver_id == principal.employee:
        return False
    if h.manager_id == principal.employee:
        return True
    return session.scalar(select(Handover.id).where(Handover.id == h.id, handover_management(principal))) is not None


def _visible_rows(
    session: Session, principal: Principal, handover_ids: Sequence[int], *, lock: bool
) -> list[tuple[Handover, bool]]:
    managing, sees = _rules(principal)
    stmt = select(Handover, managing.label("manages")).where(Handover.id.in_(handover_ids), sees).order_by(Handover.id)
    if lock:
        stmt = stmt.with_for_update()
    return [(h, bool(m)) for h, m in session.execute(stmt)]


def get_handover(
    session: Session, principal: Principal, handover_id: int, *, lock: bool = False, manage: str | None = None
) -> Handover:
    """A handover the principal sees, else 404. With `manage` (the 403 detail), one they manage: a participant who
    does not manage it (a manager named successor on another team's handover) gets 403."""
    rows = _visible_rows(session, principal, [handover_id], lock=lock)
    if not rows:
        raise NotFound(f"No handover {handover_id}.")
    h, managed = rows[0]
    if manage is not None and not managed:
        raise Forbidden(manage)
    return h


def get_handovers(
    session: Session,
    principal: Principal,
    handover_ids: Sequence[int],
    *,
    lock: bool = False,
    manage: str | None = None,
) -> list[Handover]:
    """Several handovers in one query, in the order asked, locked in id order (two batches that overlap cannot
    deadlock); 404 naming the ids the principal cannot see, then, with `manage`, 403 naming those they see
    without managing them, like `get_handover` for one."""
    wanted = list(dict.fromkeys(handover_ids))
    rows = _visible_rows(session, principal, wanted, lock=lock)
    found = {h.id: h for h, _ in rows}
    missing = [hid for hid in wanted if hid not in found]
    if missing:
        raise NotFound(
            f"No handover {', '.join(map(str, missing[:20]))}{' …' if len(missing) > 20 else ''}.",
            extra={"handover_ids": missing},
        )
    if manage is not None:
        unmanaged = [h.id for h, managed in rows if not managed]
        if unmanaged:
            raise Forbidden(manage, extra={"handover_ids": unmanaged})
    return [found[hid] for hid in wanted]


def can_approve(principal: Principal, h: Handover) -> bool:
    if principal.role in ("admin", "integration"):
        return True
    return principal.role == "manager" and principal.employee is not None and principal.employee == h.manager_id


def get_item(session: Session, h: Handover, item_id: int) -> HandoverItem:
    item = session.scalar(select(HandoverItem).where(HandoverItem.id == item_id, HandoverItem.handover_id == h.id))
    if item is None:
        raise NotFound(f"No item {item_id} in handover {h.id}.")
    return item


@dataclass(frozen=True)
class Counts:
    statuses: dict[str, int]
    bands: dict[str, int]
    needs_attention: int
    exposure: float


def counts(session: Session, handover_ids: Sequence[int]) -> dict[int, Counts]:
    """Items by status and band, attention and exposure, for a page of handovers in one query."""
    if not handover_ids:
        return {}
    rows = session.execute(
        select(
            HandoverItem.handover_id,
            HandoverItem.status,
            HandoverItem.risk_band,
            HandoverItem.needs_attention,
            func.count(),
            func.coalesce(func.sum(HandoverItem.exposure), 0),
        )
        .where(HandoverItem.handover_id.in_(handover_ids))
        .group_by(HandoverItem.handover_id, HandoverItem.status, HandoverItem.risk_band, HandoverItem.needs_attention)
    ).all()
    statuses: dict[int, Counter[str]] = defaultdict(Counter)
    bands: dict[int, Counter[str]] = defaultdict(Counter)
    attention: Counter[int] = Counter()
    exposure: dict[int, float] = defaultdict(float)
    for hid, status, band, needs, n, exp in rows:
        statuses[hid][status] += n
        bands[hid][band or "unscored"] += n
        exposure[hid] += float(exp or 0)
        if needs:
            attention[hid] += n
    return {i: Counts(dict(statuses[i]), dict(bands[i]), attention[i], round(exposure[i], 2)) for i in handover_ids}


@dataclass(frozen=True)
class HandoverFilter:
    status: str | None = None
    leaver: str | None = None
    manager: str | None = None
    effective_from: dt.datetime | None = None
    effective_to: dt.datetime | None = None


def list_handovers(
    session: Session, principal: Principal, flt: HandoverFilter, *, limit: int, offset: int
) -> list[Handover]:
    stmt = select(Handover).where(handover_visibility(principal))
    if flt.status:
        stmt = stmt.where(Handover.status == flt.status)
    if flt.leaver:
        stmt = stmt.where(Handover.leaver_id == flt.leaver)
    if flt.manager:
        stmt = stmt.where(Handover.manager_id == flt.manager)
    if flt.effective_from:
        stmt = stmt.where(Handover.effective_at >= flt.effective_from)
    if flt.effective_to:
        stmt = stmt.where(Handover.effective_at < flt.effective_to)
    return list(session.scalars(stmt.order_by(Handover.id.desc()).limit(limit).offset(offset)))


@dataclass(frozen=True)
class ItemFilter:
    status: str | None = None
    risk_band: str | None = None
    successor: str | None = None
    needs_attention: bool | None = None


def list_items(
    session: Session, h: Handover, flt: ItemFilter, *, limit: int, offset: int
) -> list[tuple[HandoverItem, Client]]:
    stmt = (
        select(HandoverItem, Client)
        .join(Client, Client.external_id == HandoverItem.client_id)
        .where(HandoverItem.handover_id == h.id)
    )
    if flt.status:
        stmt = stmt.where(HandoverItem.status == flt.status)
    if flt.risk_band:
        stmt = stmt.where(HandoverItem.risk_band == flt.risk_band)
    if flt.successor:
        stmt = stmt.where(HandoverItem.successor_id == flt.successor)
    if flt.needs_attention is not None:
        stmt = stmt.where(HandoverItem.needs_attention.is_(flt.needs_attention))
    return [(i, c) for i, c in session.execute(stmt.order_by(HandoverItem.id).limit(limit).offset(offset))]


def managed_ids(principal: Principal) -> Select[Any]:
    """The ids of the handovers the principal manages, as a statement for other modules to filter by (bound in
    `app.main` for the notifications list)."""
    return select(Handover.id).where(handover_management(principal))
