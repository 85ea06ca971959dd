from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.book.schemas import RecordKind, RecordStatus
from app.core.types import ExternalId, InputModel, UtcTime
from app.directory.schemas import ClientTier
from app.notify.events import ExitReason
from app.notify.events import HandoverStatus as HandoverStatus
from app.notify.events import StoredReason as StoredReason
from app.transfer.models import CHECKLIST_KEYS

Reason = ExitReason

# Which items a reader sees: every one, or (a participant who does not manage the handover) their own.
View = Literal["all", "own"]
ItemStatus = Literal["proposed", "approved", "transferred", "confirmed", "closed", "cancelled", "reverted"]
ChecklistKey = Literal[
    "client_profile", "contacts", "open_projects", "contracts_financials", "open_issues", "handover_meeting"
]
CHECKLIST_KEY_PATTERN = (
    r"^(client_profile|contacts|open_projects|contracts_financials|open_issues|handover_meeting"
    r"|mitigation:[a-z][a-z0-9_]{0,49})$"
)
PoolKind = Literal["team", "department", "organisation", "list"]
ReportFormat = Literal["json", "csv", "html"]
ConfidentialityStep = Literal["nda_reminder_acknowledged", "company_data_returned", "non_compete_notice_given"]


class ConfidentialityStepOut(BaseModel):
    done: bool
    note: str | None
    by: str | None
    at: dt.datetime | None


class CandidatePool(InputModel):
    """Who may be proposed: the leaver's team first, then wider, or an explicit list."""

    kind: PoolKind = Field(
        "organisation",
        description=(
            "team: the leaver's manager's reports; department: everyone under the leaver's manager's manager; "
            "organisation: every active employee (team members preferred); list: only `employees`."
        ),
    )
    employees: list[ExternalId] = Field(default_factory=list, max_length=5000, description="For kind=list.")

    @model_validator(mode="after")
    def _check(self) -> CandidatePool:
        if self.kind == "list" and not self.employees:
            raise ValueError("kind=list needs employees")
        return self


REASON_DESCRIPTION = (
    "Why. resignation, termination, retirement, other: an exit (the person becomes leaving, then departed at the "
    "effective time; their token is refused from then). role_change: the clients move like an exit (plan, approve, "
    "execute), but the person stays active, keeps their token and may own clients in the new role; only their "
    "access to the moved clients ends at the effective time. leave: a delegation, not a move (needs return_at): "
    "the handover is `scheduled` at once, the delegate holds interim grants on the person's clients for "
    "[effective_at, return_at) while the person's own access is suspended (access checks answer employee_away), "
    "and the worker completes it at return_at; no planning or approval."
)


def check_return_at(value: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
    """A leave needs return_at, after effective_at; another reason takes none (cross-field rules)."""
    reason, start = info.data.get("reason"), info.data.get("effective_at")
    if reason is None:  # the reason itself was refused: that error says enough
        return value
    if reason == "leave" and value is None:
        raise PydanticCustomError("missing", "a leave needs return_at")
    if reason != "leave" and value is not None:
        raise PydanticCustomError("value_error", "only a leave has return_at")
    if value is not None and start is not None and value <= start:
        raise PydanticCustomError("value_error", "must be after effective_at")
    return value


RecordClientless = Literal["manager", "keep"]
RecordPlanRule = Literal["follow", "keep", "manager", "override", "meeting_stays"]


class RecordRules(InputModel):
    """What the handover does with the leaver's records, over the settings' defaults (a field left out keeps the
    default: HANDOVER_RECORD_CLIENTLESS, HANDOVER_MEETING_TRANSITION_DAYS)."""

    clientless: RecordClientless | None = Field(
        None,
        description="Client-less open records (automations, reports, meetings without a client): `manager` gives "
        "them to the leaver's manager (walking up past anyone who cannot act), `keep` leaves them with the leaver.",
    )
    meeting_transition_days: int | None = Field(
        None,
        ge=0,
        le=365,
        description="Open meetings due within this many days from the effective time stay with the leaver and the "
        "receiver joins them as attendee (0: none stays).",
    )


class RecordRulesOut(BaseModel):
    clientless: RecordClientless = Field(description="Where client-less open records go: `manager` or `keep`.")
    meeting_transition_days: int = Field(description="Meetings due this many days after the effective time stay.")


class HandoverPatch(InputModel):
    record_rules: RecordRules = Field(description="Replaces the handover's record rules (fields left out: defaults).")


class RecordPlanOut(BaseModel):
    kind: RecordKind = Field(description="The record's kind.")
    external_id: str
    title: str
    client: str | None = Field(description="The record's client; null for a client-less record.")
    status: RecordStatus
    due_at: dt.datetime | None
    amount: float | None
    currency: str | None
    owner: str = Field(description="Who owns it now.")
    rule: RecordPlanRule = Field(
        description="What the handover does with it: `follow` (goes with its client to the client's receiver), "
        "`keep` (stays: closed, or its client is not in the handover, or the rules keep it), `manager` (client-less: "
        "to the leaver's manager), `override` (set by hand: `to`, or null to keep), `meeting_stays` (a meeting due "
        "in the transition period: stays, `attendee` joins it)."
    )
    to: str | None = Field(description="Who receives it at the execution; null: it stays with `owner`.")
    attendee: str | None = Field(description="`meeting_stays`: who joins the meeting as attendee.")
    etag: str = Field(description="The row's ETag, for If-Match on its PATCH.")


class RecordOverride(InputModel):
    to: ExternalId | None = Field(
        description="Who receives the record at the execution (an active employee who is not leaving), or null to "
        "keep it with its owner."
    )
    reason: str | None = Field(None, max_length=500, description="Why, for the audit trail.")


class HandoverCreate(InputModel):
    leaver: ExternalId = Field(description="The leaving employee's external id.")
    reason: Reason = Field(description=REASON_DESCRIPTION)
    effective_at: UtcTime = Field(
        description="When ownership moves and the leaver's access ends (UTC); for a leave, when it starts."
    )
    destination_competitor: StrictBool | None = Field(None, description="True if they go to a competitor, if known.")
    return_at: UtcTime | None = Field(
        None,
        validate_default=True,
        description="A leave's end: when the person is back (required for reason leave, after effective_at; "
        "refused for any other reason). Their access returns, and the delegate's ends, at this instant.",
    )
    delegate: ExternalId | None = Field(
        None,
        validate_default=True,
        description="A leave only: who holds the person's clients meanwhile (an interim grant on each). Default: "
        "the interim owner rule (the person's manager, walking up past anyone who cannot act, else "
        "HANDOVER_INTERIM_OWNER).",
    )

    record_rules: RecordRules | None = Field(
        None, description="What happens to the leaver's records, over the defaults (see PATCH /v1/handovers/{id})."
    )

    _return_at = field_validator("return_at")(check_return_at)

    @field_validator("delegate")
    @classmethod
    def _delegate_only_on_leave(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("reason") not in (None, "leave"):
            raise PydanticCustomError("value_error", "only a leave has a delegate")
        return value


class PlanRequest(InputModel):
    candidate_pool: CandidatePool | None = Field(None, description="Overrides the handover's candidate pool.")


class CostBreakdown(BaseModel):
    employee: str | None = Field(description="The candidate this breakdown is for.")
    costs: dict[str, float] = Field(description="Cost per factor (skill, region, language, continuity, pool, total).")


class RecordKindTotal(BaseModel):
    """The open records of one kind that go with the clients: how many and their value."""

    count: int
    value: dict[str, float] = Field(
        description="The sum of their amounts per currency (records without an amount add nothing; no conversion)."
    )


RECORDS_DESCRIPTION = (
    "The open records (app/book) that go with the client, per kind: those on the client that its holder owns — the "
    "leaver (or the previous owner) until the client moves, its receiver after. Kinds with none are absent."
)


class ItemOut(BaseModel):
    id: int
    handover_id: int
    client: str = Field(description="The client's external id.")
    client_name: str
    tier: str
    previous_owner: str = Field(description="The leaver (the owner before the handover).")
    successor: str | None = Field(description="The proposed or chosen successor.")
    interim_owner: str | None = Field(description="Who holds the client when there is no successor.")
    status: ItemStatus
    needs_attention: bool = Field(description="True when no candidate could take the client, or a rule was forced.")
    attention_reason: str | None
    risk_score: float | None = Field(description="Churn risk 0–100 if this client is handed to this successor.")
    risk_band: str | None = Field(description="low, medium, high or critical.")
    exposure: float | None = Field(description="Churn probability × annual value.")
    risk: dict[str, Any] = Field(description="The score's factors, contributions and mitigations.")
    reasons: dict[str, Any] = Field(
        description="Cost breakdown of the chosen successor and the runner-up (the runner-up, a colleague's fit, is "
        "left out for a participant who does not manage the handover)."
    )
    manual: bool = Field(description="True when a person chose the successor (kept on re-planning).")
    override_reason: str | None
    forced: bool = Field(description="True when a hard constraint was overridden with force.")
    checklist: dict[str, Any] = Field(description="Per checklist key: done, note, by, at.")
    outgoing_signed_by: str | None
    outgoing_signed_at: dt.datetime | None
    incoming_signed_by: str | None
    incoming_signed_at: dt.datetime | None
    transferred_to: str | None
    transferred_at: dt.datetime | None
    version: int = Field(description="Changes on every update; the ETag is derived from it.")
    records: dict[RecordKind, RecordKindTotal] = Field(default_factory=dict, description=RECORDS_DESCRIPTION)


class ItemPatch(InputModel):
    """Override one item: a successor, or an interim owner."""

    successor: ExternalId | None = Field(None, description="The new successor.")
    interim_owner: ExternalId | None = Field(None, description="An interim owner instead of a successor.")
    force: StrictBool = Field(False, description="Accept a successor that breaks a hard constraint (needs a reason).")
    reason: str | None = Field(None, max_length=1000, description="Why; required with force.")

    @model_validator(mode="after")
    def _check(self) -> ItemPatch:
        if self.successor is None and self.interim_owner is None:
            raise ValueError("give a successor or an interim_owner")
        if self.force and not (self.reason and self.reason.strip()):
            raise ValueError("force needs a reason")
        return self


class ReplannedItem(BaseModel):
    client: str
    previous_successor: str | None = Field(description="The successor the plan named (null for a late client).")
    problem: str = Field(description="Why it no longer qualified, or that the client joined after planning.")
    successor: str | None
    interim_owner: str | None
    needs_attention: bool
    attention_reason: str | None


class HandoverOut(BaseModel):
    id: int
    leaver: str
    manager: str | None = Field(description="The leaver's manager when the handover was opened.")
    reason: StoredReason = Field(
        description="Why they leave; `unknown` when the handover was opened by a status change that named none."
    )
    destination_competitor: bool | None
    status: HandoverStatus = Field(
        description="draft → planned → approved → executed → completed for an exit or a role change (cancelled "
        "before execution, undone after); scheduled → completed (or cancelled) for a leave."
    )
    effective_at: dt.datetime
    return_at: dt.datetime | None = Field(None, description="A leave's end (null for any other reason).")
    delegate: str | None = Field(None, description="Who holds the clients during a leave (null otherwise).")
    source: Literal["api", "hr_webhook"]
    candidate_pool: dict[str, Any]
    created_by: str
    created_at: dt.datetime
    planned_at: dt.datetime | None
    approved_by: str | None
    approved_at: dt.datetime | None
    executed_at: dt.datetime | None
    completed_at: dt.datetime | None
    completion_reason: str | None
    cancelled_by: str | None
    cancelled_at: dt.datetime | None
    cancel_reason: str | None
    undone_by: str | None
    undone_at: dt.datetime | None
    approval_deadline: dt.datetime | None = Field(
        description="When the handover should be approved: HANDOVER_APPROVAL_LEAD_WORKING_DAYS working days "
        "(Mon-Fri, UTC) before the effective time, never after it, not before the opening time. From then on, "
        "while it is draft or planned, the worker reminds the approver daily (from the second reminder the "
        "approver's manager too) and emits handover.overdue. Null only for a handover opened before deadlines "
        "existed, until the worker's next pass."
    )
    reminders_sent: int = Field(description="Approval reminders sent so far (one a day after the deadline).")
    version: int
    item_counts: dict[str, int] = Field(description="Items by status (of the items `view` covers).")
    risk_bands: dict[str, int] = Field(description="Items by risk band (of the items `view` covers).")
    total_exposure: float = Field(
        description="Sum over items of churn probability × annual value (of the items `view` covers)."
    )
    needs_attention: int = Field(description="Items needing attention (of the items `view` covers).")
    allowed_transitions: list[str] = Field(description="The statuses this handover may move to next.")
    replanned: list[ReplannedItem] | None = Field(
        None,
        description="Only in an approval's response: the items the approval re-planned because their successor no "
        "longer qualified (departed, leaving, over capacity, without clearance), and clients given to the leaver "
        "after planning that joined; empty when nothing changed.",
    )
    record_rules: RecordRulesOut | None = Field(
        None, description="The record rules in force for this handover (its own over the defaults)."
    )
    confidentiality: dict[ConfidentialityStep, ConfidentialityStepOut] = Field(
        default_factory=dict,
        description="The handover's confidentiality steps recorded so far (nda_reminder_acknowledged, "
        "company_data_returned, non_compete_notice_given): done, note, by, at. A step never recorded is absent.",
    )
    records: dict[RecordKind, RecordKindTotal] = Field(
        default_factory=dict,
        description="Over the items `view` covers, the open records that go with their clients, per kind (see "
        "ItemOut.records).",
    )
    view: View = Field(
        "all",
        description="all: the counts and exposure cover every item (whoever manages the handover, hr, auditors, "
        "admins, integrations, the leaver); own: only the caller's items, for a participant who receives some of "
        "the clients (successor, interim owner or receiver) and does not manage the handover. Least privilege: "
        "the size and exposure of the leaver's whole book are not a participant's to see.",
    )


class ReasonBody(InputModel):
    reason: str | None = Field(None, max_length=2000, description="Why.")


class RequiredReasonBody(InputModel):
    reason: str = Field(min_length=1, max_length=2000, description="Why (required).")


class EvidenceRecord(InputModel):
    kind: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,49}$", description="The kind of record (e.g. contract, meeting_note)."
    )
    external_id: ExternalId = Field(description="The record's id, stored as given (not looked up).")


class Evidence(InputModel):
    """Exactly one of `url` or `record`."""

    url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^[hH][tT][tT][pP][sS]?://",
        description="An http or https link with a host (never fetched).",
    )
    record: EvidenceRecord | None = Field(None, description="A record the evidence is (kind and id).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https"):
            raise PydanticCustomError("url_scheme", "only http and https links")
        if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in value):
            raise PydanticCustomError("url_parsing", "not a link with a host")
        return value

    @model_validator(mode="after")
    def _one(self) -> Evidence:
        if (self.url is None) == (self.record is None):
            raise ValueError("give exactly one of url or record")
        return self


class ChecklistUpdate(InputModel):
    done: StrictBool = Field(description="Whether this part of the handover is done.")
    note: str | None = Field(None, max_length=4000, description="A note for the record.")
    evidence: list[Evidence] = Field(
        default_factory=list,
        max_length=10,
        description="At most 10 links (http/https) or records backing the entry; replaces the entry's evidence.",
    )


class ConfidentialityUpdate(InputModel):
    done: StrictBool = Field(description="Whether this step is done.")
    note: str | None = Field(None, max_length=4000, description="A note for the record.")


class ChecklistEntryIn(InputModel):
    key: ChecklistKey = Field(description="One of the checklist keys.")
    label: str = Field(min_length=1, max_length=200, description="What the entry asks for, as people read it.")
    required: StrictBool = Field(description="Whether sign-off waits for this entry to be done.")


class ChecklistTemplateIn(InputModel):
    entries: list[ChecklistEntryIn] = Field(
        max_length=len(CHECKLIST_KEYS),
        description="The tier's entries, each key at most once (at most one per checklist key).",
    )

    @field_validator("entries")
    @classmethod
    def _unique(cls, value: list[ChecklistEntryIn]) -> list[ChecklistEntryIn]:
        keys = [e.key for e in value]
        if len(set(keys)) != len(keys):
            raise PydanticCustomError("value_error", "each key at most once")
        return value


class ChecklistEntryOut(BaseModel):
    key: ChecklistKey
    label: str
    required: bool


class ChecklistTemplateOut(BaseModel):
    tier: ClientTier
    entries: list[ChecklistEntryOut]
    default: bool = Field(description="True when the tier was never configured: the default template.")
    version: int = Field(description="Changes on every replacement; the ETag is derived from it (0: the default).")
    updated_by: str | None
    updated_at: dt.datetime | None


class SignOff(InputModel):
    side: Literal["outgoing", "incoming"] = Field(
        description="outgoing: the leaver (or their manager); incoming: the successor."
    )
    reason: str | None = Field(None, max_length=2000, description="Required when a manager signs for the leaver.")


class PlanSummary(BaseModel):
    handover_id: int | None
    dry_run: bool
    items: int = Field(description="Clients planned.")
    assigned: int = Field(description="Clients with a successor.")
    interim: int = Field(description="Clients going to an interim owner.")
    kept_manual: int = Field(description="Manual overrides kept from earlier planning.")
    total_cost: float = Field(description="The solver's objective value.")
    solver_status: str
    successors: dict[str, int] = Field(description="Clients per successor.")
    proposals: list[ItemOut] | None = Field(None, description="The planned items (dry run only).")


class PlanBatchRequest(InputModel):
    handover_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=1000, description="The handovers to plan together (at most 1,000, one per leaver)."
    )
    candidate_pool: CandidatePool | None = Field(None, description="Overrides every handover's candidate pool.")


class PlanBatchOut(BaseModel):
    handovers: list[PlanSummary] = Field(description="One summary per handover, in request order.")
    solves: int = Field(description="Joint solves run: one per set of handovers sharing effective time and pool.")


class ApprovalBatchRequest(InputModel):
    handover_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=1000, description="The planned handovers to approve together (at most 1,000)."
    )


class ApprovalBatchOut(BaseModel):
    handovers: list[HandoverOut] = Field(description="The approved handovers, in request order (duplicates once).")


class SimulationRequest(InputModel):
    leavers: list[ExternalId] = Field(min_length=1, max_length=1000, description="The employees who would leave.")
    effective_at: UtcTime = Field(description="When they would leave.")
    candidate_pool: CandidatePool | None = None
    include_items: StrictBool = Field(False, description="Also return every proposed item (at most 5,000).")


class SuccessorLoad(BaseModel):
    employee: str
    load_before: float
    load_after: float
    capacity: float
    clients_gained: dict[str, int] = Field(description="Clients gained by tier.")


class SimulatedItem(BaseModel):
    client: str
    leaver: str
    tier: str
    successor: str | None
    interim_owner: str | None
    needs_attention: bool
    attention_reason: str | None
    risk_band: str | None


class SimulationOut(BaseModel):
    leavers: list[str]
    effective_at: dt.datetime
    clients: int
    assigned: int
    needs_attention: int
    total_cost: float
    solver_status: str
    successors: list[SuccessorLoad]
    risk_distribution: dict[str, int] = Field(description="Clients per risk band.")
    total_exposure: float = Field(description="Sum over clients of churn probability × annual value.")
    items: list[SimulatedItem] | None = None
