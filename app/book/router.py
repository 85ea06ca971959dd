"""`/v1/records`: the records the CRM holds beside its clients (deals, tasks, cases, …)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.book import schemas, service
from app.book.errors import RecordNotFound, RecordRowsInvalid
from app.core.auth import DirectoryRead, DirectoryWrite
from app.core.deps import DbSession, Now
from app.core.errors import problem_responses
from app.core.pagination import Page, Pagination, page_of
from app.core.types import EXTERNAL_ID_PATTERN

router = APIRouter(tags=["records"])

Kind = Annotated[schemas.RecordKind, Path(description="The record's kind.")]
PathId = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN, description="The record's external id (unique per kind).")]


@router.put(
    "/v1/records/{kind}/{external_id}",
    name="records-upsert",
    summary="Create or replace a record (a deal, task, case, …)",
    description="The owner and the client (if any) must exist. " + schemas.STATUS_DESCRIPTION,
    response_model=schemas.RecordOut,
    responses={
        201: {"model": schemas.RecordOut, "description": "Created."},
        **problem_responses(401, 403, 409, 413, 415, 422, errors=[RecordRowsInvalid]),
    },
)
def upsert_record(
    kind: Kind,
    external_id: PathId,
    body: schemas.RecordIn,
    session: DbSession,
    principal: DirectoryWrite,
    now: Now,
    response: Response,
) -> schemas.RecordOut:
    written = service.upsert_records(
        session, [(kind, external_id, body)], actor=principal.actor, now=now, loc_prefix=("body",), row_index=False
    )
    if written.created:
        response.status_code = status.HTTP_201_CREATED
    return service.record_out(service.get_record(session, principal, kind, external_id))


@router.post(
    "/v1/records/batch",
    name="records-batch-upsert",
    summary="Create or replace up to 1,000 records, all or nothing",
    description="Owners and clients must exist. One bad row writes nothing; errors name the row index.",
    response_model=schemas.RecordBatchResult,
    responses=problem_responses(401, 403, 409, 413, 415, 422, errors=[RecordRowsInvalid]),
)
def batch_records(
    body: schemas.RecordBatch, session: DbSession, principal: DirectoryWrite, now: Now
) -> schemas.RecordBatchResult:
    rows = [(item.kind, item.external_id, item) for item in body.items]
    written = service.upsert_records(session, rows, actor=principal.actor, now=now)
    return schemas.RecordBatchResult(
        created=written.created,
        updated=written.updated,
        records=[schemas.RecordKey(kind=item.kind, external_id=item.external_id) for item in body.items],
    )


@router.get(
    "/v1/records/{kind}/{external_id}",
    name="records-get",
    summary="Get a record",
    response_model=schemas.RecordOut,
    responses=problem_responses(401, 403, 404, 422, errors=[RecordNotFound]),
)
def get_record(kind: Kind, external_id: PathId, session: DbSession, principal: DirectoryRead) -> schemas.RecordOut:
    return service.record_out(service.get_record(session, principal, kind, external_id))


@router.get(
    "/v1/records",
    name="records-list",
    summary="List records",
    description=(
        "Ordered by kind, then external id. Account managers see their own records and those of the clients they "
        "own or serve; managers their team's and their team's clients'."
    ),
    response_model=Page[schemas.RecordOut],
    responses=problem_responses(401, 403, 422),
)
def list_records(
    session: DbSession,
    principal: DirectoryRead,
    page: Pagination,
    kind: Annotated[schemas.RecordKind | None, Query(description="Only this kind.")] = None,
    owner: Annotated[
        str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only records owned by this employee.")
    ] = None,
    client: Annotated[str | None, Query(pattern=EXTERNAL_ID_PATTERN, description="Only this client's records.")] = None,
    status: Annotated[schemas.RecordStatus | None, Query(description="Only open or only closed records.")] = None,
) -> Page[schemas.RecordOut]:
    rows = service.list_records(
        session,
        principal,
        service.RecordFilter(kind, owner, client, status),
        limit=page.limit + 1,
        offset=page.offset,
    )
    items, nxt = page_of(rows, page)
    return Page[schemas.RecordOut](
        items=[service.record_out(r) for r in items], limit=page.limit, offset=page.offset, next_offset=nxt
    )
