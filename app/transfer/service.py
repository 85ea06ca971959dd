"""The handover workflow's state machine and orchestration: open, approve, execute, cancel, undo, complete.

Functions take a Session and flush; the caller commits. Bulk work is set-based: one query to load,
one statement to write, whatever the number of clients. Planning is in `planning`, who sees and manages what in
`visibility`, checklists and sign-offs in `signoff`, what a handover tells whom in `messaging`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.access import service as access
from app.access.models import AccessGrant
from app.audit import service as audit
from app.core.auth import Principal
from app.core.config import Settings, get_settings
from app.core.db import AnySelect
from app.core.errors import Conflict
from app.directory import service as directory
from app.directory.models import Client, Employee
from app.notify import events
from app.notify import service as notify
from app.transfer import continuity, deadlines, messaging, rechecks, records, rolechange, seats, visibility
from app.transfer.errors import (
    EffectiveTimeNotReached,
    HandoverAlreadyExecuted,
    HandoverAlreadyOpen,
    HandoverNotPlanned,
    ItemsUnassigned,
    LeaveNotUndoable,
    NotTheApprover,
    TransitionNotAllowed,
    UndoWindowPassed,
    UnknownEmployee,
)
from app.transfer.followups import service as followups
from app.transfer.models import OPEN_STATUSES, Handover, HandoverItem

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "scheduled": ("completed", "cancelled"),  # a leave (app/transfer/leave.py)
    "draft": ("planned", "cancelled"),
    "planned": ("planned", "approved", "cancelled"),
    "approved": ("executed", "cancelled"),
    "executed": ("completed", "undone"),
    "completed": ("undone",),
    "cancelled": (),
    "undone": (),
}


def move(h: Handover, target: str, now: dt.datetime, *, refusal: type[Conflict] = TransitionNotAllowed) -> None:
    allowed = TRANSITIONS[h.status]
    if target not in allowed:
        raise refusal(
            f"A handover in status {h.status} cannot become {target}.",
            extra={"allowed": list(allowed)},
        )
    h.status = target
    h.version += 1
    h.updated_at = now


EVENTS = frozenset(
    {
        "handover.created",
        "handover.planned",
        "handover.approved",
        "handover.cancelled",
        "handover.executed",
        "handover.completed",
        "handover.undone",
    }
)


@dataclass
class Pending:
    """A batch of handovers' audit entries and events, written together by `write` (one chain read and one INSERT
    for the entries, one subscription read and one bulk insert for the events) instead of a statement or two per
    handover; each list keeps the order of the calls."""

    changes: list[audit.Change] = field(default_factory=list)
    events: notify.Events = field(default_factory=list)

    def write(self, session: Session, now: dt.datetime) -> None:
        notify.emit_many(session, self.events, now=now)
        audit.record_many(session, self.changes, at=now)


def record(
    session: Session,
    actor: str,
    action: str,
    h: Handover,
    now: dt.datetime,
    *,
    pending: Pending | None = None,
    **data: Any,
) -> None:
    """Every state change: one audit entry and, for the CRM, one outbound event, in the same transaction.

    With `pending`, both are held there for the caller's one `Pending.write` (a batch of handovers)."""
    if action in EVENTS:
        fields: dict[str, Any] = {
            "handover_id": h.id,
            "leaver": h.leaver_id,
            "manager": h.manager_id,
            "status": h.status,
            "effective_at": h.effective_at,
            "reason": h.reason,
            "actor": actor,
        }
        if action == "handover.planned":
            fields["items"] = data["items"]
        elif action == "handover.cancelled":
            fields["cancel_reason"] = data.get("reason")
        elif action == "handover.undone":
            fields["undo_reason"] = data.get("reason")
        event = events.EVENT_MODELS[action](**fields)
        notify.emit(session, action, event, now=now, into=pending.events if pending is not None else None)
    change = audit.Change(actor, action, "handover", str(h.id), {"status": h.status, "leaver": h.leaver_id, **data})
    if pending is None:
        audit.record_many(session, [change], at=now)
    else:
        pending.changes.append(change)


def anchor_audit(
    session: Session,
    settings: Settings,
    *,
    now: dt.datetime,
    reason: str,
    head: tuple[int, str] | None = None,
    verified: bool = False,
) -> audit.Checkpoint | None:
    """Signs the audit head as a checkpoint and sends it out as `audit.checkpoint`: the copy a database writer cannot
    reach. A no-op without a signing key. Audit imports nothing but core, so its caller emits the event."""
    cp = audit.checkpoint(session, settings, now=now, reason=reason, head=head, verified=verified)
    if cp is not None:
        notify.emit(session, "audit.checkpoint", events.AuditCheckpointEvent(**cp.event()), now=now)
    return cp


def create_handover(
    session: Session,
    *,
    leaver: str,
    reason: str,
    effective_at: dt.datetime,
    destination_competitor: bool | None,
    source: str,
    actor: str,
    now: dt.datetime,
    settings: Settings | None = None,
    record_rules: dict[str, Any] | None = None,
) -> Handover:
    emp = session.get(Employee, leaver, with_for_update=True)
    if emp is None:
        raise UnknownEmployee(
            f"No employee {leaver!r}.",
            errors=[{"loc": ["body", "leaver"], "msg": "unknown employee", "type": "unknown_reference"}],
        )
    requested = effective_at
    if emp.status == "departed" and effective_at > now:
        # Already gone: the departure has happened, so the clients go to the interim owner now (issue 15).
        effective_at = now
    open_one = session.scalar(
        select(Handover.id).where(Handover.leaver_id == leaver, Handover.status.in_(OPEN_STATUSES))
    )
    if open_one is not None:
        raise HandoverAlreadyOpen(
            f"Employee {leaver!r} already has an open handover ({open_one}).", extra={"handover_id": open_one}
        )
    h = Handover(
        leaver_id=leaver,
        manager_id=emp.manager_id,
        reason=reason,
        destination_competitor=destination_competitor,
        status="draft",
        effective_at=effective_at,
        source=source,
        candidate_pool={"kind": "organisation"},
        record_rules=record_rules or None,
        leaver_status_before=emp.status,
        version=1,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    deadlines.on_opened(h, now=now, settings=settings)
    session.add(h)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise HandoverAlreadyOpen(f"Employee {leaver!r} already has an open handover.") from exc
    if not rolechange.stays(reason):
        directory.set_exit(session, leaver, effective_at, now=now, leaving=emp.status != "departed")
    extra: dict[str, Any] = {"requested_effective_at": requested.isoformat()} if requested != effective_at else {}
    record(
        session,
        actor,
        "handover.created",
        h,
        now,
        effective_at=effective_at.isoformat(),
        reason=reason,
        source=source,
        **extra,
    )
    continuity.lay_interim(session, h, actor=actor, now=now, settings=settings)
    return h


def open_from_exit(
    session: Session,
    *,
    leaver: str,
    effective_at: dt.datetime,
    reason: str,
    destination_competitor: bool | None,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> Handover:
    """An HR exit event: opens the handover, or moves the effective time of the open one."""
    h = session.scalar(
        select(Handover).where(Handover.leaver_id == leaver, Handover.status.in_(OPEN_STATUSES)).with_for_update()
    )
    if h is None:
        return create_handover(
            session,
            leaver=leaver,
            reason=reason,
            effective_at=effective_at,
            destination_competitor=destination_competitor,
            source="hr_webhook",
            actor=actor,
            now=now,
            settings=settings,
        )
    if h.status == "executed":
        raise HandoverAlreadyExecuted(f"The handover of {leaver!r} was already executed.")
    if h.effective_at != effective_at:
        reschedule(session, h, effective_at=effective_at, actor=actor, now=now, settings=settings)
    if destination_competitor is not None:
        h.destination_competitor = destination_competitor
    return h


def reschedule(
    session: Session, h: Handover, *, effective_at: dt.datetime, actor: str, now: dt.datetime, settings: Settings
) -> None:
    old = h.effective_at
    h.effective_at = effective_at
    deadlines.on_rescheduled(h, now=now, settings=settings)
    h.version += 1
    h.updated_at = now
    # Moved to a time that has not come after the interim owner took the clients over: the takeover is reversed
    # first (or refused, for a leaver already gone at the opening), then laid again from the new time below.
    taken_over = h.interim_at is not None
    continuity.give_back(session, h, actor=actor, now=now)
    if taken_over and h.interim_at is None:
        status = "leaving" if not rolechange.stays(h.reason) else (h.leaver_status_before or "active")
        directory.clear_exit(session, h.leaver_id, status=status, only_if_leaving=False, now=now)
    if not rolechange.stays(h.reason):
        directory.set_exit(session, h.leaver_id, effective_at, now=now, leaving=False)
    if h.status in ("approved", "executed"):
        session.flush()
        clients = rolechange.moved_clients([h.id]) if h.reason == "role_change" else None
        access.on_reschedule(
            session, handover_id=h.id, leaver=h.leaver_id, effective_at=effective_at, now=now, clients=clients
        )
        messaging.on_rescheduled(session, h, now=now, settings=settings)
        followups.reschedule_for_handover(session, handover_id=h.id, now=now, settings=settings)
    record(
        session,
        actor,
        "handover.rescheduled",
        h,
        now,
        old_effective_at=old.isoformat(),
        effective_at=effective_at.isoformat(),
    )
    continuity.lay_interim(session, h, actor=actor, now=now, settings=settings)


def on_departures(
    session: Session,
    departures: Sequence[tuple[str, dt.datetime | None]],
    *,
    source: str,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> list[int]:
    """Every departure signal opens a handover (issue 15): each (employee, exit_at) that the directory now has
    `leaving` or `departed` and who holds clients (not churned) gets one, reason `unknown`, effective at the exit
    time or now; an open one whose effective time is later than this exit is brought forward to it. One query
    finds who holds clients and one who has an open handover, whatever the batch size; then one handover each."""
    if not departures:
        return []
    ids = [e for e, _ in departures]
    holders = set(
        session.scalars(select(Client.owner_id).where(Client.owner_id.in_(ids), Client.status != "churned").distinct())
    )
    open_by = {
        h.leaver_id: h
        for h in session.scalars(
            select(Handover).where(Handover.leaver_id.in_(ids), Handover.status.in_(OPEN_STATUSES)).with_for_update()
        )
    }
    touched = []
    for employee, exit_at in departures:
        at = exit_at or now
        h = open_by.get(employee)
        if h is not None:
            if h.status in ("draft", "planned", "approved") and at < h.effective_at:
                reschedule(session, h, effective_at=at, actor=actor, now=now, settings=settings)
                touched.append(h.id)
            continue
        if employee not in holders:
            continue
        h = create_handover(
            session,
            leaver=employee,
            reason="unknown",
            effective_at=at,
            destination_competitor=None,
            source=source,
            actor=actor,
            now=now,
            settings=settings,
        )
        touched.append(h.id)
    return touched


def cancel_for_exit(
    session: Session, *, leaver: str, reason: str | None, actor: str, now: dt.datetime
) -> Handover | None:
    """An HR exit_cancelled event: cancels the open handover, or undoes an executed one."""
    h = session.scalar(
        select(Handover)
        .where(Handover.leaver_id == leaver, Handover.status.in_((*OPEN_STATUSES, "completed")))
        .order_by(Handover.id.desc())
        .limit(1)
    )
    if h is None:
        return None
    if h.status in ("executed", "completed"):
        undo(session, h, actor=actor, now=now, reason=reason, settings=None)
    else:
        cancel(session, h, actor=actor, now=now, reason=reason)
    return h


def approve(session: Session, h: Handover, principal: Principal, *, now: dt.datetime, settings: Settings) -> Handover:
    approve_many(session, [h], principal, now=now, settings=settings)
    return h


def approve_many(
    session: Session, hs: Sequence[Handover], principal: Principal, *, now: dt.datetime, settings: Settings
) -> dict[int, list[rechecks.Replanned]]:
    """Approves handovers together (a layoff), all or nothing: every check first, then each step once for all
    of them (grants, notifications and follow-ups as one statement per effective time). The rows are those of
    approving them one after another; one audit entry and one event per handover.

    Every planned successor is re-checked first (`rechecks`): items whose successor no longer qualifies are
    re-planned, late clients join; returns those changes per handover."""

    def named(ids: Sequence[int]) -> dict[str, Any] | None:
        return {"handover_ids": list(ids)} if len(hs) > 1 else None  # a single approval names its own id

    denied = [h.id for h in hs if not visibility.can_approve(principal, h)]
    if denied:
        raise NotTheApprover("Only the leaver's manager or an admin may approve this handover.", extra=named(denied))
    refused = [h for h in hs if h.status != "planned"]
    if len(hs) == 1 and refused:
        move(refused[0], "approved", now, refusal=HandoverNotPlanned)  # with the allowed transitions
    if refused:
        raise HandoverNotPlanned(
            f"Handovers {', '.join(str(h.id) for h in refused[:20])} are not planned; only planned ones can be "
            "approved.",
            extra=named([h.id for h in refused]),
        )
    replanned = rechecks.recheck(session, hs, stage="approval", actor=principal.actor, now=now, settings=settings)
    ids = [h.id for h in hs]
    i = HandoverItem
    orphans = dict(
        session.execute(
            select(i.handover_id, func.count())
            .where(i.handover_id.in_(ids), i.successor_id.is_(None), i.interim_owner_id.is_(None))
            .group_by(i.handover_id)
        ).all()
    )
    if orphans:
        total = sum(orphans.values())
        raise ItemsUnassigned(
            f"{total} item(s) have neither a successor nor an interim owner; set one first.",
            extra=named(sorted(orphans)),
        )
    session.execute(
        update(i)
        .where(i.handover_id.in_(ids), i.status == "proposed")
        .values(status="approved", version=i.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    for h in hs:
        h.approved_by = principal.actor
        h.approved_at = now
        move(h, "approved", now)
    _grant_windows(session, hs, actor=principal.actor, now=now)
    continuity.on_approved(session, ids, actor=principal.actor, now=now)
    _cut_leaving_receivers(session, ids)
    pending = Pending()
    windows = _windows_granted(session, ids, now=now)
    for h in hs:
        record(session, principal.actor, "handover.approved", h, now, pending=pending)
        if windows.get(h.id):  # the CRM mirrors the transition period: shadow, then owner or interim
            notify.emit_batches(
                session,
                "access.granted",
                "grants",
                windows[h.id],
                common={"handover_id": h.id, "effective_at": h.effective_at},
                now=now,
                into=pending.events,
                model=events.AccessGrantedEvent,
            )
    pending.write(session, now)
    messaging.on_approved(session, ids, now=now, settings=settings)
    followups.create_for_handovers(session, hs, now=now, settings=settings)
    # Approved after the effective time (issue 15: the clients may be with the interim owner already): the time has
    # come, so the clients move on to the planned successors now, not at the worker's next pass.
    late = [h for h in hs if h.effective_at <= now]
    if late:
        execute_many(session, late, actor=principal.actor, now=now)
    if len(hs) > 1:
        anchor_audit(session, settings, now=now, reason="joint_approval")
    return replanned


def _grant_windows(session: Session, hs: Sequence[Handover], *, actor: str, now: dt.datetime) -> None:
    """Every approved item's receiver gets a shadow grant until the effective time and an owner (successor) or
    interim grant from it; then every leaver's grants are cut at their own exit, so a leaver who also receives
    clients in the same batch is cut too. Three INSERT … SELECT per effective time, one UPDATE for the cuts."""
    by_time: dict[dt.datetime, list[int]] = defaultdict(list)
    for h in hs:
        by_time[h.effective_at].append(h.id)
    i = HandoverItem
    receiver = func.coalesce(i.successor_id, i.interim_owner_id)
    at = AccessGrant.valid_from.type

    def window(level: str, start: Any, end: Any, reason: str, *where: Any) -> AnySelect:
        return select(
            receiver, i.client_id, literal(level), literal(start, at), literal(end, at), literal(reason), i.handover_id
        ).where(*where)

    for effective_at, ids in by_time.items():
        approved = (i.handover_id.in_(ids), i.status == "approved")
        windows = [
            window("owner", effective_at, None, "handover", *approved, i.successor_id.is_not(None)),
            window("interim", effective_at, None, "handover", *approved, i.successor_id.is_(None)),
        ]
        if now < effective_at:
            windows.insert(0, window("shadow", now, effective_at, "handover transition", *approved))
        for rows in windows:
            access.insert_grants(session, rows, actor=actor, now=now)
    access.cut_leavers(session, _leavers_of([h.id for h in hs]))
    access.cut_clients(session, rolechange.moved_clients([h.id for h in hs]))


def _windows_granted(session: Session, handover_ids: Sequence[int], *, now: dt.datetime) -> dict[int | None, list[Any]]:
    """The windows these approvals just granted, as they stand after the cuts, per handover in grant order: the
    `access.granted` events' items (one query for all)."""
    g = AccessGrant
    out: dict[int | None, list[Any]] = defaultdict(list)
    for row in session.execute(
        select(g.handover_id, g.id, g.employee_id, g.client_id, g.level, g.valid_from, g.valid_until)
        .where(g.handover_id.in_(list(handover_ids)), g.created_at == now, g.revoked_at.is_(None))
        .order_by(g.id)
    ):
        out[row[0]].append(
            {
                "grant_id": row[1],
                "employee": row[2],
                "client": row[3],
                "level": row[4],
                "valid_from": row[5],
                "valid_until": row[6],
            }
        )
    return out


def _leavers_of(handover_ids: Sequence[int]) -> AnySelect:
    """(handover_id, employee_id, effective_at) of these handovers' leavers, for access to cut their grants; a
    role change's person stays, and only their grants on the moved clients are cut (`rolechange.moved_clients`)."""
    return select(
        Handover.id.label("handover_id"),
        Handover.leaver_id.label("employee_id"),
        Handover.effective_at.label("effective_at"),
    ).where(Handover.id.in_(rolechange.exits(handover_ids)))


def _cut_leaving_receivers(session: Session, handover_ids: Sequence[int]) -> None:
    """A successor or interim owner whose own exit was approved before: the grants these approvals just gave
    them end at that exit, cut by *their* handover (so cancelling their exit gives the windows back, exactly).
    Receivers who leave in the same batch were cut with it (`_grant_windows`)."""
    receivers = select(func.coalesce(HandoverItem.successor_id, HandoverItem.interim_owner_id)).where(
        HandoverItem.handover_id.in_(handover_ids)
    )
    leaving = session.scalars(
        select(Handover.id).where(
            Handover.id.not_in(handover_ids),
            Handover.leaver_id.in_(receivers),
            Handover.status.in_(("approved", "executed", "completed")),
        )
    ).all()
    if leaving:
        access.cut_leavers(session, _leavers_of(leaving))


def execute(
    session: Session,
    h: Handover,
    *,
    actor: str,
    now: dt.datetime,
    immediate: bool = False,
    settings: Settings | None = None,
) -> bool:
    """Moves ownership; idempotent. Returns False when there was nothing to do."""
    if h.status in ("executed", "completed"):
        return False
    if h.status != "approved":
        move(h, "executed", now)
    if immediate and h.effective_at > now:
        if settings is None:
            raise ValueError("an immediate execution needs settings")
        reschedule(session, h, effective_at=now, actor=actor, now=now, settings=settings)
    if h.effective_at > now:
        raise EffectiveTimeNotReached(
            f"The effective time {h.effective_at.isoformat()} has not come yet.", extra={"allowed": ["cancelled"]}
        )
    execute_many(session, [h], actor=actor, now=now, settings=settings)
    return True


def execute_many(
    session: Session,
    hs: Sequence[Handover],
    *,
    actor: str,
    now: dt.datetime,
    settings: Settings | None = None,
    recheck: bool = True,
) -> None:
    """Moves ownership for approved handovers whose effective time has come, each step one statement for all of
    them (the worker's due batch); one audit entry and one handover.executed event per handover, as before.

    A client in two of these handovers' approved items (the CRM moved it between two leavers after the first
    plan) would make the set-based owner update ambiguous: those batches run one handover at a time, in order.

    First every successor is re-checked at the effective time and late clients join (`rechecks`); at the end the
    leavers leave every account team they sat on (`seats`).
    """
    if recheck:
        rechecks.recheck(session, hs, stage="execution", actor=actor, now=now, settings=settings or get_settings())
    ids = [h.id for h in hs]
    item = HandoverItem
    if len(hs) > 1 and session.scalar(
        select(item.client_id)
        .where(item.handover_id.in_(ids), item.status == "approved")
        .group_by(item.client_id)
        .having(func.count() > 1)
        .limit(1)
    ):
        for h in hs:
            execute_many(session, [h], actor=actor, now=now, recheck=False)
        return
    # Each client of a (single, checked above) approved item moves from its leaver to the receiver, while still
    # the leaver's (or, approved late, the interim owner's it was taken over by); it remembers who held it before.
    receiver = func.coalesce(item.successor_id, item.interim_owner_id)
    for holder in (Handover.leaver_id, Handover.interim_owner_id):
        owner_moves = (
            select(item.client_id.label("client_id"), holder.label("from_owner"), receiver.label("to_owner"))
            .join(Handover, Handover.id == item.handover_id)
            .where(item.handover_id.in_(ids), item.status == "approved", holder.is_not(None), holder != receiver)
        )
        directory.move_owners(session, owner_moves, now=now, remember_former=True)
    session.execute(
        update(item)
        .where(item.handover_id.in_(ids), item.status == "approved", Client.external_id == item.client_id)
        .values(
            status="transferred",
            transferred_to_id=Client.owner_id,
            transferred_at=now,
            version=item.version + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    # A client the CRM moved elsewhere before the effective time stays where it is.
    planned_owner = func.coalesce(item.successor_id, item.interim_owner_id)
    moved_away = and_(item.handover_id.in_(ids), item.status == "transferred", item.transferred_to_id != planned_owner)
    elsewhere: dict[int, list[str]] = defaultdict(list)
    for hid, client_id in session.execute(select(item.handover_id, item.client_id).where(moved_away)):
        elsewhere[hid].append(client_id)
    if elsewhere:
        session.execute(
            update(item)
            .where(moved_away)
            .values(status="closed", attention_reason="owner changed before the effective time", transferred_to_id=None)
            .execution_options(synchronize_session=False)
        )
        for hid, clients in elsewhere.items():
            access.end_handover_grants_for_clients(session, handover_id=hid, clients=clients, now=now)
    confirm_signed_items(session, ids, now)
    continuity.on_executed(session, ids, actor=actor, now=now)
    rechecks.cover_receivers_on_leave(session, ids, actor=actor, now=now)
    directory.mark_departed(session, [h.leaver_id for h in hs if not rolechange.stays(h.reason)], now=now)
    moved = dict(
        session.execute(
            select(item.handover_id, func.count())
            .where(item.handover_id.in_(ids), item.status == "transferred")
            .group_by(item.handover_id)
        ).all()
    )
    pending = Pending()
    moves = _moves(session, ids, statuses=("transferred", "confirmed"), back=False)
    for h in hs:
        h.executed_at = now
        move(h, "executed", now)
        record(session, actor, "handover.executed", h, now, pending=pending, clients_moved=moved.get(h.id, 0))
        _reassigned(session, h, moves.get(h.id, []), back=False, now=now, into=pending.events)
    records.on_executed(session, hs, actor=actor, now=now, into=pending.events, settings=settings or get_settings())
    seats.remove_for_executed(session, hs, actor=actor, now=now, events=pending.events)
    pending.write(session, now)


def _moves(
    session: Session, handover_ids: Sequence[int], *, statuses: Sequence[str], back: bool
) -> dict[int, list[dict[str, Any]]]:
    """Each handover's owner changes (or, `back`, their reversal), in item order; one query for all."""
    item = HandoverItem
    # Approved late, the clients were taken over by the interim owner first: that is whom they move from (once).
    prev_owner = item.previous_owner_id if back else func.coalesce(Handover.interim_owner_id, item.previous_owner_id)
    rows = session.execute(
        select(item.handover_id, item.client_id, prev_owner, item.transferred_to_id, item.successor_id)
        .join(Handover, Handover.id == item.handover_id)
        .where(item.handover_id.in_(list(handover_ids)), item.status.in_(statuses))
        .order_by(item.id)
    ).all()
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for hid, c, prev, to, succ in rows:
        if to is not None and (back or to != prev):
            out[hid].append(
                {"client": c, "from": (to if back else prev), "to": (prev if back else to), "interim": succ is None}
            )
    return out


def _reassigned(
    session: Session,
    h: Handover,
    moves: Sequence[dict[str, Any]],
    *,
    back: bool,
    now: dt.datetime,
    into: notify.Events | None = None,
) -> None:
    """The CRM learns every owner change, many clients per event."""
    if moves:
        notify.emit_batches(
            session,
            "client.reassigned",
            "clients",
            moves,
            common={"handover_id": h.id, "effective_at": h.effective_at, "undo": back},
            now=now,
            into=into,
            model=events.ClientReassignedEvent,
        )


def run_due(session: Session, *, now: dt.datetime, limit: int = 50, settings: Settings | None = None) -> list[int]:
    """Executes approved handovers whose time has come; safe with several workers (SKIP LOCKED)."""
    stmt = (
        select(Handover)
        .where(Handover.status == "approved", Handover.effective_at <= now)
        .order_by(Handover.effective_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    due = list(session.scalars(stmt).all())
    if due:
        execute_many(session, due, actor="system:worker", now=now, settings=settings)
    return [h.id for h in due]


def count_due(session: Session, now: dt.datetime) -> int:
    """Approved handovers whose effective time has come and that no worker has executed yet (the metrics scrape)."""
    stmt = select(func.count()).select_from(Handover).where(Handover.status == "approved", Handover.effective_at <= now)
    return int(session.scalar(stmt) or 0)


def cancel(session: Session, h: Handover, *, actor: str, now: dt.datetime, reason: str | None) -> Handover:
    move(h, "cancelled", now)
    session.execute(
        update(HandoverItem).where(HandoverItem.handover_id == h.id).values(status="cancelled", updated_at=now)
    )
    directory.clear_exit(session, h.leaver_id, status=h.leaver_status_before or "active", only_if_leaving=True, now=now)
    h.cancelled_by, h.cancelled_at, h.cancel_reason = actor, now, reason
    records.on_cancelled(session, h, actor=actor, now=now)
    continuity.on_cancelled(session, h, now=now)
    # A leaver who stays departed (they had left before it was opened) keeps the exit this handover gave them, so
    # its cuts stand; anyone else gets their grants back, as far as other handovers' cuts allow.
    session.flush()
    stays_departed = session.scalar(select(Employee.status).where(Employee.external_id == h.leaver_id)) == "departed"
    access.on_cancel(session, handover_id=h.id, actor=actor, now=now, keep_cuts=stays_departed)
    messaging.on_cancelled(session, handover_id=h.id)
    followups.cancel_for_handover(session, handover_id=h.id, now=now)
    seats.restore(session, h, actor=actor, now=now)
    record(session, actor, "handover.cancelled", h, now, reason=reason)
    return h


def undo(
    session: Session, h: Handover, *, actor: str, now: dt.datetime, reason: str | None, settings: Settings | None
) -> Handover:
    if h.reason == "leave":
        raise LeaveNotUndoable("A leave is not undone: cancel it while scheduled.", extra={"allowed": []})
    window = dt.timedelta(days=settings.undo_window_days if settings else 30)
    if h.status in ("executed", "completed") and h.executed_at and now > h.executed_at + window:
        allowed = [t for t in TRANSITIONS[h.status] if t != "undone"]
        raise UndoWindowPassed(f"The undo window of {window.days} days has passed.", extra={"allowed": allowed})
    move(h, "undone", now)
    item = HandoverItem
    # Only clients still with the owner we gave them go back; anything the CRM moved since stays put.
    current_owner = select(Client.owner_id).where(Client.external_id == item.client_id).scalar_subquery()
    session.execute(
        update(item)
        .where(
            item.handover_id == h.id,
            item.status.in_(("transferred", "confirmed", "closed")),
            item.transferred_to_id == current_owner,
        )
        .values(status="reverted", reverted_at=now, version=item.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    back = select(
        item.client_id.label("client_id"),
        item.transferred_to_id.label("from_owner"),
        item.previous_owner_id.label("to_owner"),
    ).where(item.handover_id == h.id, item.status == "reverted")
    directory.move_owners(session, back, now=now, remember_former=False)
    directory.clear_exit(session, h.leaver_id, status="active", only_if_leaving=False, now=now)
    h.undone_by, h.undone_at = actor, now
    staying = select(item.client_id).where(
        item.handover_id == h.id, item.status.in_(("transferred", "confirmed", "closed"))
    )
    access.on_undo(session, handover_id=h.id, actor=actor, now=now, staying=staying)
    # The person is back: exits of their handovers cancelled while they stayed departed stand no more either.
    cancelled = select(Handover.id).where(Handover.leaver_id == h.leaver_id, Handover.status == "cancelled")
    for stale in session.scalars(cancelled):
        access.restore_leaver(session, stale)
    followups.cancel_for_handover(session, handover_id=h.id, now=now)
    seats.restore(session, h, actor=actor, now=now)
    record(session, actor, "handover.undone", h, now, reason=reason)
    _reassigned(
        session, h, _moves(session, [h.id], statuses=("reverted",), back=True).get(h.id, []), back=True, now=now
    )
    records.on_undone(session, h, actor=actor, now=now)
    return h


def complete(session: Session, h: Handover, *, actor: str, now: dt.datetime, reason: str | None) -> Handover:
    move(h, "completed", now)
    h.completed_by, h.completed_at, h.completion_reason = actor, now, reason
    if reason:
        session.execute(
            update(HandoverItem)
            .where(HandoverItem.handover_id == h.id, HandoverItem.status == "transferred")
            .values(status="closed", updated_at=now)
        )
    record(session, actor, "handover.completed", h, now, reason=reason)
    return h


def confirm_signed_items(session: Session, handover_ids: Sequence[int], now: dt.datetime) -> None:
    """At execution, items signed by both sides during the transition become confirmed."""
    session.execute(
        update(HandoverItem)
        .where(
            HandoverItem.handover_id.in_(handover_ids),
            HandoverItem.status == "transferred",
            HandoverItem.outgoing_signed_at.is_not(None),
            HandoverItem.incoming_signed_at.is_not(None),
        )
        .values(status="confirmed", updated_at=now)
    )
