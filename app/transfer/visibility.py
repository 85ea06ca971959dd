"""Who sees a handover and who manages it, as SQL (so lists filter in the database), and the reads they get."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Select, and_, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.directory import service as directory
from app.directory.models import Client
from app.transfer.errors import HandoverNotFound, HandoverNotManaged, ItemNotFound
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


def _own_items(employee: str) -> Any:
    """The items an employee receives: as successor, interim owner or receiver (a client moves only to one of those)."""
    return or_(
        HandoverItem.successor_id == employee,
        HandoverItem.interim_owner_id == employee,
        HandoverItem.transferred_to_id == employee,
    )


def _participation(employee: str) -> Any:
    """The employee receives one of the handover's items."""
    return exists().where(HandoverItem.handover_id == Handover.id, _own_items(employee))


def _rules(principal: Principal) -> tuple[Any, Any, Any]:
    """(manages, sees every item, sees) as SQL; each reuses `manages`, so a statement holding them has one subtree
    CTE. Every item: whoever manages the handover, and the leaver (they hand all of it over); the handover itself
    also its participants (a manager may be a successor elsewhere), who see their own items only (`HandoverView`)."""
    manages = handover_management(principal)
    if principal.unrestricted or principal.employee is None:
        return manages, manages, manages
    whole = or_(manages, Handover.leaver_id == principal.employee)
    return manages, whole, or_(whole, _participation(principal.employee))


def manages(session: Session, principal: Principal, h: Handover) -> bool:
    """`handover_management` for one loaded handover (a query only for a manager who is not its manager)."""
    if principal.unrestricted:
        return True
    if principal.role != "manager" or principal.employee is None or h.leaver_id == principal.employee:
        return False
    if h.manager_id == principal.employee:
        return True
    return session.scalar(select(Handover.id).where(Handover.id == h.id, handover_management(principal))) is not None


@dataclass(frozen=True)
class HandoverView:
    """A handover as one principal sees it: `own` is the employee whose items alone they see (a participant who neither
    manages nor leaves it: least privilege, the other clients of the leaver are not theirs), None for every item."""

    handover: Handover
    manages: bool
    own: str | None = None

    @property
    def scope(self) -> Literal["all", "own"]:
        return "all" if self.own is None else "own"

    def items(self) -> Any:
        """The items this view shows, as SQL on HandoverItem."""
        return true() if self.own is None else _own_items(self.own)


def _views(principal: Principal, rows: Any) -> list[HandoverView]:
    return [HandoverView(h, bool(m), None if w else principal.employee) for h, m, w in rows]


def _visible_rows(
    session: Session, principal: Principal, handover_ids: Sequence[int], *, lock: bool
) -> list[HandoverView]:
    managing, whole, sees = _rules(principal)
    stmt = (
        select(Handover, managing.label("manages"), whole.label("whole"))
        .where(Handover.id.in_(handover_ids), sees)
        .order_by(Handover.id)
    )
    if lock:
        stmt = stmt.with_for_update()
    return _views(principal, session.execute(stmt))


def see_handover(
    session: Session, principal: Principal, handover_id: int, *, lock: bool = False, manage: str | None = None
) -> HandoverView:
    """A handover the principal sees, else 404, with the items they see. With `manage` (the 403 detail), one they
    manage: a participant who does not manage it (a manager named successor on another team's handover) gets 403."""
    rows = _visible_rows(session, principal, [handover_id], lock=lock)
    if not rows:
        raise HandoverNotFound(f"No handover {handover_id}.")
    if manage is not None and not rows[0].manages:
        raise HandoverNotManaged(manage)
    return rows[0]


def get_handover(
    session: Session, principal: Principal, handover_id: int, *, lock: bool = False, manage: str | None = None
) -> Handover:
    """`see_handover`'s handover."""
    return see_handover(session, principal, handover_id, lock=lock, manage=manage).handover


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
    found = {v.handover.id: v.handover for v in rows}
    missing = [hid for hid in wanted if hid not in found]
    if missing:
        raise HandoverNotFound(
            f"No handover {', '.join(map(str, missing[:20]))}{' …' if len(missing) > 20 else ''}.",
            extra={"handover_ids": missing},
        )
    if manage is not None:
        unmanaged = [v.handover.id for v in rows if not v.manages]
        if unmanaged:
            raise HandoverNotManaged(manage, extra={"handover_ids": unmanaged})
    return [found[hid] for hid in wanted]


def can_approve(principal: Principal, h: Handover) -> bool:
    if principal.role in ("admin", "integration"):
        return True
    return principal.role == "manager" and principal.employee is not None and principal.employee == h.manager_id


def get_item(session: Session, view: HandoverView, item_id: int) -> HandoverItem:
    """An item the view shows, else 404: to a participant another receiver's item is outside their reach."""
    h = view.handover
    item = session.scalar(
        select(HandoverItem).where(HandoverItem.id == item_id, HandoverItem.handover_id == h.id, view.items())
    )
    if item is None:
        raise ItemNotFound(f"No item {item_id} in handover {h.id}.")
    return item


@dataclass(frozen=True)
class Counts:
    statuses: dict[str, int]
    bands: dict[str, int]
    needs_attention: int
    exposure: float


def counts(session: Session, handover_ids: Sequence[int], *, where: Any = None) -> dict[int, Counts]:
    """Items by status and band, attention and exposure, for a page of handovers in one query (only the items
    `where` holds for, when given)."""
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
        .where(HandoverItem.handover_id.in_(handover_ids), true() if where is None else where)
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


def view_counts(session: Session, views: Sequence[HandoverView]) -> dict[int, Counts]:
    """`counts` over the items each view shows: a participant's header adds up their own items, not the leaver's
    whole book (its size and exposure are the leaver's managers' to see)."""
    shown: list[Any] = []
    every = [v.handover.id for v in views if v.own is None]
    if every:
        shown.append(HandoverItem.handover_id.in_(every))
    for emp in sorted({v.own for v in views if v.own is not None}):
        ids = [v.handover.id for v in views if v.own == emp]
        shown.append(and_(HandoverItem.handover_id.in_(ids), _own_items(emp)))
    return counts(session, [v.handover.id for v in views], where=or_(*shown) if shown else None)


@dataclass(frozen=True)
class HandoverFilter:
    status: str | None = None
    leaver: str | None = None
    manager: str | None = None
    effective_from: dt.datetime | None = None
    effective_to: dt.datetime | None = None


def list_handovers(
    session: Session, principal: Principal, flt: HandoverFilter, *, limit: int, offset: int
) -> list[HandoverView]:
    managing, whole, sees = _rules(principal)
    stmt = select(Handover, managing.label("manages"), whole.label("whole")).where(sees)
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
    return _views(principal, session.execute(stmt.order_by(Handover.id.desc()).limit(limit).offset(offset)))


@dataclass(frozen=True)
class ItemFilter:
    status: str | None = None
    risk_band: str | None = None
    successor: str | None = None
    needs_attention: bool | None = None


def list_items(
    session: Session, view: HandoverView, flt: ItemFilter, *, limit: int, offset: int
) -> list[tuple[HandoverItem, Client]]:
    stmt = (
        select(HandoverItem, Client)
        .join(Client, Client.external_id == HandoverItem.client_id)
        .where(HandoverItem.handover_id == view.handover.id, view.items())
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
