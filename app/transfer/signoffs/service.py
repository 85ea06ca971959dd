"""Each item's checklist and the two signatures (outgoing, incoming) that confirm it; the last one completes the
handover."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.auth import Principal
from app.transfer import service, visibility
from app.transfer.checklists import service as checklists
from app.transfer.errors import (
    AlreadySigned,
    ChecklistIncomplete,
    ChecklistLocked,
    HandoverNotSignable,
    ItemNotSignable,
    MitigationNotFound,
    NotInvolved,
    NotTheSigner,
    SignOffReasonRequired,
)
from app.transfer.models import Handover, HandoverItem


def _maybe_complete(session: Session, h: Handover, now: dt.datetime) -> None:
    if h.status != "executed" or now < h.effective_at:
        return
    open_items = session.scalar(
        select(func.count())
        .select_from(HandoverItem)
        .where(HandoverItem.handover_id == h.id, HandoverItem.status.not_in(("confirmed", "closed")))
    )
    if not open_items:
        service.complete(session, h, actor="system:sign-off", now=now, reason=None)


def involved(session: Session, principal: Principal, h: Handover, item: HandoverItem) -> bool:
    """The leaver, this item's successor, interim owner or receiver, or whoever manages the handover: a manager who is
    a successor on another team's handover works on their own items only."""
    emp = principal.employee
    if emp is not None and emp in (h.leaver_id, item.successor_id, item.interim_owner_id, item.transferred_to_id):
        return True
    return visibility.manages(session, principal, h)


def set_checklist(
    session: Session,
    h: Handover,
    item: HandoverItem,
    key: str,
    *,
    done: bool,
    note: str | None,
    principal: Principal,
    now: dt.datetime,
    evidence: list[dict[str, Any]] | None = None,
) -> HandoverItem:
    if h.status not in ("approved", "executed"):
        raise ChecklistLocked(
            f"The checklist of a {h.status} handover cannot change.", extra={"allowed": ["approved", "executed"]}
        )
    if not involved(session, principal, h, item):
        raise NotInvolved(
            "Only the leaver, this item's successor or interim owner, or a manager of the handover may update this "
            "checklist."
        )
    checklist = dict(item.checklist or {})
    if key.startswith("mitigation:") and key not in checklist:
        raise MitigationNotFound(f"Item {item.id} has no mitigation {key.removeprefix('mitigation:')!r}.")
    checklist[key] = {
        "done": done,
        "note": note,
        "by": principal.actor,
        "at": now.isoformat(),
        "evidence": list(evidence or []),
    }
    item.checklist = checklist
    item.version += 1
    item.updated_at = now
    audit.record(
        session,
        actor=principal.actor,
        action="handover.item.checklist",
        entity_type="handover_item",
        entity_id=str(item.id),
        data={"handover": h.id, "key": key, "done": done, "evidence": len(evidence or [])},
        at=now,
    )
    session.flush()
    return item


def _require_checklist(session: Session, item: HandoverItem) -> None:
    """Neither side signs while a required entry (the tier's template, the item's mitigations) is open."""
    open_items = checklists.open_required(session, item)
    if open_items:
        raise ChecklistIncomplete(
            f"Item {item.id} cannot be signed off while required checklist entries are open: {', '.join(open_items)}.",
            extra={"open_items": open_items},
        )


def sign_off(
    session: Session,
    h: Handover,
    item: HandoverItem,
    *,
    side: str,
    reason: str | None,
    principal: Principal,
    now: dt.datetime,
) -> HandoverItem:
    if h.status not in ("approved", "executed"):
        raise HandoverNotSignable(
            f"A {h.status} handover cannot be signed off.", extra={"allowed": ["approved", "executed"]}
        )
    if item.status in ("cancelled", "reverted", "closed"):
        raise ItemNotSignable(f"A {item.status} item cannot be signed off.")
    emp = principal.employee
    if side == "outgoing":
        if item.outgoing_signed_at is not None:
            raise AlreadySigned("The outgoing side already signed.")
        if now < h.effective_at:
            if emp != h.leaver_id:
                raise NotTheSigner("Until the effective time only the leaver signs the outgoing side.")
        else:
            if not (principal.role in ("manager", "admin") and (principal.role == "admin" or emp == h.manager_id)):
                raise NotTheSigner("After the effective time the leaver's manager signs for the leaver.")
            if not reason:
                raise SignOffReasonRequired(
                    "A manager signing for the leaver must give a reason.",
                    errors=[{"loc": ["body", "reason"], "msg": "required", "type": "missing"}],
                )
        _require_checklist(session, item)
        item.outgoing_signed_by, item.outgoing_signed_at, item.outgoing_signoff_reason = principal.actor, now, reason
    else:
        if item.incoming_signed_at is not None:
            raise AlreadySigned("The incoming side already signed.")
        receiver = item.transferred_to_id or item.successor_id or item.interim_owner_id
        if emp is None or emp != receiver:
            raise NotTheSigner("Only the successor signs the incoming side.")
        _require_checklist(session, item)
        item.incoming_signed_by, item.incoming_signed_at = principal.actor, now
    if item.outgoing_signed_at and item.incoming_signed_at and item.status == "transferred":
        item.status = "confirmed"
    item.version += 1
    item.updated_at = now
    audit.record(
        session,
        actor=principal.actor,
        action=f"handover.item.signed_{side}",
        entity_type="handover_item",
        entity_id=str(item.id),
        data={"handover": h.id, "reason": reason, "status": item.status},
        at=now,
    )
    session.flush()
    _maybe_complete(session, h, now)
    return item
