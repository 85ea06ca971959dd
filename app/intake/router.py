"""`POST /v1/hooks/hr`: HR events, authenticated by a Standard Webhooks signature instead of a JWT.

The body is read raw and verified before it is parsed, so an unsigned request learns nothing about the schema
and never reaches the database. The request schema is documented through `openapi_extra` for that reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import ValidationError

from app.core import signing
from app.core.auth import DirectoryWrite
from app.core.deps import DbSession, Now
from app.core.errors import problem_responses
from app.core.types import EXTERNAL_ID_PATTERN
from app.directory import schemas as directory_schemas
from app.directory import service as directory
from app.directory.errors import ClientRecordsInvalid, EmployeeRecordsInvalid, ManagementCycle
from app.intake import service as intake
from app.intake.errors import (
    HrEventInFuture,
    HrEventInvalid,
    HrWebhookNotConfigured,
    WebhookIdTooLong,
    WebhookSignatureInvalid,
)
from app.intake.schemas import (
    EVENT_TYPES,
    EmployeeUpdatedEvent,
    ExitCancelledEvent,
    ExitEvent,
    HrEventResult,
    hr_event_adapter,
    inline_json_schema,
)

router = APIRouter()

PathId = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN, description="The external id (HR/CRM id).")]
logger = logging.getLogger("handover.hooks")

WEBHOOK_ID_MAX = 200  # inbound_event.webhook_id is String(200)

_EXAMPLE = {
    "type": "employee.exit",
    "timestamp": "2026-11-02T09:00:00Z",
    "data": {
        "employee": "E1001",
        "effective_at": "2026-12-31T17:00:00Z",
        "reason": "resignation",
        "destination_competitor": False,
    },
}
_HEADERS = {
    "webhook-id": "The delivery's unique id; a repeated id is answered from the first delivery and changes nothing.",
    "webhook-timestamp": "Unix seconds when the delivery was signed; refused if more than 5 minutes off.",
    "webhook-signature": "Space-separated `v1,<base64 HMAC-SHA256>` entries over `{id}.{timestamp}.{body}`.",
}

Event = ExitEvent | ExitCancelledEvent | EmployeeUpdatedEvent


@dataclass(frozen=True)
class Delivery:
    """A delivery whose signature and freshness were checked; the body is still unparsed bytes."""

    webhook_id: str
    body: bytes
    received_at: dt.datetime


async def verified_delivery(request: Request) -> Delivery:
    """Async so the signature check runs on the event loop, before the (threadpool) endpoint opens a session."""
    settings = request.app.state.settings
    secret = getattr(settings, "hr_webhook_secret", None)
    try:
        secrets = signing.parse_secrets(secret.get_secret_value()) if secret is not None else []
    except ValueError:
        logger.error("HANDOVER_HR_WEBHOOK_SECRET is malformed; HR webhooks are refused")
        secrets = []
    if not secrets:
        raise HrWebhookNotConfigured("HR webhook not configured.")
    body = await request.body()
    now = request.app.state.clock.now()
    try:
        signing.verify_signature(secrets, request.headers, body, now)
    except signing.InvalidSignature as exc:
        logger.warning("HR webhook refused: %s", exc.reason)
        raise WebhookSignatureInvalid(f"The webhook signature is not valid: {exc.reason}.") from exc
    webhook_id = request.headers["webhook-id"].strip()
    if len(webhook_id) > WEBHOOK_ID_MAX:
        raise WebhookIdTooLong(
            f"The webhook-id is longer than {WEBHOOK_ID_MAX} characters.",
            errors=[{"loc": ["header", "webhook-id"], "msg": "too long", "type": "string_too_long"}],
        )
    return Delivery(webhook_id=webhook_id, body=body, received_at=now)


def parse_event(body: bytes) -> Event:
    """The event, or 422 with field errors located in the body (the union's tag is left out of `loc`)."""
    try:
        return hr_event_adapter.validate_json(body)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = list(err["loc"])
            if loc and loc[0] in EVENT_TYPES:
                loc = loc[1:]
            errors.append({"loc": ["body", *loc], "msg": err["msg"], "type": err["type"]})
        raise HrEventInvalid("The event is not valid; see errors.", errors=errors) from exc


@router.post(
    "/v1/hooks/hr",
    tags=["hr-events"],
    name="hr-events-receive",
    summary="Receive an HR event (signed webhook)",
    description=(
        "Signed with [Standard Webhooks](https://www.standardwebhooks.com) (HMAC-SHA256, secret "
        "`HANDOVER_HR_WEBHOOK_SECRET`; several space-separated secrets are accepted during rotation), "
        "not with a bearer token.\n\n"
        "- `employee.exit` opens the leaver's handover, or moves the effective time of the open one.\n"
        "- `employee.exit_cancelled` cancels the open handover, or undoes an executed one.\n"
        "- `employee.updated` creates or replaces the employee record (the whole record, like PUT; omit both "
        "`status` and `exit_at` to keep the exit state the two events above set).\n\n"
        "Each `webhook-id` is processed once: a repeated delivery answers `replayed: true` with the first "
        "result and changes nothing. A refused delivery (401, 4xx) writes nothing and may be retried.\n\n"
        "Deliveries may arrive out of order, so an employee's `employee.exit` and `employee.exit_cancelled` "
        "events are ordered by the body's `timestamp` (when the event happened at HR; not `webhook-timestamp`, "
        "which is when this attempt was signed). An event older than the latest one already processed for the "
        'same employee changes nothing: it answers `ignored: "stale"` and is audited. An event with the same '
        "`timestamp` as the latest is applied (the later arrival wins). A `timestamp` more than 5 minutes ahead "
        "of the receiver's clock is refused (422). `employee.updated` events are ordered the same way among "
        "themselves (a late retry of an old update does not overwrite a newer record), apart from the exit events."
    ),
    response_model=HrEventResult,
    responses={
        200: {
            "description": (
                'Processed now (`ignored: "stale"` if a later event for the employee was already applied, '
                "so nothing changed), or (`replayed: true`) answered from the first delivery of this id."
            )
        },
        **problem_responses(
            401,
            404,
            409,
            413,
            415,
            422,
            503,
            errors=[WebhookSignatureInvalid, WebhookIdTooLong, HrEventInvalid, HrEventInFuture, HrWebhookNotConfigured],
            describe={
                401: "Missing, stale or invalid webhook signature.",
                503: "The HR webhook secret is not configured, or the database is unavailable.",
            },
            public=True,
        ),
    },
    openapi_extra={
        "parameters": [
            {"name": name, "in": "header", "required": True, "description": text, "schema": {"type": "string"}}
            for name, text in _HEADERS.items()
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_json_schema(hr_event_adapter),
                    "example": _EXAMPLE,
                }
            },
        },
    },
)
def receive_hr_event(
    request: Request,
    delivery: Annotated[Delivery, Depends(verified_delivery)],
    session: DbSession,
) -> HrEventResult:
    event = parse_event(delivery.body)
    result = intake.handle_event(
        session,
        event,
        webhook_id=delivery.webhook_id,
        now=delivery.received_at,
        settings=request.app.state.settings,
        exits=request.app.state.exits,
    )
    return HrEventResult.model_validate(result)


# ---- directory records ---------------------------------------------------------------------------


@router.put(
    "/v1/employees/{external_id}",
    tags=["directory"],
    name="employees-upsert",
    summary="Create or replace an employee",
    response_model=directory_schemas.EmployeeOut,
    responses={
        201: {"model": directory_schemas.EmployeeOut, "description": "Created."},
        **problem_responses(401, 403, 409, 413, 415, 422, errors=[EmployeeRecordsInvalid, ManagementCycle]),
    },
)
def upsert_employee(
    external_id: PathId,
    body: directory_schemas.EmployeeIn,
    session: DbSession,
    principal: DirectoryWrite,
    now: Now,
    response: Response,
    request: Request,
) -> directory_schemas.EmployeeOut:
    created, _ = intake.put_employees(
        session,
        [(external_id, body)],
        actor=principal.actor,
        now=now,
        loc_prefix=("body",),
        row_index=False,
        exits=request.app.state.exits,
        settings=request.app.state.settings,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return directory.employee_out(directory.get_employee(session, principal, external_id))


@router.post(
    "/v1/employees/batch",
    tags=["directory"],
    name="employees-batch-upsert",
    summary="Create or replace up to 1,000 employees, all or nothing",
    description="Rows may reference each other as managers. One bad row writes nothing; errors name the row index.",
    response_model=directory_schemas.BatchResult,
    responses=problem_responses(401, 403, 409, 413, 415, 422, errors=[EmployeeRecordsInvalid, ManagementCycle]),
)
def batch_employees(
    body: directory_schemas.EmployeeBatch,
    session: DbSession,
    principal: DirectoryWrite,
    now: Now,
    request: Request,
) -> directory_schemas.BatchResult:
    rows = [(item.external_id, item) for item in body.items]
    created, updated = intake.put_employees(
        session,
        rows,
        actor=principal.actor,
        now=now,
        exits=request.app.state.exits,
        settings=request.app.state.settings,
    )
    return directory_schemas.BatchResult(created=created, updated=updated, external_ids=[r[0] for r in rows])


@router.put(
    "/v1/clients/{external_id}",
    tags=["directory"],
    name="clients-upsert",
    summary="Create or replace a client with its contacts and account team",
    response_model=directory_schemas.ClientOut,
    responses={
        201: {"model": directory_schemas.ClientOut, "description": "Created."},
        **problem_responses(401, 403, 409, 413, 415, 422, errors=[ClientRecordsInvalid]),
    },
)
def upsert_client(
    external_id: PathId,
    body: directory_schemas.ClientIn,
    request: Request,
    session: DbSession,
    principal: DirectoryWrite,
    now: Now,
    response: Response,
) -> directory_schemas.ClientOut:
    created, _ = intake.put_clients(
        session,
        [(external_id, body)],
        actor=principal.actor,
        now=now,
        loc_prefix=("body",),
        row_index=False,
        late_owners=request.app.state.late_owners,
        settings=request.app.state.settings,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return directory.clients_out(session, [directory.get_client(session, principal, external_id)])[0]


@router.post(
    "/v1/clients/batch",
    tags=["directory"],
    name="clients-batch-upsert",
    summary="Create or replace up to 1,000 clients, all or nothing",
    description="Owners and account-team members must exist. One bad row writes nothing; errors name the row index.",
    response_model=directory_schemas.BatchResult,
    responses=problem_responses(401, 403, 409, 413, 415, 422, errors=[ClientRecordsInvalid]),
)
def batch_clients(
    body: directory_schemas.ClientBatch,
    request: Request,
    session: DbSession,
    principal: DirectoryWrite,
    now: Now,
) -> directory_schemas.BatchResult:
    rows = [(item.external_id, item) for item in body.items]
    created, updated = intake.put_clients(
        session,
        rows,
        actor=principal.actor,
        now=now,
        late_owners=request.app.state.late_owners,
        settings=request.app.state.settings,
    )
    return directory_schemas.BatchResult(created=created, updated=updated, external_ids=[r[0] for r in rows])
