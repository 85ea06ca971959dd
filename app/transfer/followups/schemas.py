"""Request and response bodies for follow-ups and the retention report."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.types import InputModel, UtcTime

FollowUpKind = Literal["first_contact", "check_in", "satisfaction_survey"]
FollowUpStatus = Literal["open", "completed", "cancelled"]
Outcome = Literal["retained", "at_risk", "churned"]
GroupBy = Literal["team", "successor", "tier", "risk_band"]
RetentionFormat = Literal["json", "csv"]
NOTE_MAX = 4000


class FollowUpOut(BaseModel):
    """One follow-up: who must contact which client by when, and what came of it."""

    id: int = Field(description="The follow-up id.")
    handover_id: int = Field(description="The handover the client came through.")
    item_id: int = Field(description="The handover item (one client in the handover).")
    client: str = Field(description="The client's external id.")
    client_name: str = Field(description="The client's name.")
    assignee: str = Field(description="Who must do it: the successor, or the interim owner if there is none.")
    kind: FollowUpKind = Field(description="first_contact, check_in or satisfaction_survey.")
    due_at: dt.datetime = Field(description="When it is due: the handover's effective time plus the kind's offset.")
    status: FollowUpStatus = Field(description="open, completed, or cancelled (the handover was cancelled or undone).")
    overdue: bool = Field(description="Open and past its due time.")
    outcome: Outcome | None = Field(description="retained, at_risk or churned, once completed.")
    satisfaction: float | None = Field(description="The client's satisfaction (0–10) reported on completion.")
    satisfaction_before: float | None = Field(description="The client's satisfaction when the follow-up was created.")
    first_contact_at: dt.datetime | None = Field(description="When the assignee first spoke to the client.")
    note: str | None = Field(description="The assignee's note.")
    completed_at: dt.datetime | None = Field(description="When it was completed.")
    completed_by: str | None = Field(description="Who completed it (role:subject).")
    overdue_notified_at: dt.datetime | None = Field(description="When the assignee's manager was told it is overdue.")
    created_at: dt.datetime = Field(description="When it was created (at approval).")


class FollowUpComplete(InputModel):
    """What came of the follow-up; the client's satisfaction, status and last contact follow from it."""

    outcome: Outcome = Field(
        description="retained (client status → active), at_risk (→ at_risk) or churned (→ churned)."
    )
    satisfaction: float | None = Field(
        None, ge=0, le=10, description="The client's satisfaction 0–10 (one decimal kept); updates the client."
    )
    first_contact_at: UtcTime | None = Field(
        None,
        description="When the assignee first spoke to the client; required for first_contact, not in the future.",
    )
    note: str | None = Field(None, max_length=NOTE_MAX, description="Free text, at most 4,000 characters.")


# ---- retention report ---------------------------------------------------------------------------


class HorizonOutcomes(BaseModel):
    """Clients by their latest outcome recorded within `days` days after the effective time."""

    days: int = Field(description="The horizon: 30, 90 or 180 days after the effective time.")
    retained: int = Field(description="Clients whose latest outcome by then was retained.")
    at_risk: int = Field(description="Clients whose latest outcome by then was at_risk.")
    churned: int = Field(description="Clients whose latest outcome by then was churned.")
    unknown: int = Field(description="Clients with no outcome recorded by then.")
    reached: int = Field(description="Clients whose horizon has passed; for the others the figures may still change.")
    retention_rate: float | None = Field(description="retained ÷ clients with an outcome; null when none has one.")


class BandCalibration(BaseModel):
    """How the predicted band matched what happened: churn among clients with an outcome at the last horizon."""

    band: str = Field(description="The predicted risk band at planning: low, medium, high, critical or unscored.")
    clients: int = Field(description="Handed-over clients predicted in this band.")
    with_outcome: int = Field(description="Of those, clients with an outcome by the last horizon (180 days).")
    churned: int = Field(description="Of those, clients whose latest outcome was churned.")
    churn_rate: float | None = Field(description="churned ÷ with_outcome; null when no outcome is known.")
    mean_predicted: float | None = Field(description="The mean predicted churn probability (risk score ÷ 100).")


class RetentionGroup(BaseModel):
    """The figures of one group (or of all clients)."""

    key: str | None = Field(
        description="The group: the team's manager, the successor (external ids), the tier or the band; "
        "null for successors without a manager."
    )
    name: str | None = Field(description="The manager's or successor's name; the tier or band otherwise.")
    handed_over: int = Field(description="Clients handed over (one per handover item) in the window.")
    horizons: list[HorizonOutcomes] = Field(description="Outcomes at 30, 90 and 180 days.")
    median_days_to_first_contact: float | None = Field(
        description="Median of first_contact_at − effective time, in days (negative: before the effective time)."
    )
    first_contacts: int = Field(description="Clients with a recorded first contact.")
    satisfaction_before: float | None = Field(description="Mean satisfaction when the follow-ups were created.")
    satisfaction_before_n: int = Field(description="Clients with a satisfaction before.")
    satisfaction_after: float | None = Field(description="Mean satisfaction from completed satisfaction surveys.")
    satisfaction_after_n: int = Field(description="Completed satisfaction surveys with a satisfaction.")
    calibration: list[BandCalibration] = Field(description="Churn rate per predicted risk band.")


class RetentionReport(BaseModel):
    """Whether handovers kept their clients: executed or completed handovers effective in [from, to)."""

    from_: dt.datetime = Field(alias="from", description="Start of the effective-time window (inclusive).")
    to: dt.datetime = Field(description="End of the effective-time window (exclusive).")
    as_of: dt.datetime = Field(description="When the report was computed; horizons after this are not reached.")
    group_by: GroupBy = Field(description="team (the successor's manager), successor, tier or risk_band.")
    total: RetentionGroup = Field(description="Every client in the window, ungrouped.")
    groups: list[RetentionGroup] = Field(description="One entry per group.")

    model_config = ConfigDict(populate_by_name=True)
