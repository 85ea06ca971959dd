from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.types import ExternalId, InputModel, UtcTime

Level = Literal["owner", "interim", "shadow", "read"]
Action = Literal["view", "edit", "export", "delete"]
DecisionReason = Literal[
    "granted",
    "unknown_employee",
    "unknown_client",
    "employee_departed",
    "no_grant",
    "insufficient_clearance",
    "view_only",
    "owner_required",
]

BATCH_CHECK_MAX = 500


class AccessCheck(InputModel):
    employee: ExternalId = Field(description="Who wants access.")
    client: ExternalId = Field(description="To which client's data.")
    action: Action = Field(description="view, edit, export or delete.")
    at: UtcTime | None = Field(None, description="The instant to decide for; default now.")


class AccessDecision(BaseModel):
    employee: str
    client: str
    action: Action
    at: dt.datetime = Field(description="The instant decided for.")
    allowed: bool
    level: Level | None = Field(description="The level of the grant that decided, if any.")
    reason: DecisionReason = Field(description="Why: granted, or the rule that denied.")
    grant_id: int | None = Field(description="The grant that decided, if any.")
    valid_until: dt.datetime | None = Field(description="When that grant ends (null: open-ended).")


class AccessCheckBatch(InputModel):
    checks: list[AccessCheck] = Field(min_length=1, max_length=BATCH_CHECK_MAX, description="At most 500 pairs.")
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
