from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from app.core.types import CalendarDate, Email, ExternalId, InputModel, Locale, Name, Tag, UtcTime

EmployeeStatus = Literal["active", "leaving", "departed"]
ClientTier = Literal["strategic", "key", "standard", "prospect"]
ClientStatus = Literal["active", "at_risk", "churned", "inactive"]
Channel = Literal["email", "webhook", "phone", "none"]

BATCH_MAX = 1000


class EmployeeIn(InputModel):
    """An employee as the HR system knows them; PUT replaces the whole record, except an omitted exit state
    (`status` and `exit_at`), which the handover workflow owns."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Full name.")
    email: Email = Field(description="Work email address.")
    title: str | None = Field(None, max_length=200, description="Job title.")
    seniority: int = Field(ge=1, le=4, description="1 junior, 2 mid, 3 senior, 4 principal.")
    manager: ExternalId | None = Field(None, description="The external id of the employee's manager.")
    skills: list[Tag] = Field(default_factory=list, max_length=50, description="Industries and products.")
    regions: list[Tag] = Field(default_factory=list, max_length=20, description="Regions covered.")
    languages: list[Locale] = Field(default_factory=list, max_length=20, description="Languages spoken.")
    clearance: int = Field(1, ge=1, le=3, description="Highest client sensitivity the employee may handle.")
    capacity: float = Field(20, ge=0, le=10_000, description="Capacity in load points.")
    status: EmployeeStatus = Field(
        "active",
        description="active, leaving or departed. The handover workflow sets it when an exit is announced, "
        "cancelled or executed: omit both `status` and `exit_at` to keep an existing employee's (a new one is "
        "active); give either to set both.",
    )
    exit_at: UtcTime | None = Field(
        None, description="When the employee leaves (UTC). Kept like `status` when both are omitted."
    )


class EmployeeBatchItem(EmployeeIn):
    external_id: ExternalId


class EmployeeBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[EmployeeBatchItem] = Field(min_length=1, max_length=BATCH_MAX, description="At most 1,000 rows.")


class EmployeeOut(BaseModel):
    external_id: str = Field(description="The HR/CRM id.")
    name: str
    email: str
    title: str | None
    seniority: int
    manager: str | None = Field(description="The manager's external id.")
    skills: list[str]
    regions: list[str]
    languages: list[str]
    clearance: int
    capacity: float
    status: EmployeeStatus
    exit_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ContactIn(InputModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Contact's name.")
    email: Email | None = Field(None, description="Email address.")
    phone: str | None = Field(None, max_length=50, pattern=r"^\+?[0-9 ()./-]{3,49}$", description="Phone number.")
    locale: Locale = Field("en", description="The language to write to this contact in.")
    preferred_channel: Channel = Field("email", description="How the contact prefers to be told.")
    primary: StrictBool = Field(False, description="The main contact; at most one per client.")


class ContactOut(BaseModel):
    name: str
    email: str | None
    phone: str | None
    locale: str
    preferred_channel: Channel
    primary: bool


class TeamMemberIn(InputModel):
    model_config = ConfigDict(extra="forbid")

    employee: ExternalId = Field(description="The team member's external id.")
    role: str = Field(
        min_length=1,
        max_length=100,
        description="Their role on the account, e.g. solutions engineer.",
    )


class TeamMemberOut(BaseModel):
    employee: str
    role: str


class ClientIn(InputModel):
    """A client as the CRM knows it; PUT replaces the record, its contacts and its account team."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=300, description="Client name.")
    tier: ClientTier = Field(description="strategic, key, standard or prospect.")
    annual_value: float = Field(0, ge=0, le=1e13, description="Annual contract value.")
    industry: Tag | None = Field(None, description="Industry tag.")
    region: Tag | None = Field(None, description="Region.")
    language: Locale | None = Field(None, description="The client's business language.")
    sensitivity: int = Field(1, ge=1, le=3, description="1 normal, 2 confidential, 3 restricted.")
    owner: ExternalId = Field(description="The owning employee's external id; must exist.")
    relationship_since: CalendarDate | None = Field(None, description="When the owner took the relationship.")
    last_contact_at: UtcTime | None = Field(None, description="Last contact with the client.")
    satisfaction: float | None = Field(None, ge=0, le=10, description="Satisfaction 0–10.")
    renewal_at: CalendarDate | None = Field(None, description="Next renewal date.")
    open_issues: int = Field(0, ge=0, le=100_000, description="Open issues and complaints.")
    status: ClientStatus = Field("active", description="active, at_risk, churned or inactive.")
    contacts: list[ContactIn] = Field(default_factory=list, max_length=50, description="At most 50 contacts.")
    account_team: list[TeamMemberIn] = Field(
        default_factory=list, max_length=100, description="Other employees on the account."
    )

    @model_validator(mode="after")
    def _check(self) -> ClientIn:
        if sum(1 for c in self.contacts if c.primary) > 1:
            raise ValueError("at most one contact may be primary")
        members = [m.employee for m in self.account_team]
        if len(members) != len(set(members)):
            raise ValueError("an employee appears twice on the account team")
        for day in (self.relationship_since, self.renewal_at):
            if day is not None and not (dt.date(1900, 1, 1) <= day <= dt.date(2200, 1, 1)):
                raise ValueError("dates must lie between 1900 and 2200")
        return self


class ClientBatchItem(ClientIn):
    external_id: ExternalId


class ClientBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ClientBatchItem] = Field(min_length=1, max_length=BATCH_MAX, description="At most 1,000 rows.")


class ClientOut(BaseModel):
    external_id: str
    name: str
    tier: ClientTier
    annual_value: float
    industry: str | None
    region: str | None
    language: str | None
    sensitivity: int
    owner: str
    former_owner: str | None = Field(description="The previous owner, after a handover.")
    relationship_since: dt.date | None
    last_contact_at: dt.datetime | None
    satisfaction: float | None
    renewal_at: dt.date | None
    open_issues: int
    status: ClientStatus
    contacts: list[ContactOut]
    account_team: list[TeamMemberOut]
    created_at: dt.datetime
    updated_at: dt.datetime


class BatchResult(BaseModel):
    created: int = Field(description="Rows that did not exist before.")
    updated: int = Field(description="Rows that existed and were replaced.")
    external_ids: list[str] = Field(description="The ids written, in request order.")
