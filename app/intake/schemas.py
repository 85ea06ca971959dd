"""Bodies of the inbound HR webhook (`POST /v1/hooks/hr`) and its answer.

A module of its own (not the router) so that the intake service can take a parsed event without importing FastAPI.
Every event is the Standard Webhooks envelope `{"type", "timestamp", "data"}`; `type` picks the data shape.
The envelope's `timestamp` is when the event happened at HR; it orders an employee's exit events (see
hooks_service), so it must be an RFC 3339 time with an offset, not Unix seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from app.core.types import ExternalId, InputModel, UtcTime
from app.directory.schemas import EmployeeIn

ExitReason = Literal["resignation", "termination", "retirement", "role_change", "leave", "other"]


class ExitData(InputModel):
    """Announces (or re-announces with a new time) an employee's exit."""

    model_config = ConfigDict(extra="forbid", title="HrExitData")

    employee: ExternalId = Field(description="The leaver's external id; the employee must exist.")
    effective_at: UtcTime = Field(description="When the exit takes effect (ISO 8601 with an offset).")
    reason: ExitReason = Field(
        description="resignation, termination, retirement, role_change, leave or other. role_change moves the "
        "clients like an exit but the person stays active (token and new clients kept); leave is a delegation "
        "for [effective_at, return_at) (see POST /v1/handovers), not an exit."
    )
    destination_competitor: bool | None = Field(None, description="Whether the leaver joins a competitor, if known.")
    return_at: UtcTime | None = Field(
        None,
        validate_default=True,
        description="A leave's end, when the person is back (required for reason leave, after effective_at; refused "
        "for any other reason). Re-sending the leave with other times moves it.",
    )

    @field_validator("return_at")
    @classmethod
    def _leave_window(cls, value: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        """A leave needs return_at, after effective_at; another reason takes none (cross-field rules)."""
        reason, start = info.data.get("reason"), info.data.get("effective_at")
        if reason is None:
            return value
        if reason == "leave" and value is None:
            raise PydanticCustomError("missing", "a leave needs return_at")
        if reason != "leave" and value is not None:
            raise PydanticCustomError("value_error", "only a leave has return_at")
        if value is not None and start is not None and value <= start:
            raise PydanticCustomError("value_error", "must be after effective_at")
        return value


class ExitCancelledData(InputModel):
    """Withdraws an exit: the open handover is cancelled, an executed one is undone."""

    model_config = ConfigDict(extra="forbid", title="HrExitCancelledData")

    employee: ExternalId = Field(description="The employee whose exit is withdrawn.")
    reason: str | None = Field(None, max_length=2000, description="Why the exit was withdrawn.")


class EmployeeUpdatedData(EmployeeIn):
    """The whole employee record as HR knows it (it replaces the stored one, like PUT /v1/employees/{id})."""

    model_config = ConfigDict(extra="forbid", title="HrEmployeeUpdatedData")

    employee: ExternalId = Field(description="The employee's external id; created if unknown.")

    def record(self) -> EmployeeIn:
        """The directory's input row, without the id (which the directory takes separately)."""
        # exclude_unset: which fields HR sent must survive (an omitted exit state is kept, not reset).
        return EmployeeIn.model_validate(self.model_dump(exclude={"employee"}, exclude_unset=True))


Timestamp = Annotated[
    UtcTime,
    Field(
        description=(
            "When the event happened at the HR system (RFC 3339 with an offset; at most 5 minutes ahead of the "
            "receiver's clock). It orders an employee's `employee.exit` and `employee.exit_cancelled` events, "
            "and separately their `employee.updated` events: an event older than the last one of its kind "
            "applied is ignored as stale."
        )
    ),
]


class ExitEvent(InputModel):
    model_config = ConfigDict(extra="forbid", title="HrExitEvent")

    type: Literal["employee.exit"] = Field(description="The event type.")
    timestamp: Timestamp
    data: ExitData


class ExitCancelledEvent(InputModel):
    model_config = ConfigDict(extra="forbid", title="HrExitCancelledEvent")

    type: Literal["employee.exit_cancelled"] = Field(description="The event type.")
    timestamp: Timestamp
    data: ExitCancelledData


class EmployeeUpdatedEvent(InputModel):
    model_config = ConfigDict(extra="forbid", title="HrEmployeeUpdatedEvent")

    type: Literal["employee.updated"] = Field(description="The event type.")
    timestamp: Timestamp
    data: EmployeeUpdatedData


HrEvent = Annotated[ExitEvent | ExitCancelledEvent | EmployeeUpdatedEvent, Field(discriminator="type")]
EVENT_TYPES = ("employee.exit", "employee.exit_cancelled", "employee.updated")
hr_event_adapter: TypeAdapter[ExitEvent | ExitCancelledEvent | EmployeeUpdatedEvent] = TypeAdapter(HrEvent)


class HrEventResult(BaseModel):
    """What the delivery did; a replay answers the stored result of the first delivery."""

    webhook_id: str = Field(description="The webhook-id header of the delivery.")
    type: str = Field(description="The event type.")
    replayed: bool = Field(description="True if this webhook-id was processed before and nothing changed now.")
    handover_id: int | None = Field(
        description="The handover opened, moved, cancelled or undone; null if the event touched none."
    )
    ignored: Literal["stale"] | None = Field(
        description=(
            "Why a new event changed nothing: `stale` when an event of its kind (exit and exit_cancelled; or "
            "updated) for the same employee with a later `timestamp` was already applied (the event is audited, "
            "not applied). "
            "Null if the event was applied."
        )
    )


def inline_json_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The adapter's JSON Schema with `$defs` inlined, for `openapi_extra` (which cannot add components).

    The discriminator mapping points into `$defs`, so it is dropped; each branch's `type` is a const, so
    `oneOf` stays unambiguous.
    """
    schema = adapter.json_schema(mode="validation")
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            is_union = "oneOf" in node
            return {k: resolve(v) for k, v in node.items() if not (is_union and k == "discriminator")}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
