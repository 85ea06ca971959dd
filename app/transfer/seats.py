"""Account-team seats: at the effective time the leaver leaves every other client's account team; the handover
keeps each seat (handover_seat) and gives it back on undo (or cancel), exactly.

The directory owns account_team_member and writes it (`directory.remove_team_seats` / `restore_team_seats`);
this module decides which seats and remembers them. The CRM hears `account_team.changed`, batched like
`client.reassigned`: `{"handover_id", "effective_at", "undo", "batch", "batches", "seats": [{"client",
"employee", "role", "change": "removed" | "restored"}]}`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, insert, literal, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.directory import service as directory
from app.directory.models import AccountTeamMember
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
) -> dict[int, int]:
    s = HandoverSeat
    where: list[ColumnElement[bool]] = [s.handover_id.in_(list(ids)), s.restored_at.is_(None)]
    if change == "removed":
        where.append(s.removed_at == now)
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
