from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from app.book.schemas import RecordKind
from app.core.types import ExternalId, InputModel, UtcTime

Level = Literal["owner", "interim", "shadow", "read"]
Action = Literal["view", "edit", "export", "delete"]
DecisionReason = Literal[
    "granted",
    "unknown_employee",
    "unknown_client",
    "employee_departed",
    "employee_away",
    "no_grant",
    "insufficient_clearance",
    "view_only",
    "owner_required",
    "not_record_owner",
]

BATCH_CHECK_MAX = 500


class RecordRef(InputModel):
    """A record of the book (a deal, case, task, …), by its kind and the CRM's id."""

    kind: RecordKind = Field(description="deal, task, case, meeting, contract, invoice, project, automation, other.")
    external_id: ExternalId = Field(description="The record's id in the CRM (unique per kind).")


class RecordRefOut(BaseModel):
    kind: RecordKind
    external_id: str


class AccessCheck(InputModel):
    employee: ExternalId = Field(description="Who wants access.")
    client: ExternalId = Field(description="To which client's data.")
    action: Action = Field(description="view, edit, export or delete.")
    at: UtcTime | None = Field(None, description="The instant to decide for; default now.")


class RecordAccessCheck(InputModel):
    """A check naming a record instead of a client: decided as for the record's client; a client-less record (the
    owner's own automation, report, …) is allowed only to its owner. An unknown record is a 404."""

    employee: ExternalId = Field(description="Who wants access.")
    record: RecordRef = Field(description="To which record.")
    action: Action = Field(description="view, edit, export or delete.")
    at: UtcTime | None = Field(None, description="The instant to decide for; default now.")


def _target(value: Any) -> str:
    """Which check a body is: a record check names a record and no client; anything else is validated (and refused,
    naming the field) as a client check."""
    record = isinstance(value, dict) and "record" in value and "client" not in value
    return "RecordAccessCheck" if record else "AccessCheck"


# Discriminated, so only the chosen shape validates and its errors name the body's own fields (the tag is dropped
# from `loc`, see app.core.errors); an undiscriminated union reported every member's errors.
AnyCheck = Annotated[
    Annotated[AccessCheck, Tag("AccessCheck")] | Annotated[RecordAccessCheck, Tag("RecordAccessCheck")],
    Discriminator(_target),
]


class AccessDecision(BaseModel):
    employee: str
    client: str | None = Field(description="The client decided for (a record's client); null: a client-less record.")
    record: RecordRefOut | None = Field(None, description="The record asked about, if one was.")
    action: Action
    at: dt.datetime = Field(description="The instant decided for.")
    allowed: bool
    level: Level | None = Field(description="The level of the grant that decided, if any.")
    reason: DecisionReason = Field(description="Why: granted, or the rule that denied.")
    grant_id: int | None = Field(description="The grant that decided, if any.")
    valid_until: dt.datetime | None = Field(description="When that grant ends (null: open-ended).")


class AccessCheckBatch(InputModel):
    checks: list[AnyCheck] = Field(
        min_length=1, max_length=BATCH_CHECK_MAX, description="At most 500 pairs (each naming a client or a record)."
    )
    at: UtcTime | None = Field(None, description="Default instant for checks that give none.")


class AccessDecisionBatch(BaseModel):
    decisions: list[AccessDecision] = Field(description="One decision per check, in request order.")


class GrantCreate(InputModel):
    employee: ExternalId = Field(description="Who gets access.")
    client: ExternalId = Field(description="To which client.")
    level: Level = Field(description="owner, interim, shadow or read.")
    valid_from: UtcTime | None = Field(None, description="Start (default now).")
    valid_until: UtcTime | None = Field(None, description="End, exclusive (null: open-ended).")
    reason: str = Field(min_length=1, max_length=500, description="Why this grant exists.")

    @model_validator(mode="after")
    def _check(self) -> GrantCreate:
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class GrantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    employee: str = Field(validation_alias="employee_id")
    client: str = Field(validation_alias="client_id")
    level: Level
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    revoked_at: dt.datetime | None
    revoked_by: str | None
    reason: str
    handover_id: int | None = Field(description="The handover that created this grant, if any.")
    cut_by_handover_id: int | None = Field(description="The handover that ended this grant early, if any.")
    created_by: str
    created_at: dt.datetime


# ---- access events and exfiltration alerts -----------------------------------------------------

EVENTS_MAX = 5000
EventAction = Literal["view", "edit", "export", "download", "delete"]
AlertStatus = Literal["open", "resolved"]


class AccessEventIn(InputModel):
    """One access event as the CRM saw it; `count` aggregates identical actions."""

    event_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The sender's id for the event; a repeated id is skipped, so batches are safe to retry.",
        examples=["crm-evt-000123"],
    )
    employee: ExternalId = Field(description="The employee who accessed the data; must exist.")
    client: ExternalId = Field(description="The client whose data was accessed; must exist.")
    action: EventAction = Field(description="view, edit, export, download or delete.")
    count: int = Field(1, ge=1, le=1_000_000, description="How many records or files the event covers.")
    occurred_at: UtcTime = Field(description="When it happened (UTC); at most 5 minutes ahead of the server clock.")


class AccessEventBatch(InputModel):
    """A batch of events from the CRM."""

    events: list[AccessEventIn] = Field(
        min_length=1, max_length=EVENTS_MAX, description="Between 1 and 5,000 events, stored all or nothing."
    )


class IngestOut(BaseModel):
    """What happened to a batch."""

    received: int = Field(description="Events in the request.")
    stored: int = Field(description="Events newly stored.")
    duplicates: int = Field(description="Events skipped because their event_id was already stored or repeated.")
    alerts_raised: list[int] = Field(description="Ids of the exfiltration alerts this batch raised or updated.")


class ResolveIn(InputModel):
    """Closes an open alert."""

    resolution: str = Field(min_length=1, max_length=2000, description="What was found and done, for the audit trail.")


class AlertOut(BaseModel):
    """An exfiltration alert: a leaver's exports or downloads spiked; one open alert per employee."""

    id: int = Field(description="The alert id.")
    employee: str = Field(description="The employee the alert is about.")
    kind: str = Field(description="The kind of alert; `exfiltration` for an export/download spike.")
    status: AlertStatus = Field(description="open or resolved.")
    score: float = Field(description="The spike score: robust z-score of the recent volume against the baseline.")
    window_start: dt.datetime = Field(description="Start of the recent window(s) that spiked.")
    window_end: dt.datetime = Field(description="End of the recent window(s) that spiked.")
    clients: list[str] = Field(description="Clients whose data was exported or downloaded in the spiking window(s).")
    details: dict[str, Any] = Field(description="The evidence: median, MAD, recent volume, thresholds, reason.")
    created_at: dt.datetime = Field(description="When the alert was raised.")
    updated_at: dt.datetime = Field(description="When a later spike last updated it.")
    resolved_at: dt.datetime | None = Field(description="When it was resolved.")
    resolved_by: str | None = Field(description="Who resolved it.")
    resolution: str | None = Field(description="The resolution note.")
