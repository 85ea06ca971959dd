from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Annotated, cast

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response, status

from app.access import events, schemas, service
from app.access.errors import (
    AccessCheckNotOwn,
    AccessEventsInvalid,
    AccessEventsNotAllowed,
    AccessRecordNotFound,
    AlertAlreadyResolved,
    AlertNotFound,
    GrantAlreadyRevoked,
    GrantInvalid,
    GrantNotFound,
)
from app.access.models import Alert
from app.core.auth import AccessAdmin, AccessCheckScope
from app.core.deps import DbSession, Now, db_of, now_of, read_limiter
from app.core.errors import problem_responses
from app.core.pagination import Page, Pagination, page_of
from app.core.types import EXTERNAL_ID_PATTERN, UtcTime

router = APIRouter(tags=["access"])

GrantId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The grant id.")]


def _out(d: service.Decision) -> schemas.AccessDecision:
    return schemas.AccessDecision(
        employee=d.employee,
        client=d.client,
        record=None if d.record is None else schemas.RecordRefOut(kind=d.record[0], external_id=d.record[1]),
        action=d.action,
        at=d.at,
        allowed=d.allowed,
        level=d.level,
        reason=d.reason,
        grant_id=d.grant_id,
        valid_until=d.valid_until,
    )


@router.post(
    "/v1/access/check",
    name="access-check",
    summary="May this employee do this to this client's data, now (or at a given instant)?",
    description="Denies a departed employee, or one past their exit time, everything (`employee_departed`); an "
    "employee on leave gets nothing for the leave's window [effective_at, return_at) (`employee_away`; their "
    "delegate holds interim grants for it), and everything their grants give again from return_at; shadow and read "
    "grants allow "
    "view only; export and delete of sensitivity-3 clients need an owner grant; clearance must cover sensitivity. "
    "Every deny, and every allowed export or delete, is audited. Instead of a client, a `record` ({kind, "
    "external_id}) may be named: it is decided as for the record's client; a client-less record (the owner's own "
    "automation or report) only for its owner (`not_record_owner` otherwise); an unknown record is a 404.",
    response_model=schemas.AccessDecision,
    responses=problem_responses(401, 403, 404, 413, 415, 422, errors=[AccessCheckNotOwn, AccessRecordNotFound]),
)
async def check(body: schemas.AnyCheck, principal: AccessCheckScope, request: Request) -> schemas.AccessDecision:
    # async with one thread hop: the hot path of every CRM page view takes no writer and no second hop; the clock
    # and the database come straight from the app (what `Now` and `DbSession` would resolve) to skip two dependencies;
    # the hop takes one of pool-size threads (deps.read_limiter), so it never waits for, or opens, a connection.
    service.require_own_or_admin(principal, body.employee)
    now = now_of(request)
    if isinstance(body, schemas.RecordAccessCheck):
        decision = await anyio.to_thread.run_sync(
            partial(
                service.check_record,
                db_of(request),
                body.employee,
                body.record.kind,
                body.record.external_id,
                body.action,
                body.at or now,
                actor=principal.actor,
                now=now,
            ),
            limiter=read_limiter(request),
        )
        return _out(decision)
    decision = await anyio.to_thread.run_sync(
        partial(
            service.check,
            db_of(request),
            body.employee,
            body.client,
            body.action,
            body.at or now,
            actor=principal.actor,
            now=now,
        ),
        limiter=read_limiter(request),
    )
    return _out(decision)


@router.post(
    "/v1/access/check/batch",
    name="access-check-batch",
    summary="Decide up to 500 pairs in one call (a CRM list view)",
    description="Each check names a client or a record, as in the single check; one unknown record makes the "
    "whole batch a 404 naming the unknown ones.",
    response_model=schemas.AccessDecisionBatch,
    responses=problem_responses(401, 403, 404, 413, 415, 422, errors=[AccessCheckNotOwn, AccessRecordNotFound]),
)
async def check_batch(
    body: schemas.AccessCheckBatch, principal: AccessCheckScope, request: Request
) -> schemas.AccessDecisionBatch:
    for c in body.checks:
        service.require_own_or_admin(principal, c.employee)
    now = now_of(request)
    default_at = body.at or now
    if any(isinstance(c, schemas.RecordAccessCheck) for c in body.checks):
        targets: list[tuple[str, service.Target, str, dt.datetime]] = [
            (
                c.employee,
                (c.record.kind, c.record.external_id) if isinstance(c, schemas.RecordAccessCheck) else c.client,
                c.action,
                c.at or default_at,
            )
            for c in body.checks
        ]
        decisions = await anyio.to_thread.run_sync(
            partial(service.check_targets, db_of(request), targets, actor=principal.actor, now=now),
            limiter=read_limiter(request),
        )
        return schemas.AccessDecisionBatch(decisions=[_out(d) for d in decisions])
    decisions = await anyio.to_thread.run_sync(
        partial(
            service.check_batch,
            db_of(request),
            [
                (c.employee, c.client, c.action, c.at or default_at)
                for c in body.checks
                if isinstance(c, schemas.AccessCheck)
            ],
            actor=principal.actor,
            now=now,
        ),
        limiter=read_limiter(request),
    )
    return schemas.AccessDecisionBatch(decisions=[_out(d) for d in decisions])


@router.get(
    "/v1/access/grants",
    name="access-grants-list",
    summary="List grants",
    description="Account managers see only their own grants; access:admin, hr, auditors and integrations see all.",
    response_model=Page[schemas.GrantOut],
    responses=problem_responses(401, 403, 422),
)
def list_grants(
    session: DbSession,
    principal: AccessCheckScope,
    page: Pagination,
    employee: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this employee.")] = None,
    client: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this client.")] = None,
    level: Annotated[schemas.Level | None, Query(description="Only this level.")] = None,
    valid_at: Annotated[UtcTime | None, Query(description="Only grants valid at this instant.")] = None,
    handover: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only grants this handover created.")] = None,
) -> Page[schemas.GrantOut]:
    rows = service.list_grants(
        session,
        principal,
        service.GrantFilter(employee, client, level, valid_at, handover),
        limit=page.limit + 1,
        offset=page.offset,
    )
    items, nxt = page_of(rows, page)
    return Page[schemas.GrantOut](
        items=[schemas.GrantOut.model_validate(g) for g in items], limit=page.limit, offset=page.offset, next_offset=nxt
    )


@router.post(
    "/v1/access/grants",
    name="access-grants-create",
    summary="Grant access for a window",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.GrantOut,
    responses=problem_responses(401, 403, 413, 415, 422, errors=[GrantInvalid]),
)
def create_grant(
    body: schemas.GrantCreate, session: DbSession, principal: AccessAdmin, now: Now, response: Response
) -> schemas.GrantOut:
    grant = service.create_grant(
        session,
        employee=body.employee,
        client=body.client,
        level=body.level,
        valid_from=body.valid_from or now,
        valid_until=body.valid_until,
        reason=body.reason,
        actor=principal.actor,
        now=now,
    )
    response.headers["Location"] = f"/v1/access/grants/{grant.id}"
    return schemas.GrantOut.model_validate(grant)


@router.get(
    "/v1/access/grants/{grant_id}",
    name="access-grants-get",
    summary="Get a grant",
    response_model=schemas.GrantOut,
    responses=problem_responses(401, 403, 404, 422, errors=[GrantNotFound]),
)
def get_grant(grant_id: GrantId, session: DbSession, principal: AccessCheckScope) -> schemas.GrantOut:
    return schemas.GrantOut.model_validate(service.get_grant(session, principal, grant_id))


@router.delete(
    "/v1/access/grants/{grant_id}",
    name="access-grants-revoke",
    summary="Revoke a grant (the row stays for history)",
    response_model=schemas.GrantOut,
    responses=problem_responses(401, 403, 404, 409, 422, errors=[GrantNotFound, GrantAlreadyRevoked]),
)
def revoke_grant(grant_id: GrantId, session: DbSession, principal: AccessAdmin, now: Now) -> schemas.GrantOut:
    grant = service.get_grant(session, principal, grant_id)
    return schemas.GrantOut.model_validate(service.revoke(session, grant, actor=principal.actor, now=now))


# ---- access events and exfiltration alerts -----------------------------------------------------

AlertId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The alert id.")]


def alert_out(a: Alert) -> schemas.AlertOut:
    return schemas.AlertOut(
        id=a.id,
        employee=a.employee_id,
        kind=a.kind,
        status=cast(schemas.AlertStatus, a.status),
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
    response_model=schemas.IngestOut,
    responses=problem_responses(401, 403, 413, 415, 422, errors=[AccessEventsNotAllowed, AccessEventsInvalid]),
)
def ingest_events(
    body: schemas.AccessEventBatch, session: DbSession, principal: AccessCheckScope, now: Now
) -> schemas.IngestOut:
    if not principal.unrestricted:
        # Self-reported events could pad a leaver's own baseline or frame a colleague.
        raise AccessEventsNotAllowed("Only the CRM integration, hr and admins report access events.")
    result = events.ingest_events(session, body.events, actor=principal.actor, now=now)
    return schemas.IngestOut(
        received=result.received, stored=result.stored, duplicates=result.duplicates, alerts_raised=result.alerts
    )


@router.get(
    "/v1/alerts",
    name="alerts-list",
    summary="List exfiltration alerts, newest first",
    response_model=Page[schemas.AlertOut],
    responses=problem_responses(401, 403, 422),
)
def list_alerts(
    session: DbSession,
    principal: AccessAdmin,
    page: Pagination,
    status_: Annotated[
        schemas.AlertStatus | None, Query(alias="status", description="Only open or resolved alerts.")
    ] = None,
    employee: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this employee.")] = None,
) -> Page[schemas.AlertOut]:
    rows = events.list_alerts(
        session, principal, status=status_, employee=employee, limit=page.limit + 1, offset=page.offset
    )
    items, nxt = page_of(rows, page)
    return Page[schemas.AlertOut](
        items=[alert_out(a) for a in items], limit=page.limit, offset=page.offset, next_offset=nxt
    )


@router.get(
    "/v1/alerts/{alert_id}",
    name="alerts-get",
    summary="Get an alert with its evidence",
    response_model=schemas.AlertOut,
    responses=problem_responses(401, 403, 404, 422, errors=[AlertNotFound]),
)
def get_alert(alert_id: AlertId, session: DbSession, principal: AccessAdmin) -> schemas.AlertOut:
    return alert_out(events.get_alert(session, principal, alert_id))


@router.post(
    "/v1/alerts/{alert_id}/resolve",
    name="alerts-resolve",
    summary="Resolve an open alert",
    description="open → resolved, once; resolving a resolved alert is a 409.",
    response_model=schemas.AlertOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422, errors=[AlertNotFound, AlertAlreadyResolved]),
)
def resolve_alert(
    alert_id: AlertId, body: schemas.ResolveIn, session: DbSession, principal: AccessAdmin, now: Now
) -> schemas.AlertOut:
    alert = events.get_alert(session, principal, alert_id)
    alert = events.resolve_alert(session, alert, resolution=body.resolution, actor=principal.actor, now=now)
    return alert_out(alert)
