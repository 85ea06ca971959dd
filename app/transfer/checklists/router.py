"""Checklist templates per client tier, and a handover's confidentiality steps (issue 16 point 4)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response

from app.core.auth import HandoversRead, HandoversWrite, Principal
from app.core.deps import DbSession, Now
from app.core.errors import RoleNotAllowed, problem_responses
from app.core.http import check_if_match
from app.core.pagination import Page, Pagination, page_of
from app.directory.schemas import ClientTier
from app.transfer import schemas, visibility
from app.transfer.checklists import service as checklists
from app.transfer.errors import ConfidentialityLocked, HandoverNotFound, HandoverNotManaged
from app.transfer.models import ChecklistTemplate
from app.transfer.params import HandoverId
from app.transfer.router import CREATOR_ROLES
from app.transfer.views import handover_out

router = APIRouter(tags=["handovers"])

TEMPLATE_ROLES = frozenset({"admin", "hr", "integration"})
TierPath = Annotated[ClientTier, Path(description="The client tier: strategic, key, standard or prospect.")]
StepPath = Annotated[
    schemas.ConfidentialityStep,
    Path(description="nda_reminder_acknowledged, company_data_returned or non_compete_notice_given."),
]
IfMatch = Annotated[str | None, Header(max_length=200, description="The template's ETag you last read.")]


def _tag(tier: str, version: int) -> str:
    return f'"checklist-template-{tier}-v{version}"'


def _out(tier: str, row: ChecklistTemplate | None, entries: list[dict[str, Any]]) -> schemas.ChecklistTemplateOut:
    return schemas.ChecklistTemplateOut.model_validate(
        {
            "tier": tier,
            "entries": entries,
            "default": row is None,
            "version": row.version if row is not None else 0,
            "updated_by": row.updated_by if row is not None else None,
            "updated_at": row.updated_at if row is not None else None,
        }
    )


@router.get(
    "/v1/checklist-templates",
    name="checklist-templates-list",
    summary="Every tier's checklist template (the default for a tier never configured)",
    response_model=Page[schemas.ChecklistTemplateOut],
    responses=problem_responses(401, 403, 422),
)
def list_templates(
    session: DbSession, principal: HandoversRead, page: Pagination
) -> Page[schemas.ChecklistTemplateOut]:
    rows = checklists.templates(session, limit=page.limit + 1, offset=page.offset)
    items, nxt = page_of(rows, page)
    return Page[schemas.ChecklistTemplateOut](
        items=[_out(tier, row, checklists.entries(session, tier)) for tier, row in items],
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt,
    )


@router.get(
    "/v1/checklist-templates/{tier}",
    name="checklist-templates-get",
    summary="One tier's checklist template (with its ETag)",
    response_model=schemas.ChecklistTemplateOut,
    responses=problem_responses(401, 403, 422),
)
def get_template(
    tier: TierPath, session: DbSession, principal: HandoversRead, response: Response
) -> schemas.ChecklistTemplateOut:
    row = checklists.template(session, tier)
    response.headers["ETag"] = _tag(tier, row.version if row is not None else 0)
    return _out(tier, row, checklists.entries(session, tier))


@router.put(
    "/v1/checklist-templates/{tier}",
    name="checklist-templates-put",
    summary="Replace a tier's checklist template (hr, admins, integrations)",
    description="The entries (each checklist key at most once, at most six) with their labels and whether sign-off "
    "waits for them. The default for a tier never configured: client_profile, contacts and handover_meeting "
    "required, open_projects, contracts_financials and open_issues optional. Mitigations the risk score puts on an "
    "item are always required. Applies to every open item of that tier from now on. If-Match is optional; when sent "
    "it must be the current ETag (412). A bad body (unknown tier, too many or repeated entries) is 422 and writes "
    "nothing. Audited (before and after).",
    response_model=schemas.ChecklistTemplateOut,
    responses=problem_responses(401, 403, 412, 413, 415, 422, errors=[RoleNotAllowed]),
)
def put_template(
    tier: TierPath,
    body: schemas.ChecklistTemplateIn,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
    if_match: IfMatch = None,
) -> schemas.ChecklistTemplateOut:
    _may_configure(principal)
    current = checklists.template(session, tier)
    if if_match is not None:
        check_if_match(if_match, _tag(tier, current.version if current is not None else 0))
    row = checklists.put_template(session, tier, [e.model_dump() for e in body.entries], actor=principal.actor, now=now)
    response.headers["ETag"] = _tag(tier, row.version)
    return _out(tier, row, list(row.entries))


def _may_configure(principal: Principal) -> None:
    if principal.role not in TEMPLATE_ROLES:
        raise RoleNotAllowed("Only hr, admins and integrations configure checklist templates.")


@router.put(
    "/v1/handovers/{handover_id}/confidentiality/{step}",
    name="handovers-confidentiality-set",
    summary="Record a confidentiality step of a handover (NDA reminder, company data, non-compete notice)",
    description="Per handover, not per client: nda_reminder_acknowledged, company_data_returned, "
    "non_compete_notice_given, each done or not with a note; who and when are recorded. hr, admins, integrations "
    "and the leaver's managers; any status but cancelled or undone (409). Shown in GET /v1/handovers/{handover_id} "
    "and the report. Audited.",
    response_model=schemas.HandoverOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        415,
        422,
        errors=[RoleNotAllowed, HandoverNotManaged, HandoverNotFound, ConfidentialityLocked],
    ),
)
def set_confidentiality(
    handover_id: HandoverId,
    step: StepPath,
    body: schemas.ConfidentialityUpdate,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
) -> schemas.HandoverOut:
    if principal.role not in CREATOR_ROLES:
        raise RoleNotAllowed("Only hr, managers and admins record confidentiality steps.")
    h = visibility.get_handover(
        session,
        principal,
        handover_id,
        lock=True,
        manage="Only the leaver's managers, hr or an admin may record this handover's confidentiality steps.",
    )
    checklists.set_confidentiality(session, h, step, done=body.done, note=body.note, actor=principal.actor, now=now)
    response.headers["ETag"] = f'"handover-{h.id}-v{h.version}"'
    return handover_out(session, h)
