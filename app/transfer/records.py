"""What a handover does with the leaver's records (issue 16 points 2 and 3), the workflow's side.

The rules (settings, over them the handover's `record_rules`, over those one record's override): open records of a
client follow the client's receiver (successor or interim owner); closed ones keep their owner; client-less open ones
go to the leaver's manager (the interim owner rule: walking up past anyone who cannot act) unless the rules keep
them; open meetings due within the transition period stay with the leaver and the receiver joins them as attendee.
The book module computes the plan from facts handed in (`book.plan_statement`) and keeps the moves (record_move,
step by step); this module hands in who leaves, where each client goes and the overrides, and writes the audit
entries and the `record.reassigned` events. The same plan is the preview (`GET /v1/handovers/{id}/records`), the
interim take-over's and the execution's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, exists, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.book import service as book
from app.core.config import Settings
from app.core.db import AnySelect, UTCDateTime
from app.core.http import etag
from app.directory.models import Employee
from app.notify import events
from app.notify import service as notify
from app.transfer import interim as interim_rule
from app.transfer import rolechange, schemas
from app.transfer.errors import RecordNotInHandover, RecordsLocked, RecordTargetInvalid
from app.transfer.models import Handover, HandoverItem, HandoverRecordOverride

OVERRIDABLE = ("draft", "planned", "approved")


def rules_of(h: Handover, settings: Settings) -> schemas.RecordRulesOut:
    """The handover's own rules over the settings' defaults."""
    own = h.record_rules or {}
    return schemas.RecordRulesOut(
        clientless=own.get("clientless") or settings.record_clientless,
        meeting_transition_days=(
            own["meeting_transition_days"]
            if own.get("meeting_transition_days") is not None
            else settings.meeting_transition_days
        ),
    )


def _leavers(session: Session, hs: Sequence[Handover], *, settings: Settings, at: dt.datetime | None) -> AnySelect:
    """(handover_id, leaver, clientless_to, meeting_from, meeting_until) per handover. `at`: when the manager rule
    is asked (null: at each effective time). A role change keeps the person: nothing client-less moves, no meeting
    stays (they stay anyway)."""
    rows = []
    for h in hs:
        rules = rules_of(h, settings)
        stays = rolechange.stays(h.reason)
        clientless: str | None = None
        if rules.clientless == "manager" and not stays:
            clientless = h.interim_owner_id or interim_rule.interim_owner(
                session, h.leaver_id, at=at or h.effective_at, settings=settings
            )
        days = 0 if stays else rules.meeting_transition_days
        rows.append(
            select(
                literal(h.id).label("handover_id"),
                literal(h.leaver_id, String).label("leaver"),
                literal(clientless, String).label("clientless_to"),
                literal(h.effective_at, UTCDateTime).label("meeting_from"),
                literal(h.effective_at + dt.timedelta(days=days), UTCDateTime).label("meeting_until"),
            )
        )
    return select(union_all(*rows).subquery()) if len(rows) > 1 else rows[0]


def _overrides(ids: Sequence[int], *, acting_at: dt.datetime | None = None) -> AnySelect:
    """The handovers' overrides; with `acting_at` (the execution, the take-over) only those whose receiver can
    still act then: one who left since the override falls back to the rules."""
    o = HandoverRecordOverride
    stmt = select(
        o.handover_id, o.kind, o.external_id, o.to_owner_id.label("to_owner"), o.version.label("version")
    ).where(o.handover_id.in_(list(ids)))
    if acting_at is not None:
        e = Employee
        can_act = exists().where(
            e.external_id == o.to_owner_id,
            e.status != "departed",
            or_(e.exit_at.is_(None), e.exit_at > acting_at),
        )
        stmt = stmt.where(or_(o.to_owner_id.is_(None), can_act))
    return stmt


def _planned_clients(ids: Sequence[int]) -> AnySelect:
    """Where each client of the handovers goes as planned (the preview): the receiver of every live item."""
    item = HandoverItem
    to = func.coalesce(item.transferred_to_id, item.successor_id, item.interim_owner_id)
    return select(item.handover_id, item.client_id, to.label("to_owner")).where(
        item.handover_id.in_(list(ids)),
        item.status.in_(("proposed", "approved", "transferred", "confirmed")),
        to.is_not(None),
    )


def _arrived_clients(ids: Sequence[int]) -> AnySelect:
    """Where each client went at the execution: the items that reached their planned owner."""
    item = HandoverItem
    return select(item.handover_id, item.client_id, item.transferred_to_id.label("to_owner")).where(
        item.handover_id.in_(list(ids)),
        item.status.in_(("transferred", "confirmed")),
        item.transferred_to_id.is_not(None),
    )


def plan_of(session: Session, h: Handover, *, settings: Settings) -> AnySelect:
    return book.plan_statement(
        _leavers(session, [h], settings=settings, at=None), _planned_clients([h.id]), _overrides([h.id])
    )


# ---- execution, take-over, undo, cancellation ----------------------------------------------------------


def on_executed(
    session: Session,
    handovers: Sequence[Handover],
    *,
    actor: str,
    now: dt.datetime,
    into: notify.Events,
    settings: Settings,
) -> dict[int, int]:
    """After the owner moves: the leavers' records do what the plan says, one statement per table for the whole
    batch (from the leaver, or from the interim owner that took them over, approved late). Returns the records
    changed per handover."""
    hs = [h for h in handovers if h.reason != "leave"]
    if not hs:
        return {}
    ids = [h.id for h in hs]
    plan = book.plan_statement(
        _leavers(session, hs, settings=settings, at=now), _arrived_clients(ids), _overrides(ids, acting_at=now)
    )
    book.apply_plan(session, plan, handovers=ids, now=now)
    moved = book.moves_of(session, ids, back=False, at=now)
    for h in hs:
        _announce(session, h, moved.get(h.id, []), actor=actor, back=False, now=now, into=into)
    return {hid: len(rows) for hid, rows in moved.items()}


def on_taken_over(
    session: Session, h: Handover, *, who: str, clients: AnySelect, actor: str, now: dt.datetime, settings: Settings
) -> int:
    """The interim take-over (continuity rule 4): the leaver's records do what the plan says with every client going
    to the interim owner `who` (`clients`: the client ids taken over), overrides honoured; step 1 of their moves."""
    c = clients.subquery()
    moving = select(literal(h.id).label("handover_id"), c.c.client_id, literal(who, String).label("to_owner"))
    plan = book.plan_statement(
        _leavers(session, [h], settings=settings, at=now), moving, _overrides([h.id], acting_at=now)
    )
    book.apply_plan(session, plan, handovers=[h.id], now=now)
    moved = book.moves_of(session, [h.id], back=False, at=now).get(h.id, [])
    _announce(session, h, moved, actor=actor, back=False, now=now, into=None)
    return len(moved)


def on_undone(session: Session, h: Handover, *, actor: str, now: dt.datetime) -> int:
    """Every record the handover moved goes back, step by step (see `book.restore_owners`); returns how many."""
    book.restore_owners(session, h.id, now=now)
    back = book.moves_of(session, [h.id], back=True, at=now).get(h.id, [])
    _announce(session, h, back, actor=actor, back=True, now=now, into=None)
    return len(back)


def on_cancelled(session: Session, h: Handover, *, actor: str, now: dt.datetime) -> int:
    """Cancelled after the take-over: the records go back with the clients (as `continuity.on_cancelled`); a leaver
    already departed at the opening keeps nothing, so their records stay with the interim owner too."""
    if h.interim_at is None or h.leaver_status_before == "departed":
        return 0
    return on_undone(session, h, actor=actor, now=now)


def on_repaired(session: Session, moves: AnySelect, *, now: dt.datetime) -> int:
    """The ownership sweeper moved clients off an owner nobody can act for: their open records follow."""
    moved = book.follow_clients(session, moves, now=now)
    if moved:
        audit.record(
            session,
            actor="system:sweeper",
            action="record.reassigned",
            entity_type="record",
            entity_id="repair",
            data={"records": len(moved), "repair": True},
            at=now,
        )
        notify.emit_batches(
            session,
            "record.reassigned",
            "records",
            moved,
            common={"handover_id": None, "effective_at": now, "undo": False},
            now=now,
            model=events.RecordReassignedEvent,
        )
    return len(moved)


def _announce(
    session: Session,
    h: Handover,
    moves: list[dict[str, object]],
    *,
    actor: str,
    back: bool,
    now: dt.datetime,
    into: notify.Events | None,
) -> None:
    if not moves:
        return
    audit.record(
        session,
        actor=actor,
        action="record.restored" if back else "record.reassigned",
        entity_type="handover",
        entity_id=str(h.id),
        data={"records": len(moves), "undo": back},
        at=now,
    )
    notify.emit_batches(
        session,
        "record.reassigned",
        "records",
        moves,
        common={"handover_id": h.id, "effective_at": h.effective_at, "undo": back},
        now=now,
        into=into,
        model=events.RecordReassignedEvent,
    )


# ---- the preview and the overrides ---------------------------------------------------------------------


def row_etag(h: Handover, kind: str, external_id: str, version: int | None) -> str:
    return etag(version or 0, f"record-{kind}-{external_id}-of-handover", h.id)


def row_out(h: Handover, row: Any) -> schemas.RecordPlanOut:
    return schemas.RecordPlanOut(
        kind=row.kind,
        external_id=row.external_id,
        title=row.title,
        client=row.client_id,
        status=row.status,
        due_at=row.due_at,
        amount=float(row.amount) if row.amount is not None else None,
        currency=row.currency,
        owner=row.owner,
        rule=row.rule,
        to=row.to_owner if row.to_owner != row.owner else None,
        attendee=row.attendee,
        etag=row_etag(h, row.kind, row.external_id, row.override_version),
    )


def preview(
    session: Session, h: Handover, *, settings: Settings, receiver: str | None, limit: int, offset: int
) -> list[schemas.RecordPlanOut]:
    """A page of what each of the leaver's records will do; `receiver`: only the rows it receives or attends."""
    plan = plan_of(session, h, settings=settings)
    if receiver is not None:
        p = plan.subquery()
        plan = select(p).where((p.c.to_owner == receiver) | (p.c.attendee == receiver))
    return [row_out(h, r) for r in book.plan_rows(session, plan, limit=limit, offset=offset)]


def find_row(session: Session, h: Handover, kind: str, external_id: str, *, settings: Settings) -> Any:
    row = book.plan_row(session, plan_of(session, h, settings=settings), kind, external_id)
    if row is None:
        raise RecordNotInHandover(f"No {kind} {external_id!r} among the records of handover {h.id}.")
    return row


def set_override(
    session: Session,
    h: Handover,
    kind: str,
    external_id: str,
    body: schemas.RecordOverride,
    *,
    actor: str,
    now: dt.datetime,
) -> None:
    """One record's fate by hand: `to` receives it at the execution (or null keeps it); audited. Refused once the
    handover was executed (409) or for someone who cannot hold it (422)."""
    if h.status not in OVERRIDABLE:
        raise RecordsLocked(
            f"A handover in status {h.status} no longer changes what its records do.", extra={"status": h.status}
        )
    if body.to is not None:
        e = session.get(Employee, body.to)
        problem = None
        if e is None:
            problem = "unknown employee"
        elif body.to == h.leaver_id:
            problem = "the leaver cannot receive their own records"
        elif e.status != "active" or e.exit_at is not None:
            problem = f"employee is {e.status}{' with an exit date' if e.exit_at is not None else ''}"
        if problem is not None:
            raise RecordTargetInvalid(
                f"{body.to!r} cannot hold the record: {problem}.",
                errors=[{"loc": ["body", "to"], "msg": problem, "type": "invalid_target"}],
            )
    o = session.get(HandoverRecordOverride, (h.id, kind, external_id), with_for_update=True)
    before = None if o is None else {"to": o.to_owner_id}
    if o is None:
        o = HandoverRecordOverride(handover_id=h.id, kind=kind, external_id=external_id, version=0)
        session.add(o)
    o.to_owner_id, o.reason = body.to, body.reason
    o.version = (o.version or 0) + 1
    o.updated_by, o.updated_at = actor, now
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="handover.record_override",
        entity_type="handover",
        entity_id=str(h.id),
        data={"kind": kind, "external_id": external_id, "to": body.to, "reason": body.reason, "before": before},
        at=now,
    )


def set_rules(session: Session, h: Handover, rules: schemas.RecordRules, *, actor: str, now: dt.datetime) -> None:
    """The handover's record rules (PATCH /v1/handovers/{id}), until the execution; audited."""
    if h.status not in OVERRIDABLE:
        raise RecordsLocked(
            f"A handover in status {h.status} no longer changes what its records do.", extra={"status": h.status}
        )
    before = h.record_rules
    h.record_rules = rules.model_dump(exclude_none=True) or None
    h.version += 1
    h.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="handover.record_rules",
        entity_type="handover",
        entity_id=str(h.id),
        data={"record_rules": h.record_rules, "before": before},
        at=now,
    )
