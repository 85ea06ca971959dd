"""HTTP layer for access events and exfiltration alerts: parse, authorise, call app.access.events."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Path, Query

from app.access import events as service
from app.access.events_schemas import AccessEventBatch, AlertOut, AlertStatus, IngestOut, ResolveIn
from app.access.models import Alert
from app.core.auth import AccessAdmin, AccessCheckScope
from app.core.deps import DbSession, Now
from app.core.errors import Forbidden, problem_responses
from app.core.pagination import Page, Pagination, page_of
from app.core.types import EXTERNAL_ID_PATTERN

router = APIRouter(tags=["access"])

AlertId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The alert id.")]


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id,
        employee=a.employee_id,
        kind=a.kind,
        status=cast(AlertStatus, a.status),
        score=float(a.score),
        window_start=a.window_start,
        window_end=a.window_end,
        clients=list(a.clients or []),
        details=dict(a.details or {}),
        created_at=a.created_at,
        updated_at=a.updated_at,
        resolved_at=a.resolved_at,
        resolved_by=a.resolved_by,
        resolution=a.resolution,
    )


@router.post(
    "/v1/access/events",
    name="access-events-ingest",
    summary="Report access events (views, edits, exports, downloads, deletes)",
    description=(
        "Stores up to 5,000 events all or nothing; events whose event_id was already stored (or repeats earlier "
        "in the batch) are skipped and counted as duplicates. Then every employee in the batch who is leaving, "
        "or whose exit is within 30 days, is checked for an export/download spike, which raises an exfiltration "
        "alert or updates their open one. Only the CRM integration, hr and admins report events."
    ),
    response_model=IngestOut,
    responses=problem_responses(401, 403, 413, 415, 422),
)
def ingest_events(body: AccessEventBatch, session: DbSession, principal: AccessCheckScope, now: Now) -> IngestOut:
    if not principal.unrestricted:
        # Self-reported events could pad a leaver's own baseline or frame a colleague.
        raise Forbidden("Only the CRM integration, hr and admins report access events.")
    result = service.ingest_events(session, body.events, actor=principal.actor, now=now)
    return IngestOut(
        received=result.received, stored=result.stored, duplicates=result.duplicates, alerts_raised=result.alerts
    )


@router.get(
    "/v1/alerts",
    name="alerts-list",
    summary="List exfiltration alerts, newest first",
    response_model=Page[AlertOut],
    responses=problem_responses(401, 403, 422),
)
def list_alerts(
    session: DbSession,
    principal: AccessAdmin,
    page: Pagination,
    status_: Annotated[AlertStatus | None, Query(alias="status", description="Only open or resolved alerts.")] = None,
    employee: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this employee.")] = None,
) -> Page[AlertOut]:
    rows = service.list_alerts(
        session, principal, status=status_, employee=employee, limit=page.limit + 1, offset=page.offset
    )
    items, nxt = page_of(rows, page)
    return Page[AlertOut](items=[alert_out(a) for a in items], limit=page.limit, offset=page.offset, next_offset=nxt)


@router.get(
    "/v1/alerts/{alert_id}",
    name="alerts-get",
    summary="Get an alert with its evidence",
    response_model=AlertOut,
    responses=problem_responses(401, 403, 404, 422),
)
def get_alert(alert_id: AlertId, session: DbSession, principal: AccessAdmin) -> AlertOut:
    return alert_out(service.get_alert(session, principal, alert_id))


@router.post(
    "/v1/alerts/{alert_id}/resolve",
    name="alerts-resolve",
    summary="Resolve an open alert",
    description="open → resolved, once; resolving a resolved alert is a 409.",
    response_model=AlertOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
)
def resolve_alert(alert_id: AlertId, body: ResolveIn, session: DbSession, principal: AccessAdmin, now: Now) -> AlertOut:
    alert = service.get_alert(session, principal, alert_id)
    alert = service.resolve_alert(session, alert, resolution=body.resolution, actor=principal.actor, now=now)
    return alert_out(alert)
