"""Follow-ups after a handover: first contact, check-in, satisfaction survey; completed, chased when overdue.

Functions take a Session and flush at most; the caller commits. The workflow calls:

- `create_for_handover(session, *, handover_id, now, settings)` right after approval (`create_for_handovers` for
  handovers approved together): three follow-ups per receiving item, one INSERT … SELECT per effective time,
  idempotent.
- `cancel_for_handover(session, *, handover_id, now)` on cancel and on undo: open follow-ups are cancelled.
- `reschedule_for_handover(session, *, handover_id, now, settings)` when an approved or executed handover's
  effective time moves: open follow-ups move with it.
- `follow_receivers(session, receivers, *, now)` when a re-check gives approved items to someone else: their open
  follow-ups go to the new receiver (cancelled when nobody receives the client).

The worker calls `notify_overdue(session, now, settings=...)`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, insert, literal, or_, select, true, union_all, update
from sqlalchemy.orm import Session, aliased

from app.audit import service as audit
from app.core.auth import Principal
from app.core.config import Settings
from app.directory import service as directory
from app.directory.models import Client, Employee
from app.notify import service as notify
from app.transfer.followups.errors import FirstContactInvalid, FollowUpNotFound, FollowUpNotOpen, NotTheAssignee
from app.transfer.followups.models import FOLLOW_UP_KINDS, FollowUp
from app.transfer.models import Handover, HandoverItem

# Items whose client goes (or went) to someone: they get follow-ups; proposed, cancelled, reverted ones do not.
RECEIVING_STATUSES = ("approved", "transferred", "confirmed")
CLIENT_STATUS_AFTER = {"retained": "active", "at_risk": "at_risk", "churned": "churned"}
OVERDUE_BATCH = 500


def offsets(settings: Settings) -> dict[str, int]:
    """Days after the effective time each kind is due, in FOLLOW_UP_KINDS order."""
    days = {
        "first_contact": settings.follow_up_first_contact_days,
        "check_in": settings.follow_up_check_in_days,
        "satisfaction_survey": settings.follow_up_survey_days,
    }
    return {kind: days[kind] for kind in FOLLOW_UP_KINDS}


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _handover(session: Session, handover_id: int) -> Handover:
    h = session.get(Handover, handover_id)
    if h is None:
        raise ValueError(f"no handover {handover_id}")
    return h


# ---- the workflow's calls -----------------------------------------------------------------------


def create_for_handover(session: Session, *, handover_id: int, now: dt.datetime, settings: Settings) -> int:
    """Every receiving item gets its three follow-ups, for the successor (else the interim owner).

    One INSERT … SELECT whatever the number of clients: the items crossed with the kinds (a UNION ALL of
    constants), in kind order then item order. A follow-up that exists is skipped (NOT EXISTS, backed by
    the unique (item_id, kind) constraint), so a second call creates nothing. Returns how many were created.
    """
    return create_for_handovers(session, [_handover(session, handover_id)], now=now, settings=settings)


def create_for_handovers(
    session: Session, handovers: Sequence[Handover], *, now: dt.datetime, settings: Settings
) -> int:
    """`create_for_handover` for handovers approved together: one INSERT … SELECT per effective time (a layoff
    has one), since the due dates are constants computed from it."""
    by_time: dict[dt.datetime, list[int]] = {}
    for h in handovers:
        by_time.setdefault(h.effective_at, []).append(h.id)
    return sum(_create(session, ids, effective_at, now, settings) for effective_at, ids in by_time.items())


def _create(
    session: Session, handover_ids: Sequence[int], effective_at: dt.datetime, now: dt.datetime, settings: Settings
) -> int:
    i, f, taken = HandoverItem, FollowUp, aliased(FollowUp)
    assignee = func.coalesce(i.transferred_to_id, i.successor_id, i.interim_owner_id)
    at = f.due_at.type
    kinds = union_all(
        *(
            select(
                literal(n).label("n"),
                literal(kind, f.kind.type).label("kind"),
                literal(effective_at + dt.timedelta(days=days), at).label("due_at"),
            )
            for n, (kind, days) in enumerate(offsets(settings).items())
        )
    ).subquery("kinds")
    rows = (
        select(
            i.handover_id,
            i.id,
            i.client_id,
            assignee,
            kinds.c.kind,
            kinds.c.due_at,
            literal("open"),
            Client.satisfaction,
            literal(now, at),
        )
        .select_from(i)
        .join(Client, Client.external_id == i.client_id)
        .join(kinds, true())
        .where(
            i.handover_id.in_(handover_ids),
            i.status.in_(RECEIVING_STATUSES),
            assignee.is_not(None),
            ~exists().where(taken.item_id == i.id, taken.kind == kinds.c.kind),
        )
        .order_by(i.handover_id, kinds.c.n, i.id)
    )
    columns = [
        "handover_id",
        "item_id",
        "client_id",
        "assignee_id",
        "kind",
        "due_at",
        "status",
        "satisfaction_before",
        "created_at",
    ]
    stmt = insert(f).from_select(columns, rows).execution_options(preserve_rowcount=True)
    return _rowcount(session.execute(stmt))


def cancel_for_handover(session: Session, *, handover_id: int, now: dt.datetime) -> int:
    """Open follow-ups of a cancelled or undone handover are cancelled; completed ones stay as history."""
    result = session.execute(
        update(FollowUp)
        .where(FollowUp.handover_id == handover_id, FollowUp.status == "open")
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def follow_receivers(session: Session, receivers: dict[int, str | None], *, now: dt.datetime) -> dict[str, int]:
    """Items (id → new receiver, None: nobody) a re-check gave to someone else: their open follow-ups are the new
    receiver's (the (item, kind) pair stays unique, so none is created twice) and chase anew; with no receiver
    they are cancelled. Completed ones stay as history. At most two UPDATEs per receiver; returns the counts."""
    f = FollowUp
    by_new: dict[str | None, list[int]] = {}
    for item_id, new in receivers.items():
        by_new.setdefault(new, []).append(item_id)
    out = {"moved": 0, "cancelled": 0}
    for new, ids in by_new.items():
        mine = (f.item_id.in_(sorted(ids)), f.status == "open")
        if new is None:
            out["cancelled"] += _rowcount(
                session.execute(
                    update(f).where(*mine).values(status="cancelled").execution_options(synchronize_session=False)
                )
            )
            continue
        out["moved"] += _rowcount(
            session.execute(
                update(f)
                .where(*mine, f.assignee_id != new)
                .values(assignee_id=new, overdue_notified_at=None)
                .execution_options(synchronize_session=False)
            )
        )
    return out


def reschedule_for_handover(session: Session, *, handover_id: int, now: dt.datetime, settings: Settings) -> int:
    """The effective time moved: open follow-ups move with it; one moved into the future may be chased again."""
    h = _handover(session, handover_id)
    f = FollowUp
    moved = 0
    for kind, days in offsets(settings).items():
        due = h.effective_at + dt.timedelta(days=days)
        values: dict[str, Any] = {"due_at": due}
        if due > now:
            values["overdue_notified_at"] = None
        moved += _rowcount(
            session.execute(
                update(f)
                .where(f.handover_id == h.id, f.kind == kind, f.status == "open")
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
    return moved


# ---- reading ------------------------------------------------------------------------------------


def visibility(principal: Principal) -> ColumnElement[bool]:
    """Unrestricted roles see all; a manager their subtree's (themselves included); anyone else their own."""
    if principal.unrestricted:
        return true()
    if principal.employee is None:
        return false()
    if principal.role == "manager":
        return FollowUp.assignee_id.in_(directory.subtree(principal.employee))
    return FollowUp.assignee_id == principal.employee


def overdue_clause(now: dt.datetime) -> ColumnElement[bool]:
    return and_(FollowUp.status == "open", FollowUp.due_at < now)


@dataclass(frozen=True)
class FollowUpFilter:
    assignee: str | None = None
    handover: int | None = None
    client: str | None = None
    kind: str | None = None
    status: str | None = None
    due_before: dt.datetime | None = None
    overdue: bool | None = None


def list_follow_ups(
    session: Session, principal: Principal, flt: FollowUpFilter, *, now: dt.datetime, limit: int, offset: int
) -> list[tuple[FollowUp, str]]:
    """Follow-ups the caller may see with their client's name, soonest due first."""
    f = FollowUp
    stmt = select(f, Client.name).join(Client, Client.external_id == f.client_id).where(visibility(principal))
    if flt.assignee:
        stmt = stmt.where(f.assignee_id == flt.assignee)
    if flt.handover is not None:
        stmt = stmt.where(f.handover_id == flt.handover)
    if flt.client:
        stmt = stmt.where(f.client_id == flt.client)
    if flt.kind:
        stmt = stmt.where(f.kind == flt.kind)
    if flt.status:
        stmt = stmt.where(f.status == flt.status)
    if flt.due_before is not None:
        stmt = stmt.where(f.due_at < flt.due_before)
    if flt.overdue is True:
        stmt = stmt.where(overdue_clause(now))
    elif flt.overdue is False:
        stmt = stmt.where(or_(f.status != "open", f.due_at >= now))
    rows = session.execute(stmt.order_by(f.due_at, f.id).limit(limit).offset(offset)).all()
    return [(r[0], r[1]) for r in rows]


def get_follow_up(session: Session, principal: Principal, follow_up_id: int, *, lock: bool = False) -> FollowUp:
    """404 for an id outside the caller's reach, the same as for one that does not exist."""
    stmt = select(FollowUp).where(FollowUp.id == follow_up_id, visibility(principal))
    if lock:
        stmt = stmt.with_for_update()
    fu = session.scalar(stmt)
    if fu is None:
        raise FollowUpNotFound(f"No follow-up {follow_up_id}.")
    return fu


def client_name(session: Session, client_id: str) -> str:
    return session.scalar(select(Client.name).where(Client.external_id == client_id)) or client_id


# ---- completing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    outcome: str
    satisfaction: float | None = None
    first_contact_at: dt.datetime | None = None
    note: str | None = None


def _may_complete(session: Session, principal: Principal, fu: FollowUp) -> bool:
    """The assignee, their direct manager, or an admin: the people who answer for the client now."""
    if principal.role == "admin":
        return True
    emp = principal.employee
    if emp is None:
        return False
    if emp == fu.assignee_id:
        return True
    if principal.role != "manager":
        return False
    return session.scalar(select(Employee.manager_id).where(Employee.external_id == fu.assignee_id)) == emp


def complete(session: Session, principal: Principal, fu: FollowUp, body: Completion, *, now: dt.datetime) -> FollowUp:
    """Records the outcome once; the client's satisfaction, status and last contact follow; audited."""
    if not _may_complete(session, principal, fu):
        raise NotTheAssignee("Only the assignee, their manager or an admin may complete this follow-up.")
    if fu.status != "open":
        raise FollowUpNotOpen(
            f"Follow-up {fu.id} is {fu.status}; only open follow-ups are completed.", extra={"allowed": []}
        )
    if body.outcome not in CLIENT_STATUS_AFTER:
        raise ValueError(f"unknown outcome {body.outcome!r}")
    if fu.kind == "first_contact" and body.first_contact_at is None:
        raise FirstContactInvalid(
            "A first contact needs first_contact_at: when the client was first spoken to.",
            errors=[{"loc": ["body", "first_contact_at"], "msg": "required for first_contact", "type": "missing"}],
        )
    if body.first_contact_at is not None and body.first_contact_at > now:
        raise FirstContactInvalid(
            "first_contact_at is in the future.",
            errors=[{"loc": ["body", "first_contact_at"], "msg": "must not be in the future", "type": "value_error"}],
        )
    satisfaction = None if body.satisfaction is None else Decimal(str(round(body.satisfaction, 1)))
    fu.status = "completed"
    fu.outcome = body.outcome
    fu.satisfaction = float(satisfaction) if satisfaction is not None else None
    fu.first_contact_at = body.first_contact_at
    fu.note = body.note
    fu.completed_at = now
    fu.completed_by = principal.actor
    client = session.get(Client, fu.client_id, with_for_update=True)
    assert client is not None  # the foreign key holds it
    status_before = client.status
    client.status = CLIENT_STATUS_AFTER[body.outcome]
    if satisfaction is not None:
        client.satisfaction = satisfaction
    if body.first_contact_at is not None and (
        client.last_contact_at is None or client.last_contact_at < body.first_contact_at
    ):
        client.last_contact_at = body.first_contact_at
    client.updated_at = now
    audit.record(
        session,
        actor=principal.actor,
        action="follow_up.completed",
        entity_type="follow_up",
        entity_id=str(fu.id),
        data={
            "handover": fu.handover_id,
            "client": fu.client_id,
            "kind": fu.kind,
            "outcome": body.outcome,
            "satisfaction": float(satisfaction) if satisfaction is not None else None,
            "first_contact_at": body.first_contact_at.isoformat() if body.first_contact_at else None,
            "note": body.note is not None,  # whether there is one; its text stays out of the immutable log
            "client_status": {"from": status_before, "to": client.status},
        },
        at=now,
    )
    session.flush()
    return fu


# ---- overdue ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    name: str
    email: str | None
    manager_id: str | None
    languages: list[str]


def _people(session: Session, ids: Sequence[str]) -> dict[str, _Person]:
    e = Employee
    rows = session.execute(
        select(e.external_id, e.name, e.email, e.manager_id, e.languages).where(e.external_id.in_(set(ids)))
    )
    return {r[0]: _Person(r[1], r[2], r[3], list(r[4] or [])) for r in rows}


def notify_overdue(
    session: Session, now: dt.datetime, *, settings: Settings | None = None, limit: int = OVERDUE_BATCH
) -> int:
    """Open follow-ups past due and not chased yet: one follow_up_due notice each to the assignee's manager.

    The manager is the assignee's, else the leaver's (the handover's manager). Each is marked in the same
    transaction, so a second run sends nothing; several workers skip each other's rows (SKIP LOCKED).
    At most `limit` per call; the next run takes the rest. Returns how many were chased.
    """
    f = FollowUp
    due = session.execute(
        select(f.id, f.handover_id, f.client_id, f.assignee_id, f.kind, f.due_at, Client.name, Handover.effective_at)
        .join(Client, Client.external_id == f.client_id)
        .join(Handover, Handover.id == f.handover_id)
        .where(overdue_clause(now), f.overdue_notified_at.is_(None))
        .order_by(f.due_at, f.id)
        .limit(limit)
        .with_for_update(of=f, skip_locked=True)
    ).all()
    if not due:
        return 0
    handover_managers: dict[int, str | None] = {
        hid: manager
        for hid, manager in session.execute(
            select(Handover.id, Handover.manager_id).where(Handover.id.in_({r.handover_id for r in due}))
        )
    }
    people = _people(session, [r.assignee_id for r in due])
    recipients: dict[int, str | None] = {}
    for r in due:
        assignee = people.get(r.assignee_id)
        recipients[r.id] = (assignee.manager_id if assignee else None) or handover_managers.get(r.handover_id)
    people.update(_people(session, [m for m in recipients.values() if m and m not in people]))
    available = notify.available_locales(session)["follow_up_due"]
    default = settings.default_locale if settings is not None else "en"
    for r in due:
        manager = people.get(recipients[r.id] or "")
        assignee = people.get(r.assignee_id)
        notify.enqueue(
            session,
            kind="internal",
            template="follow_up_due",
            locale=notify.pick_locale(manager.languages if manager else [], available, default),
            channel="email",
            recipient=manager.email if manager else None,  # none: stored as skipped, visible in the list
            data={
                "recipient": {"name": manager.name if manager else ""},
                "client": {"name": r.name, "external_id": r.client_id},
                "handover": {"id": r.handover_id},
                "follow_up": {
                    "id": r.id,
                    "kind": r.kind,
                    "days": (r.due_at - r.effective_at).days,
                    "due_date": r.due_at.astimezone(dt.UTC).date().isoformat(),
                    "assignee": {"id": r.assignee_id, "name": assignee.name if assignee else r.assignee_id},
                },
            },
            not_before=now,
            handover_id=r.handover_id,
            client_id=r.client_id,
            priority=notify.PRIORITY_INTERNAL,
            now=now,
        )
    session.execute(
        update(f)
        .where(f.id.in_([r.id for r in due]))
        .values(overdue_notified_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(due)
