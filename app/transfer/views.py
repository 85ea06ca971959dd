"""What the handover routes answer: a handover's header and its items as the API shows them."""

from __future__ import annotations

from fastapi import Response
from sqlalchemy.orm import Session

from app.core.http import etag
from app.directory.models import Client
from app.transfer import leave, schemas, visibility
from app.transfer.models import Handover, HandoverItem


def handover_out(
    session: Session, h: Handover, c: visibility.Counts | None = None, *, view: schemas.View = "all"
) -> schemas.HandoverOut:
    if c is None:
        c = visibility.counts(session, [h.id])[h.id]
    return schemas.HandoverOut(
        id=h.id,
        leaver=h.leaver_id,
        manager=h.manager_id,
        reason=h.reason,
        destination_competitor=h.destination_competitor,
        status=h.status,
        effective_at=h.effective_at,
        return_at=h.return_at,
        delegate=h.delegate_id,
        source=h.source,
        candidate_pool=h.candidate_pool or {},
        created_by=h.created_by,
        created_at=h.created_at,
        planned_at=h.planned_at,
        approved_by=h.approved_by,
        approved_at=h.approved_at,
        executed_at=h.executed_at,
        completed_at=h.completed_at,
        completion_reason=h.completion_reason,
        cancelled_by=h.cancelled_by,
        cancelled_at=h.cancelled_at,
        cancel_reason=h.cancel_reason,
        undone_by=h.undone_by,
        undone_at=h.undone_at,
        approval_deadline=h.approval_deadline,
        reminders_sent=h.reminders_sent or 0,
        version=h.version,
        item_counts=c.statuses,
        risk_bands=c.bands,
        needs_attention=c.needs_attention,
        total_exposure=c.exposure,
        allowed_transitions=leave.allowed_transitions(h),
        confidentiality={
            k: schemas.ConfidentialityStepOut.model_validate(v) for k, v in (h.confidentiality or {}).items()
        },
        view=view,
    )


def view_out(session: Session, v: visibility.HandoverView, c: visibility.Counts | None = None) -> schemas.HandoverOut:
    """The header as the view shows it: counts and exposure over the items the caller sees."""
    if c is None:
        c = visibility.view_counts(session, [v])[v.handover.id]
    return handover_out(session, v.handover, c, view=v.scope)


def item_out(item: HandoverItem, client: Client, *, own: bool = False) -> schemas.ItemOut:
    """With `own` (a participant's view), the runner-up is left out of the reasons: that is a colleague's fit."""
    reasons = item.reasons or {}
    if own:
        reasons = {k: v for k, v in reasons.items() if k != "runner_up"}
    return schemas.ItemOut(
        id=item.id,
        handover_id=item.handover_id,
        client=item.client_id,
        client_name=client.name,
        tier=client.tier,
        previous_owner=item.previous_owner_id,
        successor=item.successor_id,
        interim_owner=item.interim_owner_id,
        status=item.status,
        needs_attention=item.needs_attention,
        attention_reason=item.attention_reason,
        risk_score=float(item.risk_score) if item.risk_score is not None else None,
        risk_band=item.risk_band,
        exposure=float(item.exposure) if item.exposure is not None else None,
        risk=item.risk_factors or {},
        reasons=reasons,
        manual=item.manual,
        override_reason=item.override_reason,
        forced=item.forced,
        checklist=item.checklist or {},
        outgoing_signed_by=item.outgoing_signed_by,
        outgoing_signed_at=item.outgoing_signed_at,
        incoming_signed_by=item.incoming_signed_by,
        incoming_signed_at=item.incoming_signed_at,
        transferred_to=item.transferred_to_id,
        transferred_at=item.transferred_at,
        version=item.version,
    )


def item_response(
    session: Session, v: visibility.HandoverView, item: HandoverItem, response: Response
) -> schemas.ItemOut:
    """An item as answered by the routes that read or change it, with its ETag."""
    client = session.get(Client, item.client_id)
    assert client is not None
    response.headers["ETag"] = etag(item.version, "item", item.id)
    return item_out(item, client, own=v.own is not None)
