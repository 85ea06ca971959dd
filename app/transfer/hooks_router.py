"""`POST /v1/hooks/hr`: HR events, authenticated by a Standard Webhooks signature instead of a JWT.

The body is read raw and verified before it is parsed, so an unsigned request learns nothing about the schema
and never reaches the database. The request schema is documented through `openapi_extra` for that reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from app.core.deps import DbSession
from app.core.errors import ServiceUnavailable, Unauthorized, Unprocessable, problem_responses
from app.transfer import hooks, hooks_service
from app.transfer.hooks_schemas import (
    EVENT_TYPES,
    EmployeeUpdatedEvent,
    ExitCancelledEvent,
    ExitEvent,
    HrEventResult,
    hr_event_adapter,
    inline_json_schema,
)

router = APIRouter(tags=["hr-events"])
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
        secrets = hooks.parse_secrets(secret.get_secret_value()) if secret is not None else []
    except ValueError:
        logger.error("HANDOVER_HR_WEBHOOK_SECRET is malformed; HR webhooks are refused")
        secrets = []
    if not secrets:
        raise ServiceUnavailable("HR webhook not configured.")
    body = await request.body()
    now = request.app.state.clock.now()
    try:
        hooks.verify_signature(secrets, request.headers, body, now)
    except hooks.InvalidSignature as exc:
        logger.warning("HR webhook refused: %s", exc.reason)
        raise Unauthorized(f"The webhook signature is not valid: {exc.reason}.") from exc
    webhook_id = request.headers["webhook-id"].strip()
    if len(webhook_id) > WEBHOOK_ID_MAX:
        raise Unprocessable(
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
        raise Unprocessable("The event is not valid; see errors.", errors=errors) from exc


@router.post(
    "/v1/hooks/hr",
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
        **problem_responses(401, 404, 409, 413, 415, 422),
        401: {**problem_responses(401)[401], "description": "Missing, stale or invalid webhook signature."},
        503: {
            **problem_responses(503)[503],
            "description": "The HR webhook secret is not configured, or the database is unavailable.",
        },
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
    result = hooks_service.handle_event(
        session, event, webhook_id=delivery.webhook_id, now=delivery.received_at, settings=request.app.state.settings
    )
    return HrEventResult.model_validate(result)
