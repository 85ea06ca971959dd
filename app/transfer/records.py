"""A handover's clients take their open records along (issue 16 point 3): at execution a moved client's open deals,
tasks, cases, … follow it to its new owner (successor or interim owner); closed ones keep their owner; undo gives each
moved record back. The book module keeps the moves (record_move); this is the workflow's side: which clients moved
from whom to whom, the audit entry and the `record.reassigned` events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, union_all
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.book import service as book
from app.notify import events
from app.notify import service as notify
from app.transfer.models import Handover, HandoverItem


def on_executed(
    session: Session, handovers: Sequence[Handover], *, actor: str, now: dt.datetime, into: notify.Events
) -> dict[int, int]:
    """After the owner moves: every client of these handovers that reached its planned owner is a move from the
    leaver (or from the interim owner that held it, approved late) to that owner; one statement per table for the
    whole batch. Returns the records moved per handover."""
    ids = [h.id for h in handovers]
    if not ids:
        return {}
    item = HandoverItem
    arrived = item.status.in_(("transferred", "confirmed"))
    moves = union_all(
        *(
            select(
                item.handover_id.label("handover_id"),
                item.client_id.label("client_id"),
                holder.label("from_owner"),
                item.transferred_to_id.label("to_owner"),
            )
            .join(Handover, Handover.id == item.handover_id)
            .where(item.handover_id.in_(ids), arrived, holder.is_not(None), item.transferred_to_id.is_not(None))
            for holder in (Handover.leaver_id, Handover.interim_owner_id)
        )
    )
    book.follow_owners(session, select(moves.subquery()), handovers=ids, now=now)
    moved = book.moves_of(session, ids, back=False)
    for h in handovers:
        _announce(session, h, moved.get(h.id, []), actor=actor, back=False, now=now, into=into)
    return {hid: len(rows) for hid, rows in moved.items()}


def on_undone(session: Session, h: Handover, *, actor: str, now: dt.datetime) -> int:
    """Every record the handover moved goes back (see `book.restore_owners`); returns how many."""
    book.restore_owners(session, h.id, now=now)
    back = book.moves_of(session, [h.id], back=True).get(h.id, [])
    _announce(session, h, back, actor=actor, back=True, now=now, into=None)
    return len(back)


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
