from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.core.auth import DirectoryRead
from app.core.deps import DbSession
from app.core.errors import problem_responses
from app.core.pagination import Page, Pagination, page_of
from app.core.types import EXTERNAL_ID_PATTERN
from app.directory import schemas, service
from app.directory.errors import ClientNotFound, EmployeeNotFound, SearchTextInvalid

router = APIRouter(tags=["directory"])

PathId = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN, description="The external id (HR/CRM id).")]
Q = Annotated[str | None, Query(min_length=1, max_length=100, description="Case-insensitive text search.")]


@router.get(
    "/v1/employees/{external_id}",
    name="employees-get",
    summary="Get an employee",
    response_model=schemas.EmployeeOut,
    responses=problem_responses(401, 403, 404, 422, errors=[EmployeeNotFound]),
)
def get_employee(external_id: PathId, session: DbSession, principal: DirectoryRead) -> schemas.EmployeeOut:
    return service.employee_out(service.get_employee(session, principal, external_id))


@router.get(
    "/v1/employees",
    name="employees-list",
    summary="List employees",
    description="Ordered by external id. Managers see their reports; account managers themselves and their manager.",
    response_model=Page[schemas.EmployeeOut],
    responses=problem_responses(401, 403, 422, errors=[SearchTextInvalid]),
)
def list_employees(
    session: DbSession,
    principal: DirectoryRead,
    page: Pagination,
    status: Annotated[schemas.EmployeeStatus | None, Query(description="Only this status.")] = None,
    manager: Annotated[
        str | None,
        Query(pattern=EXTERNAL_ID_PATTERN, description="Only direct reports of this employee."),
    ] = None,
    q: Q = None,
) -> Page[schemas.EmployeeOut]:
    rows = service.list_employees(
        session,
        principal,
        service.EmployeeFilter(status, manager, q),
        limit=page.limit + 1,
        offset=page.offset,
    )
    items, nxt = page_of(rows, page)
    return Page[schemas.EmployeeOut](
        items=[service.employee_out(e) for e in items],
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt,
    )


@router.get(
    "/v1/clients/{external_id}",
    name="clients-get",
    summary="Get a client with its contacts and account team",
    response_model=schemas.ClientOut,
    responses=problem_responses(401, 403, 404, 422, errors=[ClientNotFound]),
)
def get_client(external_id: PathId, session: DbSession, principal: DirectoryRead) -> schemas.ClientOut:
    return service.clients_out(session, [service.get_client(session, principal, external_id)])[0]


@router.get(
    "/v1/clients",
    name="clients-list",
    summary="List clients",
    description=(
        "Ordered by external id. Account managers see clients they own or serve; managers their reports' clients."
    ),
    response_model=Page[schemas.ClientOut],
    responses=problem_responses(401, 403, 422, errors=[SearchTextInvalid]),
)
def list_clients(
    session: DbSession,
    principal: DirectoryRead,
    page: Pagination,
    status: Annotated[schemas.ClientStatus | None, Query(description="Only this status.")] = None,
    owner: Annotated[
        str | None,
        Query(pattern=EXTERNAL_ID_PATTERN, description="Only clients owned by this employee."),
    ] = None,
    manager: Annotated[
        str | None,
        Query(
            pattern=EXTERNAL_ID_PATTERN,
            description="Only clients whose owner reports to this employee.",
        ),
    ] = None,
    tier: Annotated[schemas.ClientTier | None, Query(description="Only this tier.")] = None,
    q: Q = None,
) -> Page[schemas.ClientOut]:
    rows = service.list_clients(
        session,
        principal,
        service.ClientFilter(status, owner, manager, tier, q),
        limit=page.limit + 1,
        offset=page.offset,
    )
    items, nxt = page_of(rows, page)
    return Page[schemas.ClientOut](
        items=service.clients_out(session, items),
        limit=page.limit,
        offset=page.offset,
        next_offset=nxt,
    )
