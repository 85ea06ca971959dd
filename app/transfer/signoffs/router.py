"""Each item's checklist entries (with evidence) and its sign-off: the routes over `signoffs.service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.core.auth import HandoversWrite
from app.core.deps import DbSession, Now
from app.core.errors import problem_responses
from app.transfer import schemas, visibility
from app.transfer.errors import (
    AlreadySigned,
    ChecklistIncomplete,
    ChecklistLocked,
    HandoverNotFound,
    HandoverNotSignable,
    ItemNotFound,
    ItemNotSignable,
    MitigationNotFound,
    NotInvolved,
    NotTheSigner,
    SignOffReasonRequired,
)
from app.transfer.params import HandoverId, ItemId
from app.transfer.signoffs import service as signoffs
from app.transfer.views import item_response

router = APIRouter()  # included by app.transfer.router (its tag, its place in the contract)


@router.put(
    "/v1/handovers/{handover_id}/items/{item_id}/checklist/{key}",
    name="handovers-items-checklist-set",
    summary="Mark a checklist entry done or not, with a note and evidence",
    description="The entry is replaced: done, note and `evidence` (at most 10 http/https links or record "
    "references {kind, external_id}, stored as given, never fetched or looked up). Which entries are required "
    "before sign-off comes from the tier's checklist template (GET /v1/checklist-templates/{tier}) and the item's "
    "mitigations.",
    response_model=schemas.ItemOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        415,
        422,
        errors=[NotInvolved, HandoverNotFound, ItemNotFound, MitigationNotFound, ChecklistLocked],
    ),
)
def set_checklist(
    handover_id: HandoverId,
    item_id: ItemId,
    key: Annotated[
        str,
        Path(
            pattern=schemas.CHECKLIST_KEY_PATTERN,
            description="A checklist key (client_profile, contacts, open_projects, contracts_financials, "
            "open_issues, handover_meeting) or a mitigation the risk score put on the item (mitigation:<action>).",
        ),
    ],
    body: schemas.ChecklistUpdate,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
) -> schemas.ItemOut:
    v = visibility.see_handover(session, principal, handover_id)
    item = visibility.get_item(session, v, item_id)
    signoffs.set_checklist(
        session,
        v.handover,
        item,
        key,
        done=body.done,
        note=body.note,
        principal=principal,
        now=now,
        evidence=[e.model_dump(exclude_none=True) for e in body.evidence],
    )
    return item_response(session, v, item, response)


@router.post(
    "/v1/handovers/{handover_id}/items/{item_id}/sign-off",
    name="handovers-items-sign-off",
    summary="Sign off an item: outgoing (the leaver, or their manager after exit) or incoming (the successor)",
    description="Refused with 409 checklist-incomplete, `open_items` naming them, while a required checklist entry "
    "is open: the required entries of the client's tier template, and every mitigation the risk score put on the "
    "item. Optional entries do not block.",
    response_model=schemas.ItemOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        415,
        422,
        errors=[
            NotTheSigner,
            HandoverNotFound,
            ItemNotFound,
            AlreadySigned,
            HandoverNotSignable,
            ItemNotSignable,
            SignOffReasonRequired,
            ChecklistIncomplete,
        ],
    ),
)
def sign_off(
    handover_id: HandoverId,
    item_id: ItemId,
    body: schemas.SignOff,
    session: DbSession,
    principal: HandoversWrite,
    now: Now,
    response: Response,
) -> schemas.ItemOut:
    v = visibility.see_handover(session, principal, handover_id, lock=True)
    item = visibility.get_item(session, v, item_id)
    signoffs.sign_off(session, v.handover, item, side=body.side, reason=body.reason, principal=principal, now=now)
    return item_response(session, v, item, response)
