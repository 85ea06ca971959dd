from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool

from app.core.types import ExternalId, InputModel
from app.risk.model import WEIGHT_LIMIT

Band = Literal["low", "medium", "high", "critical"]
Reason = Literal["resignation", "termination", "retirement", "role_change", "leave", "other"]
Tier = Literal["strategic", "key", "standard", "prospect"]
Op = Literal["==", "!=", ">=", ">", "<=", "<"]

SCORE_BATCH_MAX = 1000
_BOUND = (
    f"Finite, within ±{WEIGHT_LIMIT:g}: features are scaled to about 0–12, so one unit at weight {WEIGHT_LIMIT:g} "
    "already multiplies the odds by e^20 (about 5 × 10^8); anything larger is a mistake, and near 1e308 the logit "
    "overflows."
)
# A logistic coefficient or intercept; bounded so that every logit stays finite and meaningful.
Coefficient = Annotated[float, Field(ge=-WEIGHT_LIMIT, le=WEIGHT_LIMIT, allow_inf_nan=False)]
Probability = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class FactorsOut(BaseModel):
    """The raw factors the score was computed from."""

    years_with_leaver: float = Field(description="Years the leaver (the current owner) has held the relationship.")
    single_threaded: bool = Field(description="Nobody else on the account team, or at most one client contact.")
    tier: Tier = Field(description="The client's tier.")
    annual_value: float = Field(description="Annual contract value.")
    satisfaction: float | None = Field(description="Satisfaction 0–10; null when unknown.")
    renewal_within_90d: bool = Field(description="The renewal date falls within the next 90 days.")
    days_since_last_contact: float | None = Field(description="Days since the last contact; null when never.")
    open_issues: int = Field(description="Open issues and complaints.")
    reason: Reason = Field(description="The departure reason assumed (the open handover's, else resignation).")
    destination_competitor: bool = Field(description="The leaver is going to a competitor.")
    exfiltration_alert: bool = Field(description="An open exfiltration alert on the leaver names this client.")
    seniority_gap: int = Field(description="Levels the successor is below the tier's norm (0: no successor yet).")
    skill_mismatch: bool = Field(description="The successor lacks the client's industry (false: no successor yet).")
    language_mismatch: bool = Field(description="The successor lacks the client's language (false: no successor).")
    open_deal_value: float = Field(
        0.0, description="The client's open deals' amount in the base currency (HANDOVER_BASE_CURRENCY); 0 without."
    )
    overdue_invoices: int = Field(0, description="The client's open invoices past their due time (any currency).")
    overdue_amount: float = Field(0.0, description="Those invoices' amount in the base currency.")


class ContributionOut(BaseModel):
    name: str = Field(description="The feature (see the model's features for how it is computed).")
    value: float = Field(description="The feature's value for this client.")
    weight: float = Field(description="The model's weight for the feature.")
    contribution: float = Field(description="weight × value: what this feature adds to the logit.")


class MitigationOut(BaseModel):
    action: str = Field(description="A stable key for the action, e.g. add_second_contact.")
    text: str = Field(description="What to do, for a person.")


class RiskOut(BaseModel):
    """A client's churn risk if its owner left: explained factor by factor."""

    client: str = Field(description="The client's external id.")
    owner: str = Field(description="The owner whose departure is scored (the leaver).")
    model_version: int = Field(description="The model version that scored.")
    as_of: dt.datetime = Field(description="The instant the factors were computed for.")
    probability: float = Field(description="Probability (0–1) that the client churns because of the handover.")
    score: float = Field(description="100 × probability, rounded to 2 decimals.")
    band: Band = Field(description="low, medium, high or critical, by the model's thresholds on the probability.")
    logit: float = Field(description="intercept + the sum of the contributions (added in the listed order).")
    intercept: float = Field(description="The model's intercept.")
    exposure: float = Field(description="probability × annual value: the value at risk.")
    factors: FactorsOut
    contributions: list[ContributionOut] = Field(description="Every feature's contribution, in the model's order.")
    mitigations: list[MitigationOut] = Field(description="Recommended actions from the model's rules.")


class ScoreRequest(InputModel):
    clients: list[ExternalId] = Field(
        min_length=1, max_length=SCORE_BATCH_MAX, description="Client external ids, 1 to 1,000 (duplicates once)."
    )
    reason: Reason | None = Field(
        None,
        description="Score as if each owner left for this reason (default: their open handover's, else resignation).",
    )
    destination_competitor: StrictBool | None = Field(
        None, description="Score as if each owner went (true) or did not go (false) to a competitor."
    )
    model_version: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Score with this version (e.g. a fitted draft); default the active one."
    )


class ScoreBatchOut(BaseModel):
    model_version: int = Field(description="The model version that scored.")
    as_of: dt.datetime = Field(description="The instant the factors were computed for.")
    scores: list[RiskOut] = Field(description="One per distinct client, in request order.")
    bands: dict[str, int] = Field(description="How many clients fall in each band.")
    total_exposure: float = Field(description="The sum of the exposures.")


class Thresholds(InputModel):
    """Each band's lowest probability; low starts at 0. Must increase strictly within (0, 1)."""

    medium: Probability = Field(description="Probability from which a client is medium risk.")
    high: Probability = Field(description="Probability from which a client is high risk.")
    critical: Probability = Field(description="Probability from which a client is critical.")


class RuleWhen(InputModel):
    """A band list, a factor test, or both (both must hold)."""

    band: list[Band] | None = Field(None, description="The rule holds for clients in one of these bands.")
    factor: str | None = Field(None, description="A factor name (see FactorsOut), e.g. single_threaded.")
    op: Op | None = Field(None, description="Comparison; true/false and category factors take == or != only.")
    value: bool | float | str | None = Field(None, description="What the factor is compared with.")


class MitigationRule(InputModel):
    when: RuleWhen = Field(description="When the action is recommended.")
    action: str = Field(min_length=1, max_length=100, description="A stable key: letters, digits and underscores.")
    text: str = Field(min_length=1, max_length=500, description="What to do, for a person.")


class RiskModelIn(InputModel):
    """A complete model: every feature's weight, the band thresholds and the mitigation rules."""

    intercept: Coefficient = Field(description=f"The logit of a client whose features are all 0. {_BOUND}")
    weights: dict[str, Coefficient] = Field(
        description="One weight per feature (see GET /v1/risk/model for the list): all of them, except that the "
        "book's features (open_deal_value, overdue_invoices, overdue_amount) may be left out and then weigh 0. "
        "Features that must never lower risk take weights >= 0, and reason_termination must be at least every other "
        "reason's weight. "
        f"Each weight: {_BOUND[0].lower()}{_BOUND[1:]}"
    )
    thresholds: Thresholds
    mitigations: list[MitigationRule] = Field(default_factory=list, max_length=100, description="At most 100 rules.")
    note: str | None = Field(None, max_length=500, description="Why this version; kept with it and in the audit log.")


class FitRequest(InputModel):
    l2: float = Field(1.0, ge=0, le=1e6, description="L2 penalty on the weights (not the intercept).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the random held-out split.")
    holdout: float = Field(0.25, ge=0.1, le=0.5, description="Share of outcomes held out for AUC and Brier score.")
    note: str | None = Field(None, max_length=500, description="Kept with the version and in the audit log.")


class FeatureOut(BaseModel):
    name: str = Field(description="The feature's name, as used in weights and contributions.")
    transform: str = Field(description="How it is computed from the factors.")
    nonnegative: bool = Field(description="Whether its weight must be >= 0 (the factor may never lower risk).")


class RuleWhenOut(BaseModel):
    band: list[Band] | None = Field(None, description="Bands the rule holds for.")
    factor: str | None = Field(None, description="Factor tested.")
    op: Op | None = Field(None, description="Comparison.")
    value: bool | float | str | None = Field(None, description="Compared with.")


class MitigationRuleOut(BaseModel):
    when: RuleWhenOut
    action: str = Field(description="A stable key for the action.")
    text: str = Field(description="What to do, for a person.")


class ThresholdsOut(BaseModel):
    """Each band's lowest probability; low starts at 0."""

    medium: float = Field(description="Probability from which a client is medium risk.")
    high: float = Field(description="Probability from which a client is high risk.")
    critical: float = Field(description="Probability from which a client is critical.")


class RiskModelSummary(BaseModel):
    """A model version: how and when it came to be (the list leaves the weights out)."""

    version: int = Field(description="The version number (1, 2, …).")
    status: Literal["draft", "active", "retired"] = Field(description="Exactly one version is active.")
    source: Literal["manual", "fit"] = Field(description="Set by hand (PUT) or fitted on outcomes.")
    note: str | None = Field(description="Why this version.")
    metrics: dict[str, Any] | None = Field(
        description="For fitted versions: rows, auc, brier (held-out), the same for the model it was compared with "
        "(baseline_auc, baseline_brier, baseline_version), l2, seed, converged."
    )
    created_by: str = Field(description="Who created it (role:subject), or system for the seeded default.")
    created_at: dt.datetime | None = Field(description="Null only for the built-in default before any change.")
    activated_by: str | None = Field(description="Who last activated it.")
    activated_at: dt.datetime | None = Field(description="When it last became active.")
    retired_at: dt.datetime | None = Field(description="When it last stopped being active.")


class RiskModelOut(RiskModelSummary):
    """A model version with its weights, thresholds and mitigation rules."""

    intercept: float = Field(description="The logit of a client whose features are all 0.")
    weights: dict[str, float] = Field(description="One weight per feature.")
    thresholds: ThresholdsOut
    mitigations: list[MitigationRuleOut] = Field(description="Rules from band and factors to actions, in order.")
    features: list[FeatureOut] = Field(description="What each weight multiplies.")
