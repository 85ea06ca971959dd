"""HTTP layer for follow-ups and the retention report: parse, authorise, call followups / retention."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from app.core.auth import HandoversRead, HandoversWrite
from app.core.deps import DbSession, Now
from app.core.errors import RoleNotAllowed, problem_responses
from app.core.http import CSV, JSON, choose
from app.core.pagination import Page, Pagination, page_of
from app.core.types import EXTERNAL_ID_PATTERN, UtcTime
from app.transfer import retention
from app.transfer.errors import ReportFormatNotAcceptable
from app.transfer.followups import service as followups
from app.transfer.followups.errors import (
    FirstContactInvalid,
    FollowUpNotFound,
    FollowUpNotOpen,
    NotTheAssignee,
    ReportWindowInvalid,
)
from app.transfer.followups.models import FollowUp
from app.transfer.followups.schemas import (
    FollowUpComplete,
    FollowUpKind,
    FollowUpOut,
    FollowUpStatus,
    GroupBy,
    Outcome,
    RetentionFormat,
    RetentionReport,
)

router = APIRouter(tags=["follow-ups"])

FollowUpId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The follow-up id.")]
DEFAULT_WINDOW = dt.timedelta(days=365)
RETENTION_FORMATS = (JSON, CSV)  # the first is the default


def follow_up_out(fu: FollowUp, client_name: str, now: dt.datetime) -> FollowUpOut:
    return FollowUpOut(
        id=fu.id,
        handover_id=fu.handover_id,
        item_id=fu.item_id,
        client=fu.client_id,
        client_name=client_name,
        assignee=fu.assignee_id,
        kind=cast(FollowUpKind, fu.kind),
        due_at=fu.due_at,
        status=cast(FollowUpStatus, fu.status),
        overdue=fu.status == "open" and fu.due_at < now,
        outcome=cast(Outcome | None, fu.outcome),
        satisfaction=None if fu.satisfaction is None else float(fu.satisfaction),
        satisfaction_before=None if fu.satisfaction_before is None else float(fu.satisfaction_before),
        first_contact_at=fu.first_contact_at,
        note=fu.note,
        completed_at=fu.completed_at,
        completed_by=fu.completed_by,
        overdue_notified_at=fu.overdue_notified_at,
        created_at=fu.created_at,
    )


@router.get(
    "/v1/follow-ups",
    name="follow-ups-list",
    summary="List follow-ups, soonest due first",
    description=(
        "An account manager sees the follow-ups assigned to them, a manager those of everyone below them "
        "(themselves included); hr, auditors, integrations and admins see all."
    ),
    response_model=Page[FollowUpOut],
    responses=problem_responses(401, 403, 422),
)
def list_follow_ups(
    session: DbSession,
    principal: HandoversRead,
    page: Pagination,
    now: Now,
    assignee: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this assignee.")] = None,
    handover: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this handover.")] = None,
    client: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this client.")] = None,
    kind: Annotated[FollowUpKind | None, Query(description="Only this kind.")] = None,
    status_: Annotated[FollowUpStatus | None, Query(alias="status", description="Only this status.")] = None,
    due_before: Annotated[UtcTime | None, Query(description="Only those due before this time.")] = None,
    overdue: Annotated[bool | None, Query(description="true: only open ones past due; false: only the others.")] = None,
) -> Page[FollowUpOut]:
    flt = followups.FollowUpFilter(assignee, handover, client, kind, status_, due_before, overdue)
    rows = followups.list_follow_ups(session, principal, flt, now=now, limit=page.limit + 1, offset=page.offset)
    items, nxt = page_of(rows, page)
    return Page[FollowUpOut](
        items=[follow_up_out(fu, name, now) for fu, name in items],
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt,
    )


@router.get(
    "/v1/follow-ups/{follow_up_id}",
    name="follow-ups-get",
    summary="Get a follow-up",
    response_model=FollowUpOut,
    responses=problem_responses(401, 403, 404, 422, errors=[FollowUpNotFound]),
)
def get_follow_up(follow_up_id: FollowUpId, session: DbSession, principal: HandoversRead, now: Now) -> FollowUpOut:
    fu = followups.get_follow_up(session, principal, follow_up_id)
    return follow_up_out(fu, followups.client_name(session, fu.client_id), now)


@router.post(
    "/v1/follow-ups/{follow_up_id}/complete",
    name="follow-ups-complete",
    summary="Record a follow-up's outcome; the client's satisfaction, status and last contact follow",
    description=(
        "Only the assignee, their manager or an admin. The outcome sets the client's status (retained → active, "
        "at_risk → at_risk, churned → churned), the satisfaction (if given) the client's satisfaction, and "
        "first_contact_at (required for first_contact) its last contact if later. Once only: a second call "
        "answers 409. Audited."
    ),
    response_model=FollowUpOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        413,
        415,
        422,
        errors=[NotTheAssignee, FollowUpNotFound, FollowUpNotOpen, FirstContactInvalid],
    ),
)
def complete_follow_up(
    follow_up_id: FollowUpId, body: FollowUpComplete, session: DbSession, principal: HandoversWrite, now: Now
) -> FollowUpOut:
    fu = followups.get_follow_up(session, principal, follow_up_id, lock=True)
    completion = followups.Completion(
        outcome=body.outcome, satisfaction=body.satisfaction, first_contact_at=body.first_contact_at, note=body.note
    )
    followups.complete(session, principal, fu, completion, now=now)
    return follow_up_out(fu, followups.client_name(session, fu.client_id), now)


# ---- retention report ---------------------------------------------------------------------------


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": RetentionReport,
        "description": "The report: JSON (default) or CSV (one row per group, UTF-8 with BOM).",
        "content": {CSV: {"schema": {"type": "string"}, "example": "group_by,group,name,handed_over,…\r\n"}},
    },
    **problem_responses(401, 403, 406, 422, errors=[RoleNotAllowed, ReportFormatNotAcceptable, ReportWindowInvalid]),
}
_RESPONSES[403] = {**_RESPONSES[403], "description": "The token lacks the scope, or the caller is an account manager."}
_RESPONSES[406] = {**_RESPONSES[406], "description": "Neither application/json nor text/csv is acceptable."}


@router.get(
    "/v1/reports/retention",
    name="reports-retention",
    summary="Retention after handovers: outcomes at 30/90/180 days, first contact, satisfaction, calibration",
    description=(
        "Over executed or completed handovers effective in [from, to) (default: the 365 days up to now), grouped "
        "by team (the successor's manager), successor, tier or risk_band. A client's outcome at a horizon is its "
        "latest completed follow-up outcome recorded within that many days after the effective time, else "
        "unknown. Managers see handovers they may see and clients their reports received; hr, auditors, "
        "integrations and admins see all; account managers get 403. `Accept: text/csv` (or `format=csv`, which wins "
        "over Accept) gives one row per group."
    ),
    response_model=None,
    responses=_RESPONSES,
)
def retention_report(
    request: Request,
    session: DbSession,
    principal: HandoversRead,
    now: Now,
    from_: Annotated[
        UtcTime | None, Query(alias="from", description="Effective at or after (default: to − 365 days).")
    ] = None,
    to: Annotated[UtcTime | None, Query(description="Effective before (default: now).")] = None,
    group_by: Annotated[GroupBy, Query(description="team, successor, tier or risk_band.")] = "team",
    format: Annotated[
        RetentionFormat | None,
        Query(description="json or csv: the report's format, instead of (and over) Accept."),
    ] = None,
) -> Response:
    media = choose(format, request.headers.get("accept"), RETENTION_FORMATS)
    if media is None:
        raise ReportFormatNotAcceptable(
            "The retention report is available as application/json or text/csv.", extra={"allowed": [JSON, CSV]}
        )
    end = to or now
    start = from_ or end - DEFAULT_WINDOW
    if start >= end:
        raise ReportWindowInvalid(
            "from must be before to.",
            errors=[{"loc": ["query", "from"], "msg": "must be before to", "type": "value_error"}],
        )
    report = retention.build(session, principal, start=start, end=end, group_by=group_by, now=now)
    headers = {"Vary": "Accept", "Cache-Control": "private, no-store"}
    if media == CSV:
        headers["Content-Disposition"] = f'attachment; filename="retention-by-{group_by}.csv"'
        body = ("\ufeff" + retention.to_csv(report)).encode("utf-8")
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    return JSONResponse(report.model_dump(mode="json", by_alias=True), headers=headers)
