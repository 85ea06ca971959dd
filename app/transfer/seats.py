"""Account-team seats: at the effective time the leaver leaves every other client's account team; the handover
keeps each seat (handover_seat) and gives it back on undo (or cancel), exactly.

The directory owns account_team_member and writes it (`directory.remove_team_seats` / `restore_team_seats`);
this module decides which seats and remembers them. The CRM hears `account_team.changed`, batched like
`client.reassigned`: `{"handover_id", "effective_at", "undo", "batch", "batches", "seats": [{"client",
"employee", "role", "change": "removed" | "restored"}]}`.

A departed person sits on no team. When the CRM puts one back on a client's team after their handover was executed
(a client upsert naming them), the upsert is accepted and the seat dropped again in the same transaction
(`drop_departed`, bound through `rechecks.adopt_late_clients`): recorded on their executed handover (so an undo gives
it back), audited (`handover.seats_removed`) and told to the CRM (`account_team.changed`). A departed person with no
executed handover loses the seat all the same, audited on the client (`client.team_seat_dropped`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, insert, literal, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core import bulk
from app.directory import service as directory
from app.directory.models import AccountTeamMember, Employee
from app.notify import events as event_models
from app.notify import service as notify
from app.transfer.models import Handover, HandoverSeat

EVENT = "account_team.changed"


def remove_for_executed(
    session: Session,
    handovers: Sequence[Handover],
    *,
    actor: str,
    now: dt.datetime,
    events: notify.Events | None = None,
) -> dict[int, int]:
    """Every seat of these handovers' leavers is recorded on its handover, then leaves its team: one INSERT …
    SELECT and one DELETE for the batch. Returns the number of seats removed per handover."""
    ids = [h.id for h in handovers]
    if not ids:
        return {}
    m = AccountTeamMember
    seats = (
        select(
            Handover.id,
            m.client_id,
            m.employee_id,
            m.role,
            literal(now, HandoverSeat.removed_at.type),
        )
        .join(Handover, Handover.leaver_id == m.employee_id)
        .where(Handover.id.in_(ids))
    )
    session.execute(
        insert(HandoverSeat).from_select(["handover_id", "client_id", "employee_id", "role", "removed_at"], seats)
    )
    recorded = select(HandoverSeat.client_id, HandoverSeat.employee_id).where(
        HandoverSeat.handover_id.in_(ids), HandoverSeat.removed_at == now, HandoverSeat.restored_at.is_(None)
    )
    directory.remove_team_seats(session, recorded)
    return _announce(session, ids, handovers, change="removed", actor=actor, now=now, events=events)


def drop_departed(session: Session, clients: Sequence[str], *, actor: str, now: dt.datetime) -> int:
    """Departed people on these clients' teams (the CRM just wrote them) leave them again: each seat is kept on the
    person's latest executed handover (a seat that handover already remembers is taken again, its role updated) and
    announced like the seats taken at execution. One read of the seats per 5,000 clients; returns how many left."""
    m = AccountTeamMember
    found: list[Any] = []
    for part in bulk.chunks(sorted(set(clients)), 5000):
        found.extend(
            session.execute(
                select(m.client_id, m.employee_id, m.role)
                .join(Employee, Employee.external_id == m.employee_id)
                .where(bulk.among(session, m.client_id, part), Employee.status == "departed")
                .order_by(m.client_id, m.employee_id)
            ).all()
        )
    if not found:
        return 0
    gone = sorted({r.employee_id for r in found})
    latest: dict[str, Handover] = {}
    for h in session.scalars(
        select(Handover)
        .where(Handover.leaver_id.in_(gone), Handover.status.in_(("executed", "completed")))
        .order_by(Handover.id)
    ):
        latest[h.leaver_id] = h
    s = HandoverSeat
    kept = {
        (hid, c)
        for hid, c in session.execute(
            select(s.handover_id, s.client_id).where(s.handover_id.in_([h.id for h in latest.values()]))
        )
    }
    fresh: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    loose: list[Any] = []
    for r in found:
        of = latest.get(r.employee_id)
        if of is None:
            loose.append(r)
            continue
        row = {"handover_id": of.id, "client_id": r.client_id, "employee_id": r.employee_id, "role": r.role}
        (again if (of.id, r.client_id) in kept else fresh).append(row)
    if fresh:
        session.execute(insert(s), [{**row, "removed_at": now, "restored_at": None} for row in fresh])
    for row in again:
        session.execute(
            update(s)
            .where(s.handover_id == row["handover_id"], s.client_id == row["client_id"])
            .values(employee_id=row["employee_id"], role=row["role"], removed_at=now, restored_at=None)
            .execution_options(synchronize_session=False)
        )
    dropped = sorted({r.client_id for r in found})
    where = (bulk.among(session, m.client_id, dropped), Employee.status == "departed")
    directory.remove_team_seats(
        session,
        select(m.client_id, m.employee_id).join(Employee, Employee.external_id == m.employee_id).where(*where),
    )
    touched = [h for h in latest.values() if any(r.employee_id == h.leaver_id for r in found)]
    if touched:
        ids = [h.id for h in touched]
        _announce(session, ids, touched, change="removed", actor=actor, now=now, events=None, clients=dropped)
    if loose:
        audit.record_many(
            session,
            [
                audit.Change(
                    actor,
                    "client.team_seat_dropped",
                    "client",
                    r.client_id,
                    {"employee": r.employee_id, "role": r.role, "reason": "the employee has departed"},
                )
                for r in loose
            ],
            at=now,
        )
    return len(found)


def restore(session: Session, h: Handover, *, actor: str, now: dt.datetime, events: notify.Events | None = None) -> int:
    """The seats this handover took come back (undo, cancel); returns how many it had taken."""
    s = HandoverSeat
    open_seats = (s.handover_id == h.id, s.restored_at.is_(None))
    if session.scalar(select(s.client_id).where(*open_seats).limit(1)) is None:
        return 0
    directory.restore_team_seats(session, select(s.client_id, s.employee_id, s.role).where(*open_seats))
    counts = _announce(session, [h.id], [h], change="restored", actor=actor, now=now, events=events)
    session.execute(update(s).where(*open_seats).values(restored_at=now).execution_options(synchronize_session=False))
    return counts.get(h.id, 0)


def _announce(
    session: Session,
    ids: Sequence[int],
    handovers: Sequence[Handover],
    *,
    change: str,
    actor: str,
    now: dt.datetime,
    events: notify.Events | None,
    clients: Sequence[str] | None = None,
) -> dict[int, int]:
    s = HandoverSeat
    where: list[ColumnElement[bool]] = [s.handover_id.in_(list(ids)), s.restored_at.is_(None)]
    if change == "removed":
        where.append(s.removed_at == now)
    if clients is not None:
        where.append(bulk.among(session, s.client_id, list(clients)))
    by_handover: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for hid, client_id, employee_id, role in session.execute(
        select(s.handover_id, s.client_id, s.employee_id, s.role).where(*where).order_by(s.handover_id, s.client_id)
    ):
        by_handover[hid].append({"client": client_id, "employee": employee_id, "role": role, "change": change})
    changes = []
    for h in handovers:
        seats = by_handover.get(h.id)
        if not seats:
            continue
        notify.emit_batches(
            session,
            EVENT,
            "seats",
            seats,
            common={"handover_id": h.id, "effective_at": h.effective_at, "undo": change == "restored"},
            now=now,
            into=events,
            model=event_models.AccountTeamChangedEvent,
        )
        changes.append(
            audit.Change(
                actor,
                f"handover.seats_{change}",
                "handover",
                str(h.id),
                {"leaver": h.leaver_id, "seats": [[x["client"], x["role"]] for x in seats]},
            )
        )
    if changes:
        audit.record_many(session, changes, at=now)
    return {hid: len(v) for hid, v in by_handover.items()}
