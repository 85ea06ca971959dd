from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.orm import Session

from app.book import schemas as book_schemas
from app.core.auth import HandoversApprove, HandoversRead, HandoversWrite
from app.core.deps import DbSession, Now
from app.core.errors import RoleNotAllowed, problem_responses
from app.core.http import CSV, HTML, JSON, check_if_match, choose, etag, prefers_async
from app.core.pagination import Page, Pagination, page_of
from app.core.types import EXTERNAL_ID_PATTERN, UtcTime
from app.directory import service as directory
from app.directory.errors import EmployeeNotFound
from app.jobs import service as jobs
from app.jobs.router import ACCEPTED_RESPONSE, PREFER_DESCRIPTION, accepted
from app.risk.errors import NoActiveRiskModel
from app.transfer import leave, longops, planning, records, schemas, service, visibility
from app.transfer.errors import (
    EffectiveTimeNotReached,
    HandoverAlreadyOpen,
    HandoverNotFound,
    HandoverNotManaged,
    HandoverNotPlannable,
    HandoverNotPlanned,
    InterimOwnerInvalid,
    ItemNotFound,
    ItemsLocked,
    ItemsUnassigned,
    LeaveDuringExit,
    LeaveInvalid,
    LeaveNotStarted,
    LeaveNotUndoable,
    LeaverAlreadyDeparted,
    LeaverTwiceInPlan,
    NotTheApprover,
    RecordNotInHandover,
    RecordsLocked,
    RecordTargetInvalid,
    ReportFormatNotAcceptable,
    SuccessorBreaksConstraints,
    TransitionNotAllowed,
    UndoWindowPassed,
    UnknownEmployee,
)
from app.transfer.models import Handover
from app.transfer.params import HandoverId, ItemId
from app.transfer.report import HandoverReport, build_report, manager_languages, to_csv, to_html
from app.transfer.reporttexts import ReportLocale, choose_locale
from app.transfer.signoffs.router import router as signoffs_router
from app.transfer.views import (
    handover_out,
    handover_records,
    item_out,
    item_records,
    item_response,
    preview_records,
    view_out,
)

router = APIRouter(tags=["handovers"])

IfMatch = Annotated[str | None, Header(max_length=200, description="The ETag you last read.")]
Prefer = Annotated[str | None, Header(max_length=1000, description=PREFER_DESCRIPTION)]

CREATOR_ROLES = longops.CREATOR_ROLES
REPORT_FORMATS = (JSON, HTML, CSV)  # the first is the default


def _with_etag(response: Response, h: Handover) -> None:
    response.headers["ETag"] = etag(h.version, "handover", h.id)


@router.post(
    "/v1/handovers",
    name="handovers-create",
    summary="Open a handover for a leaver (an exit, a role change, or a leave)",
    description="An exit (resignation, termination, retirement, other) opens a `draft` to plan, approve and execute; "
    "the leaver becomes `leaving`, then `departed` at execution. A `role_change` goes the same way for the clients, "
    "but the person stays `active` (token kept, may own clients in the new role); only their access to the moved "
    "clients ends at the effective time. A `leave` (with `return_at`, optionally `delegate`) is a delegation: "
    "ownership does not move and there is no planning or approval; the handover is `scheduled` at once, the "
    "delegate gets an interim grant on each of the person's clients for [effective_at, return_at), the person's "
    "own access is suspended for that window (access checks answer `employee_away`; their token still "
    "authenticates), and the worker completes it at return_at. A scheduled leave can be cancelled (windows revoked "
    "now) or completed early once started (windows end now); it is never undone. 422 for a leave without "
    "return_at, a return_at not after effective_at, or return_at/delegate with another reason.",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.HandoverOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        413,
        415,
        422,
        errors=[
            RoleNotAllowed,
            EmployeeNotFound,
            HandoverAlreadyOpen,
            LeaverAlreadyDeparted,
            UnknownEmployee,
            LeaveInvalid,
            LeaveDuringExit,
        ],
    ),
)
def create_handover(
    body: schemas.HandoverCreate,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
    request: Request,
) -> schemas.HandoverOut:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins open handovers.")
    if not principal.unrestricted:
        # A manager opens handovers only for their own reports.
        directory.get_employee(session, principal, body.leaver)
        if body.leaver == principal.employee:
            raise EmployeeNotFound(f"No employee {body.leaver!r}.")
    if body.reason == leave.REASON and body.return_at is not None:
        h = leave.open_leave(
            session,
            leaver=body.leaver,
            effective_at=body.effective_at,
            return_at=body.return_at,
            delegate=body.delegate,
            source="api",
            actor=principal.actor,
            now=now,
            settings=request.app.state.settings,
        )
    else:
        h = service.create_handover(
            session,
            leaver=body.leaver,
            reason=body.reason,
            effective_at=body.effective_at,
            destination_competitor=body.destination_competitor,
            source="api",
            actor=principal.actor,
            now=now,
            settings=request.app.state.settings,
            record_rules=body.record_rules.model_dump(exclude_none=True) if body.record_rules else None,
        )
    session.flush()
    _with_etag(response, h)
    response.headers["Location"] = f"/v1/handovers/{h.id}"
    return handover_out(session, h)


@router.get(
    "/v1/handovers",
    name="handovers-list",
    summary="List handovers",
    response_model=Page[schemas.HandoverOut],
    responses=problem_responses(401, 403, 422),
)
def list_handovers(
    session: DbSession,
    principal: HandoversRead,
    page: Pagination,
    status_: Annotated[schemas.HandoverStatus | None, Query(alias="status", description="Only this status.")] = None,
    leaver: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this leaver.")] = None,
    manager: Annotated[
        str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this leaver's manager.")
    ] = None,
    effective_from: Annotated[UtcTime | None, Query(description="Effective at or after.")] = None,
    effective_to: Annotated[UtcTime | None, Query(description="Effective before.")] = None,
) -> Page[schemas.HandoverOut]:
    flt = visibility.HandoverFilter(status_, leaver, manager, effective_from, effective_to)
    rows = visibility.list_handovers(session, principal, flt, limit=page.limit + 1, offset=page.offset)
    items, nxt = page_of(rows, page)
    counts = visibility.view_counts(session, items)  # one query for the page, not one per handover
    records = handover_records(session, items)  # one grouped query too
    return Page[schemas.HandoverOut](
        items=[view_out(session, v, counts[v.handover.id], records.get(v.handover.id, {})) for v in items],
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt,
    )


@router.get(
    "/v1/handovers/{handover_id}",
    name="handovers-get",
    summary="Get a handover with counts by item status and risk band",
    description="A participant who neither manages nor leaves the handover (a successor or interim owner on another "
    "team's handover) gets the header with counts and exposure over their own items only (`view: own`).",
    response_model=schemas.HandoverOut,
    responses=problem_responses(401, 403, 404, 422, errors=[HandoverNotFound]),
)
def get_handover(
    handover_id: HandoverId, session: DbSession, principal: HandoversRead, response: Response
) -> schemas.HandoverOut:
    v = visibility.see_handover(session, principal, handover_id)
    _with_etag(response, v.handover)
    return view_out(session, v)


@router.post(
    "/v1/handovers/{handover_id}/plan",
    name="handovers-plan",
    summary="Plan successors for every client (dry_run=true previews without saving)",
    description="Solves the whole reassignment at once, exactly; manual overrides are kept.",
    response_model=schemas.PlanSummary,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        422,
        errors=[HandoverNotManaged, RoleNotAllowed, HandoverNotFound, HandoverNotPlannable, NoActiveRiskModel],
    ),
)
def plan_handover(
    handover_id: HandoverId,
    request: Request,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    body: schemas.PlanRequest | None = None,
    dry_run: Annotated[bool, Query(description="Return the plan without saving it.")] = False,
) -> schemas.PlanSummary:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins plan handovers.")
    h = visibility.get_handover(
        session,
        principal,
        handover_id,
        lock=not dry_run,
        manage="Only the leaver's managers, hr or an admin may plan this handover.",
    )
    pool = body.candidate_pool.model_dump() if body and body.candidate_pool else None
    result, preview = planning.plan(
        session, h, pool=pool, dry_run=dry_run, actor=principal.actor, now=now, settings=request.app.state.settings
    )
    proposals = None
    if preview is not None:
        clients = {r["client_id"]: r["client"] for r in result.rows}
        records = preview_records(session, [i.client_id for i in preview])
        proposals = [item_out(i, clients[i.client_id], records=records.get(i.client_id)) for i in preview]
    return longops.summary(h.id, result, dry_run, proposals)


@router.post(
    "/v1/handover-plans",
    name="handovers-plan-batch",
    summary="Plan several handovers together (a layoff or reorganisation)",
    description="One exact reassignment for all their clients, so successors' capacity is shared across the "
    "leavers instead of going to whichever was planned first. Handovers with different effective times, pools or "
    "exit contexts are solved separately within the same call. All or nothing: one handover that cannot be planned "
    "(409), is not visible (404) or that the caller sees only as a successor or interim owner (403) plans none. "
    "Each handover's total_cost is its joint solve's. With `Prefer: respond-async` the same checks answer at once "
    "(403, 404, 422), then 202 with a job that a worker runs; the job's result is this operation's answer, and a "
    "refusal found while planning (409) is the job's problem.",
    response_model=schemas.PlanBatchOut,
    responses={
        **ACCEPTED_RESPONSE,
        **problem_responses(
            401,
            403,
            404,
            409,
            413,
            415,
            422,
            errors=[
                HandoverNotManaged,
                RoleNotAllowed,
                HandoverNotFound,
                HandoverNotPlannable,
                NoActiveRiskModel,
                LeaverTwiceInPlan,
            ],
        ),
    },
)
def plan_handovers(
    body: schemas.PlanBatchRequest,
    request: Request,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    prefer: Prefer = None,
) -> Any:
    if prefers_async(prefer):
        longops.check_plan_batch(session, principal, body)
        job = jobs.submit(
            session, kind=longops.PLAN_KIND, request=body.model_dump(mode="json"), principal=principal, now=now
        )
        return accepted(job)
    return longops.plan_batch(session, principal, body, now=now, settings=request.app.state.settings)


@router.get(
    "/v1/handovers/{handover_id}/items",
    name="handovers-items-list",
    summary="List a handover's items",
    description="Every item for those who manage the handover, hr, auditors, admins and the leaver; a participant "
    "(a successor or interim owner on another team's handover) lists only the items they receive.",
    response_model=Page[schemas.ItemOut],
    responses=problem_responses(401, 403, 404, 422, errors=[HandoverNotFound]),
)
def list_items(
    handover_id: HandoverId,
    session: DbSession,
    principal: HandoversRead,
    page: Pagination,
    status_: Annotated[schemas.ItemStatus | None, Query(alias="status", description="Only this status.")] = None,
    risk_band: Annotated[str | None, Query(max_length=20, description="Only this risk band.")] = None,
    successor: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this successor.")] = None,
    needs_attention: Annotated[
        bool | None, Query(description="Only items that need (or do not need) attention.")
    ] = None,
) -> Page[schemas.ItemOut]:
    v = visibility.see_handover(session, principal, handover_id)
    flt = visibility.ItemFilter(status_, risk_band, successor, needs_attention)
    rows = visibility.list_items(session, v, flt, limit=page.limit + 1, offset=page.offset)
    items, nxt = page_of(rows, page)
    own = v.own is not None
    records = item_records(session, [i.id for i, _ in items])  # one grouped query for the page
    return Page[schemas.ItemOut](
        items=[item_out(i, c, own=own, records=records.get(i.id)) for i, c in items],
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt,
    )


@router.get(
    "/v1/handovers/{handover_id}/items/{item_id}",
    name="handovers-items-get",
    summary="Get one item (with its ETag)",
    description="A participant (a successor or interim owner on another team's handover) reaches only the items they "
    "receive; any other item answers 404.",
    response_model=schemas.ItemOut,
    responses=problem_responses(401, 403, 404, 422, errors=[HandoverNotFound, ItemNotFound]),
)
def get_item(
    handover_id: HandoverId, item_id: ItemId, session: DbSession, principal: HandoversRead, response: Response
) -> schemas.ItemOut:
    v = visibility.see_handover(session, principal, handover_id)
    return item_response(session, v, visibility.get_item(session, v, item_id), response)


@router.patch(
    "/v1/handovers/{handover_id}/items/{item_id}",
    name="handovers-items-update",
    summary="Override an item's successor or interim owner",
    description="Needs If-Match with the item ETag (412 when stale, 428 when missing). A successor that breaks a hard "
    "constraint answers 422 unless force=true with a reason.",
    response_model=schemas.ItemOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        412,
        415,
        422,
        428,
        errors=[
            HandoverNotManaged,
            RoleNotAllowed,
            HandoverNotFound,
            ItemNotFound,
            ItemsLocked,
            InterimOwnerInvalid,
            SuccessorBreaksConstraints,
            UnknownEmployee,
        ],
    ),
)
def patch_item(
    handover_id: HandoverId,
    item_id: ItemId,
    body: schemas.ItemPatch,
    request: Request,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
    if_match: IfMatch = None,
) -> schemas.ItemOut:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins override items.")
    v = visibility.see_handover(
        session,
        principal,
        handover_id,
        lock=True,
        manage="Only the leaver's managers, hr or an admin may override this handover's items.",
    )
    item = visibility.get_item(session, v, item_id)
    check_if_match(if_match, etag(item.version, "item", item.id))
    planning.patch_item(
        session, v.handover, item, body, actor=principal.actor, now=now, settings=request.app.state.settings
    )
    return item_response(session, v, item, response)


RecordKind = Annotated[book_schemas.RecordKind, Path(description="The record's kind.")]
RecordExternalId = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN, description="The record's external id.")]


@router.patch(
    "/v1/handovers/{handover_id}",
    name="handovers-update",
    summary="Set a handover's record rules",
    description="Replaces `record_rules` (what happens to the leaver's records: client-less ones to the manager or "
    "kept, the meeting transition period); a field left out takes the setting's default. Needs If-Match with the "
    "handover ETag (412 stale, 428 missing); 409 once the handover was executed (or cancelled, undone, a leave).",
    response_model=schemas.HandoverOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        412,
        415,
        422,
        428,
        errors=[HandoverNotManaged, RoleNotAllowed, HandoverNotFound, RecordsLocked],
    ),
)
def patch_handover(
    handover_id: HandoverId,
    body: schemas.HandoverPatch,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
    if_match: IfMatch = None,
) -> schemas.HandoverOut:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins change a handover's record rules.")
    v = visibility.see_handover(
        session, principal, handover_id, lock=True, manage="Only the leaver's managers, hr or an admin may change this."
    )
    check_if_match(if_match, etag(v.handover.version, "handover", v.handover.id))
    records.set_rules(session, v.handover, body.record_rules, actor=principal.actor, now=now)
    return _transition_endpoint(v.handover, session, response)


@router.get(
    "/v1/handovers/{handover_id}/records",
    name="handovers-records-list",
    summary="What each of the leaver's records will do (the records plan)",
    description="Every record the leaver owns (and every one this handover moved that is still where it went), "
    "with its `rule` (follow, keep, manager, override, meeting_stays), who receives it (`to`, null: it stays), the "
    "meeting's new attendee and the row's ETag for the PATCH. Clients follow their items' planned receivers, so "
    "before planning a client's records show `keep`. A participant (a successor or interim owner on another team's "
    "handover) lists only the rows they receive or attend.",
    response_model=Page[schemas.RecordPlanOut],
    responses=problem_responses(401, 403, 404, 422, errors=[HandoverNotFound]),
)
def list_handover_records(
    handover_id: HandoverId, request: Request, session: DbSession, principal: HandoversRead, page: Pagination
) -> Page[schemas.RecordPlanOut]:
    v = visibility.see_handover(session, principal, handover_id)
    rows = records.preview(
        session,
        v.handover,
        settings=request.app.state.settings,
        receiver=v.own,
        limit=page.limit + 1,
        offset=page.offset,
    )
    items, nxt = page_of(rows, page)
    return Page[schemas.RecordPlanOut](items=items, limit=page.limit, offset=page.offset, next_offset=nxt)


@router.patch(
    "/v1/handovers/{handover_id}/records/{kind}/{external_id}",
    name="handovers-records-update",
    summary="Override what one record does at the execution",
    description="`to` receives the record at the execution (an active employee who is not leaving, not the leaver), "
    "null keeps it with its owner; overrides every rule. Needs If-Match with the row's ETag from the records list "
    "(412 stale, 428 missing); 422 for a target who cannot hold it; 409 once the handover was executed (or "
    "cancelled, undone, a leave). Audited (`handover.record_override`).",
    response_model=schemas.RecordPlanOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        412,
        415,
        422,
        428,
        errors=[
            HandoverNotManaged,
            RoleNotAllowed,
            HandoverNotFound,
            RecordNotInHandover,
            RecordsLocked,
            RecordTargetInvalid,
        ],
    ),
)
def patch_handover_record(
    handover_id: HandoverId,
    kind: RecordKind,
    external_id: RecordExternalId,
    body: schemas.RecordOverride,
    request: Request,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
    if_match: IfMatch = None,
) -> schemas.RecordPlanOut:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins override records.")
    v = visibility.see_handover(
        session,
        principal,
        handover_id,
        lock=True,
        manage="Only the leaver's managers, hr or an admin may override this handover's records.",
    )
    settings = request.app.state.settings
    h = v.handover
    if h.status not in records.OVERRIDABLE:
        raise RecordsLocked(f"A handover in status {h.status} no longer changes what its records do.")
    row = records.find_row(session, h, kind, external_id, settings=settings)
    check_if_match(if_match, records.row_etag(h, kind, external_id, row.override_version))
    records.set_override(session, h, kind, external_id, body, actor=principal.actor, now=now)
    out = records.row_out(h, records.find_row(session, h, kind, external_id, settings=settings))
    response.headers["ETag"] = out.etag
    return out


def _transition_endpoint(h: Handover, session: Session, response: Response) -> schemas.HandoverOut:
    session.flush()
    _with_etag(response, h)
    return handover_out(session, h)


@router.post(
    "/v1/handovers/{handover_id}/approve",
    name="handovers-approve",
    summary="Approve the plan (the leaver's manager or an admin)",
    description="The point of no return for notifications. If-Match is optional here; when sent it must be current.",
    response_model=schemas.HandoverOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        412,
        422,
        errors=[HandoverNotManaged, NotTheApprover, HandoverNotFound, HandoverNotPlanned, ItemsUnassigned],
    ),
)
def approve_handover(
    handover_id: HandoverId,
    request: Request,
    session: DbSession,
    principal: HandoversApprove,
    now: Now,
    response: Response,
    if_match: IfMatch = None,
) -> schemas.HandoverOut:
    h = visibility.get_handover(
        session,
        principal,
        handover_id,
        lock=True,
        manage="Only the leaver's manager or an admin may approve this handover.",
    )
    if if_match is not None:
        check_if_match(if_match, etag(h.version, "handover", h.id))
    replanned = service.approve_many(session, [h], principal, now=now, settings=request.app.state.settings)
    out = _transition_endpoint(h, session, response)
    out.replanned = [schemas.ReplannedItem(**r.as_json()) for r in replanned.get(h.id, [])]
    return out


@router.post(
    "/v1/handover-approvals",
    name="handovers-approve-batch",
    summary="Approve several planned handovers together (a layoff or reorganisation)",
    description="One transaction for all of them: every handover must be planned (409 naming those that are not), "
    "visible (404 naming them), approvable by the caller (403: the leaver's manager or an admin) and have an owner "
    "for every item (409 naming them); otherwise none is approved. Each handover gets what its own approval gives "
    "it (grants, notifications, follow-ups, one audit entry and one handover.approved event).",
    response_model=schemas.ApprovalBatchOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        413,
        415,
        422,
        errors=[HandoverNotManaged, NotTheApprover, HandoverNotFound, HandoverNotPlanned, ItemsUnassigned],
    ),
)
def approve_handovers(
    body: schemas.ApprovalBatchRequest,
    request: Request,
    session: DbSession,
    principal: HandoversApprove,
    now: Now,
) -> schemas.ApprovalBatchOut:
    handovers = visibility.get_handovers(
        session,
        principal,
        body.handover_ids,
        lock=True,
        manage="Only the leaver's manager or an admin may approve these handovers.",
    )
    replanned = service.approve_many(session, handovers, principal, now=now, settings=request.app.state.settings)
    session.flush()
    counts = visibility.counts(session, [h.id for h in handovers])
    records = handover_records(session, [visibility.HandoverView(h, True) for h in handovers])
    outs = []
    for h in handovers:
        out = handover_out(session, h, counts[h.id], records=records.get(h.id, {}))
        out.replanned = [schemas.ReplannedItem(**r.as_json()) for r in replanned.get(h.id, [])]
        outs.append(out)
    return schemas.ApprovalBatchOut(handovers=outs)


@router.post(
    "/v1/handovers/{handover_id}/execute",
    name="handovers-execute",
    summary="Execute now (admins; e.g. an immediate termination)",
    description="Moves ownership at once; an effective time in the future is brought forward to now.",
    response_model=schemas.HandoverOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        422,
        errors=[HandoverNotManaged, RoleNotAllowed, HandoverNotFound, EffectiveTimeNotReached, TransitionNotAllowed],
    ),
)
def execute_handover(
    handover_id: HandoverId,
    request: Request,
    session: DbSession,
    principal: HandoversApprove,
    now: Now,
    response: Response,
) -> schemas.HandoverOut:
    if principal.role != "admin":
        raise RoleNotAllowed("Only admins execute a handover by hand.")
    h = visibility.get_handover(
        session, principal, handover_id, lock=True, manage="Only admins execute a handover by hand."
    )
    service.execute(session, h, actor=principal.actor, now=now, immediate=True, settings=request.app.state.settings)
    return _transition_endpoint(h, session, response)


@router.post(
    "/v1/handovers/{handover_id}/cancel",
    name="handovers-cancel",
    summary="Cancel before execution: nothing moves",
    description="A scheduled leave can be cancelled too, also while it runs: the delegate's grants and the "
    "person's suspension are revoked now, so the person has their access back at once.",
    response_model=schemas.HandoverOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        415,
        422,
        errors=[HandoverNotManaged, RoleNotAllowed, HandoverNotFound, TransitionNotAllowed],
    ),
)
def cancel_handover(
    handover_id: HandoverId,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
    body: schemas.ReasonBody | None = None,
) -> schemas.HandoverOut:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins cancel handovers.")
    h = visibility.get_handover(
        session,
        principal,
        handover_id,
        lock=True,
        manage="Only the leaver's managers, hr or an admin may cancel this handover.",
    )
    service.cancel(session, h, actor=principal.actor, now=now, reason=body.reason if body else None)
    return _transition_endpoint(h, session, response)


@router.post(
    "/v1/handovers/{handover_id}/undo",
    name="handovers-undo",
    summary="Undo an executed handover (within the undo window)",
    description="Owners return to the leaver, who becomes active again.",
    response_model=schemas.HandoverOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        415,
        422,
        errors=[HandoverNotManaged, HandoverNotFound, TransitionNotAllowed, UndoWindowPassed, LeaveNotUndoable],
    ),
)
def undo_handover(
    handover_id: HandoverId,
    request: Request,
    session: DbSession,
    principal: HandoversApprove,
    now: Now,
    response: Response,
    body: schemas.ReasonBody | None = None,
) -> schemas.HandoverOut:
    undo_rule = "Only the leaver's manager or an admin may undo this handover."
    h = visibility.get_handover(session, principal, handover_id, lock=True, manage=undo_rule)
    if principal.role == "manager" and principal.employee != h.manager_id:
        raise HandoverNotManaged(undo_rule)
    service.undo(
        session,
        h,
        actor=principal.actor,
        now=now,
        reason=body.reason if body else None,
        settings=request.app.state.settings,
    )
    return _transition_endpoint(h, session, response)


@router.post(
    "/v1/handovers/{handover_id}/complete",
    name="handovers-complete",
    summary="Complete an executed handover with a reason (a manager closes open items)",
    description="A scheduled leave may be completed once started: the person is back now (the delegate's grants "
    "and the suspension end now); before its start, cancel it instead (409). The worker completes a leave at its "
    "return_at by itself.",
    response_model=schemas.HandoverOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        415,
        422,
        errors=[HandoverNotManaged, HandoverNotFound, TransitionNotAllowed, LeaveNotStarted],
    ),
)
def complete_handover(
    handover_id: HandoverId,
    body: schemas.RequiredReasonBody,
    session: DbSession,
    principal: HandoversApprove,
    now: Now,
    response: Response,
) -> schemas.HandoverOut:
    h = visibility.get_handover(
        session,
        principal,
        handover_id,
        lock=True,
        manage="Only the leaver's managers or an admin may complete this handover.",
    )
    if leave.is_leave(h):
        leave.complete(session, h, actor=principal.actor, now=now, reason=body.reason)
    else:
        service.complete(session, h, actor=principal.actor, now=now, reason=body.reason)
    return _transition_endpoint(h, session, response)


# Checklist entries and sign-off (their own package), here so that the contract keeps its order.
router.include_router(signoffs_router)


@router.post(
    "/v1/simulations",
    name="simulations-create",
    summary="Plan several leavers at once (a reorganisation or layoff); nothing is saved",
    description="Returns load before and after per successor, clients gained by tier, items needing attention and, "
    "optionally, the proposed items (at most 5,000). With `Prefer: respond-async`: 202 with a job that a worker "
    "runs (see GET /v1/jobs/{job_id}).",
    response_model=schemas.SimulationOut,
    responses={
        **ACCEPTED_RESPONSE,
        **problem_responses(401, 403, 404, 413, 415, 422, errors=[RoleNotAllowed, EmployeeNotFound, UnknownEmployee]),
    },
)
def simulate(
    body: schemas.SimulationRequest,
    request: Request,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    prefer: Prefer = None,
) -> Any:
    if prefers_async(prefer):
        longops.check_simulation(session, principal, body)
        job = jobs.submit(
            session, kind=longops.SIMULATION_KIND, request=body.model_dump(mode="json"), principal=principal, now=now
        )
        return accepted(job)
    return longops.simulation(session, principal, body, settings=request.app.state.settings)


# ---- the handover report ---------------------------------------------------------------------


_REPORT_CONTENT: dict[str, Any] = {
    CSV: {"schema": {"type": "string"}, "example": "handover_id,leaver_id,leaver_name,…\r\n"},
    HTML: {"schema": {"type": "string"}, "example": "<!doctype html>…"},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": HandoverReport,
        "description": "The report: JSON (default), CSV (one row per client, UTF-8 with BOM) or printable HTML.",
        "content": _REPORT_CONTENT,
    },
    **problem_responses(401, 403, 404, 406, 422, errors=[HandoverNotFound, ReportFormatNotAcceptable]),
}
_RESPONSES[406] = {**_RESPONSES[406], "description": "None of application/json, text/csv, text/html is acceptable."}


@router.get(
    "/v1/handovers/{handover_id}/report",
    name="handovers-report",
    summary="The handover report as JSON, CSV or printable HTML (by Accept)",
    description=(
        "Every client with its successor, interim owner, status, risk, checklist and sign-offs; a participant who "
        "does not manage the handover (a successor or interim owner on another team's handover) gets only their own "
        "clients, counted alone (`view: own`). "
        "`Accept: application/json` (the default, also for `*/*`), `text/csv` (a download, one row per client) "
        "or `text/html` (a document to print and sign). Anything else answers 406. The `format` query parameter "
        "(json, csv, html) chooses the same without Accept, e.g. for a link, and wins over it. "
        "The HTML is in the leaver's manager's language (their first of en, zh/zh-CN; else the service default, "
        "else en), or in the `locale` parameter's; JSON and CSV are the same in every locale (the JSON says which "
        "`locale` the HTML uses)."
    ),
    response_model=None,
    responses=_RESPONSES,
)
def handover_report(
    handover_id: HandoverId,
    request: Request,
    session: DbSession,
    principal: HandoversRead,
    now: Now,
    format: Annotated[
        schemas.ReportFormat | None,
        Query(description="json, csv or html: the report's format, instead of (and over) Accept."),
    ] = None,
    locale: Annotated[
        ReportLocale | None,
        Query(description="en or zh-CN: the language of the printable HTML, instead of the manager's."),
    ] = None,
) -> Response:
    media = choose(format, request.headers.get("accept"), REPORT_FORMATS)
    if media is None:
        raise ReportFormatNotAcceptable(
            "This report is available as application/json, text/csv or text/html.",
            extra={"allowed": list(REPORT_FORMATS)},
        )
    v = visibility.see_handover(session, principal, handover_id)
    h = v.handover
    default = request.app.state.settings.default_locale
    language = choose_locale(locale, manager_languages(session, h) if locale is None else None, default)
    report = build_report(session, h, now=now, only=v.items() if v.own else None, view=v.scope, locale=language)
    headers = {"Vary": "Accept", "Cache-Control": "private, no-store"}
    if media == CSV:
        headers["Content-Disposition"] = f'attachment; filename="handover-{h.id}.csv"'
        # The BOM lets spreadsheet programs read UTF-8 (Chinese names) correctly.
        body = ("\ufeff" + to_csv(report)).encode("utf-8")
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    if media == HTML:
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        headers["Content-Language"] = language
        return HTMLResponse(to_html(report), headers=headers)
    return JSONResponse(report, headers=headers)
