from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.audit import schemas, service
from app.core.auth import AuditRead
from app.core.db import ACTOR_LENGTH
from app.core.deps import DbSession
from app.core.errors import problem_responses
from app.core.pagination import Page, Pagination, page_of
from app.core.types import UtcTime

router = APIRouter(tags=["audit"])


@router.get(
    "/v1/audit",
    name="audit-list",
    summary="List audit entries, newest first",
    response_model=Page[schemas.AuditEntryOut],
    responses=problem_responses(401, 403, 422),
)
def list_audit(
    session: DbSession,
    principal: AuditRead,
    page: Pagination,
    entity_type: Annotated[str | None, Query(max_length=50, description="Only this kind of object.")] = None,
    entity_id: Annotated[str | None, Query(max_length=200, description="Only this object.")] = None,
    actor: Annotated[str | None, Query(max_length=ACTOR_LENGTH, description="Only this actor.")] = None,
    action: Annotated[str | None, Query(max_length=100, description="Only this action.")] = None,
    since: Annotated[UtcTime | None, Query(description="Entries at or after this time.")] = None,
    until: Annotated[UtcTime | None, Query(description="Entries before this time.")] = None,
) -> Page[schemas.AuditEntryOut]:
    flt = service.AuditFilter(entity_type, entity_id, actor, action, since, until)
    rows = service.list_entries(session, flt, limit=page.limit + 1, offset=page.offset)
    items, nxt = page_of(rows, page)
    return Page[schemas.AuditEntryOut](
        items=[schemas.AuditEntryOut.model_validate(r) for r in items],
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt,
    )


@router.get(
    "/v1/audit/verify",
    name="audit-verify",
    summary="Verify the hash chain against its signed checkpoints",
    description="Recomputes the hashes after the last verified checkpoint (every hash with `full=true`), checks "
    "each later checkpoint's signature and that the log still holds the head it signed; reports the first entry "
    "that was edited, deleted, reordered, truncated or rewritten.",
    response_model=schemas.AuditVerification,
    responses=problem_responses(401, 403, 422),
)
def verify_audit(
    request: Request,
    session: DbSession,
    principal: AuditRead,
    full: Annotated[
        bool,
        Query(
            description="Walk the whole chain from the first entry: also finds an entry edited in place (its "
            "stored hash left alone) before the last verified checkpoint."
        ),
    ] = False,
) -> schemas.AuditVerification:
    result = service.verify(session, request.app.state.settings, full=full)
    broken = result.first_broken
    cp = result.checkpoint
    return schemas.AuditVerification(
        ok=result.ok,
        count=result.count,
        total=result.total,
        head_hash=result.head_hash,
        first_broken=schemas.ChainBreak(seq=broken.seq, reason=broken.reason) if broken else None,
        anchored=result.anchored,
        checkpoint=schemas.CheckpointOut(
            id=cp.id,
            seq=cp.claims.seq,
            head_hash=cp.claims.head_hash,
            count=cp.claims.count,
            taken_at=cp.claims.at,
            key_id=cp.claims.key_id,
            verified=cp.claims.verified,
            reason=cp.claims.reason,
        )
        if cp
        else None,
        verified_from=result.verified_from,
        verified_entries=result.verified_entries,
        unanchored=result.unanchored,
        checkpoints_checked=result.checkpoints_checked,
        checkpoint_errors=[
            schemas.CheckpointError(checkpoint=e.checkpoint, seq=e.seq, reason=e.reason)
            for e in result.checkpoint_errors
        ],
        full=result.full,
    )
