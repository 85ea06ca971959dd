"""What the handover routes answer: a handover's header and its items as the API shows them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Response
from sqlalchemy import and_, case, or_, select, true
from sqlalchemy.orm import Session

from app.book import service as book
from app.core.config import get_settings
from app.core.http import etag
from app.directory.models import Client
from app.transfer import leave, schemas, visibility
from app.transfer import records as record_plans
from app.transfer.models import Handover, HandoverItem

RecordTotals = dict[str, schemas.RecordKindTotal]


def _holder() -> Any:
    """Who holds the records that go with an item's client: its receiver once it arrived, else the owner before."""
    i = HandoverItem
    arrived = and_(i.status.in_(("transferred", "confirmed")), i.transferred_to_id.is_not(None))
    return case((arrived, i.transferred_to_id), else_=i.previous_owner_id)


def _totals(rows: dict[Any, dict[str, book.KindTotal]]) -> dict[Any, RecordTotals]:
    return {
        key: {
            kind: schemas.RecordKindTotal(count=t.count, value=dict(sorted(t.value.items())))
            for kind, t in sorted(kinds.items())
        }
        for key, kinds in rows.items()
    }


def item_records(session: Session, item_ids: Sequence[int]) -> dict[int, RecordTotals]:
    """Per item, the open records that go with its client, per kind: one grouped query for a page of items."""
    if not item_ids:
        return {}
    i = HandoverItem
    pairs = select(i.id, i.client_id, _holder()).where(i.id.in_(list(item_ids)))
    return _totals(book.open_totals(session, pairs))


def preview_records(session: Session, client_ids: Sequence[str]) -> dict[str, RecordTotals]:
    """For a plan's preview (items not saved): per client, the open records its owner holds on it."""
    if not client_ids:
        return {}
    pairs = select(Client.external_id, Client.external_id, Client.owner_id).where(
        Client.external_id.in_(list(client_ids))
    )
    return _totals(book.open_totals(session, pairs))


def handover_records(session: Session, views: Sequence[visibility.HandoverView]) -> dict[int, RecordTotals]:
    """Per handover, the records of the items each view shows (as `visibility.view_counts`): one grouped query."""
    if not views:
        return {}
    i = HandoverItem
    shown = [and_(i.handover_id == v.handover.id, v.items()) for v in views]
    pairs = select(i.handover_id, i.client_id, _holder()).where(or_(*shown) if shown else true())
    return _totals(book.open_totals(session, pairs))


def handover_out(
    session: Session,
    h: Handover,
    c: visibility.Counts | None = None,
    *,
    view: schemas.View = "all",
    records: RecordTotals | None = None,
) -> schemas.HandoverOut:
    """`records` None: read here (every item); give them (`handover_records`) for a page of handovers."""
    if c is None:
        c = visibility.counts(session, [h.id])[h.id]
    if records is None:
        records = handover_records(session, [visibility.HandoverView(h, True)]).get(h.id, {})
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
        record_rules=record_plans.rules_of(h, get_settings()) if h.reason != "leave" else None,
        confidentiality={
            k: schemas.ConfidentialityStepOut.model_validate(v) for k, v in (h.confidentiality or {}).items()
        },
        records=records,
        view=view,
    )


def view_out(
    session: Session,
    v: visibility.HandoverView,
    c: visibility.Counts | None = None,
    records: RecordTotals | None = None,
) -> schemas.HandoverOut:
    """The header as the view shows it: counts, exposure and records over the items the caller sees."""
    if c is None:
        c = visibility.view_counts(session, [v])[v.handover.id]
    if records is None:
        records = handover_records(session, [v]).get(v.handover.id, {})
    return handover_out(session, v.handover, c, view=v.scope, records=records)


def item_out(
    item: HandoverItem, client: Client, *, own: bool = False, records: RecordTotals | None = None
) -> schemas.ItemOut:
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
        records=records or {},
    )


def item_response(
    session: Session, v: visibility.HandoverView, item: HandoverItem, response: Response
) -> schemas.ItemOut:
    """An item as answered by the routes that read or change it, with its ETag."""
    client = session.get(Client, item.client_id)
    assert client is not None
    response.headers["ETag"] = etag(item.version, "item", item.id)
    return item_out(item, client, own=v.own is not None, records=item_records(session, [item.id]).get(item.id))
