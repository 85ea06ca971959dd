"""The churn-risk model: pure (no database, no FastAPI), so tests and the planner call it directly.

A logistic model whose weights are data. Each factor of a client is turned into a numeric *feature*
(documented in FEATURES); the logit is the intercept plus weight × feature for every feature, added in
FEATURES order, so the contributions shown to a person add up to the logit exactly.

    logit = intercept + Σ_j weight_j × feature_j        probability = 1 / (1 + e^-logit)
    score = 100 × probability (0–100)                   exposure = probability × annual_value

Monotonicity holds by construction: `validate_model` refuses negative weights on features that must
never lower risk (lower satisfaction, an alert, a competitor, termination, …), so a model that passes
validation cannot say that an exfiltration alert makes a client safer. Termination must also weigh at
least as much as every other departure reason, so switching any reason to termination never lowers risk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Final, TypeGuard

import numpy as np
import numpy.typing as npt
from scipy.special import expit

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

TIERS: Final = ("strategic", "key", "standard", "prospect")
REASONS: Final = ("resignation", "termination", "retirement", "role_change", "leave", "other")
BANDS: Final = ("low", "medium", "high", "critical")
THRESHOLD_BANDS: Final = ("medium", "high", "critical")  # each band's lowest probability; low starts at 0
OPS: Final = ("==", "!=", ">=", ">", "<=", "<")
MAX_MITIGATION_RULES: Final = 100
# The largest |weight| and |intercept| a model may have. Features are scaled to about 0–12 (indicators, logs, months),
# so one unit of a feature at weight 20 multiplies the odds by e^20 (about 5 × 10^8): no real factor does that, fitted
# weights stay well below 5, and a bound keeps every logit finite (1e308 × 2 overflows to inf, and inf − inf is NaN).
WEIGHT_LIMIT: Final = 20.0
DEFAULT_MIN_SENIORITY: Final[Mapping[str, int]] = {"strategic": 3, "key": 2, "standard": 1, "prospect": 1}
_CONTACT_CAP_DAYS: Final = 365.0


@dataclass(frozen=True)
class Feature:
    """One model input: how it is computed from the factors, and whether its weight must be >= 0."""

    name: str
    transform: str
    nonnegative: bool


FEATURES: Final[tuple[Feature, ...]] = (
    Feature("years_with_leaver", "log(1 + years the leaver has held the relationship)", False),
    Feature("single_threaded", "1 if nobody else is on the account team or the client has at most one contact", True),
    Feature("tier_strategic", "1 if tier is strategic (standard is the baseline)", False),
    Feature("tier_key", "1 if tier is key", False),
    Feature("tier_prospect", "1 if tier is prospect", False),
    Feature("annual_value", "log10(1 + annual value)", False),
    Feature("satisfaction_deficit", "(10 − satisfaction) / 10; 0 when satisfaction is unknown", True),
    Feature("satisfaction_unknown", "1 if satisfaction is unknown", False),
    Feature("renewal_within_90d", "1 if the renewal date is within the next 90 days", True),
    Feature("days_since_last_contact", "min(days since last contact, 365) / 30 (months); 365 days when never", True),
    Feature("open_issues", "log(1 + open issues and complaints)", True),
    Feature("reason_termination", "1 if the leaver is terminated (resignation is the baseline)", True),
    Feature("reason_retirement", "1 if the leaver retires", False),
    Feature("reason_role_change", "1 if the leaver changes role (stays in the company)", False),
    Feature("reason_leave", "1 if the leaver goes on long leave", False),
    Feature("reason_other", "1 for any other reason", False),
    Feature("destination_competitor", "1 if the leaver goes to a competitor", True),
    Feature("exfiltration_alert", "1 if an open exfiltration alert on the leaver names this client", True),
    Feature("seniority_gap", "levels the successor's seniority is below the tier's norm (0 without a successor)", True),
    Feature("skill_mismatch", "1 if the successor lacks the client's industry skill (0 without a successor)", True),
    Feature("language_mismatch", "1 if the successor lacks the client's language (0 without a successor)", True),
    # The book (issue 16): what is in flight with the client. Added after the first model versions, so a version
    # stored without their weights reads them as 0 (OPTIONAL_FEATURES) and scores exactly as before.
    Feature("open_deal_value", "log10(1 + open deals' amount in the base currency)", False),
    Feature("overdue_invoices", "log(1 + open invoices past their due time)", True),
    Feature("overdue_amount", "log10(1 + overdue invoices' amount in the base currency)", True),
)
FEATURE_NAMES: Final = tuple(f.name for f in FEATURES)
NONNEGATIVE: Final = frozenset(f.name for f in FEATURES if f.nonnegative)
# Termination must weigh at least as much as these, so that it never lowers risk whatever the reason was.
DOMINATED_BY_TERMINATION: Final = ("reason_retirement", "reason_role_change", "reason_leave", "reason_other")
_INDEX: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}
# Features a model may leave out: their weight is then 0 (versions stored before the features existed).
OPTIONAL_FEATURES: Final = frozenset({"open_deal_value", "overdue_invoices", "overdue_amount"})


# ---- factors ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Factors:
    """What is known about one client if its owner leaves; successor fit is 0 until a successor is known."""

    years_with_leaver: float = 0.0
    single_threaded: bool = False
    tier: str = "standard"
    annual_value: float = 0.0
    satisfaction: float | None = None
    renewal_within_90d: bool = False
    days_since_last_contact: float | None = None
    open_issues: int = 0
    reason: str = "resignation"
    destination_competitor: bool = False
    exfiltration_alert: bool = False
    seniority_gap: int = 0
    skill_mismatch: bool = False
    language_mismatch: bool = False
    # From the client's records (app/book); 0 without records. Amounts count the base currency only.
    open_deal_value: float = 0.0
    overdue_invoices: int = 0
    overdue_amount: float = 0.0

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}, got {self.tier!r}")
        if self.reason not in REASONS:
            raise ValueError(f"reason must be one of {REASONS}, got {self.reason!r}")
        if self.satisfaction is not None and not (0 <= self.satisfaction <= 10):
            raise ValueError("satisfaction must lie in 0–10")
        for name in (
            "years_with_leaver",
            "annual_value",
            "open_issues",
            "seniority_gap",
            "open_deal_value",
            "overdue_invoices",
            "overdue_amount",
        ):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.days_since_last_contact is not None and not (self.days_since_last_contact >= 0):
            raise ValueError("days_since_last_contact must be >= 0")

    def as_dict(self) -> dict[str, Any]:
        # Flat scalars: a comprehension, not dataclasses.asdict (which deep-copies; 250 µs a row at plan time).
        return {name: getattr(self, name) for name in FACTOR_NAMES}


FACTOR_NAMES: Final = tuple(f.name for f in fields(Factors))
BOOL_FACTORS: Final = frozenset(
    {
        "single_threaded",
        "renewal_within_90d",
        "destination_competitor",
        "exfiltration_alert",
        "skill_mismatch",
        "language_mismatch",
    }
)
CATEGORY_FACTORS: Final[Mapping[str, tuple[str, ...]]] = {"tier": TIERS, "reason": REASONS}
NUMBER_FACTORS: Final = frozenset(FACTOR_NAMES) - BOOL_FACTORS - frozenset(CATEGORY_FACTORS)


@dataclass(frozen=True, slots=True)
class SuccessorFit:
    seniority_gap: int = 0
    skill_mismatch: bool = False
    language_mismatch: bool = False


def _primary_language(tag: str | None) -> str | None:
    return tag.split("-")[0].lower() if tag else None


def successor_fit(
    *,
    tier: str,
    industry: str | None,
    language: str | None,
    successor_seniority: int,
    successor_skills: Sequence[str],
    successor_languages: Sequence[str],
    min_seniority: Mapping[str, int] = DEFAULT_MIN_SENIORITY,
) -> SuccessorFit:
    """The solver's notion of fit, restated: missing client attributes cannot mismatch."""
    lang = _primary_language(language)
    return SuccessorFit(
        seniority_gap=max(0, min_seniority.get(tier, 1) - successor_seniority),
        skill_mismatch=industry is not None and industry not in set(successor_skills),
        language_mismatch=lang is not None and lang not in {_primary_language(x) for x in successor_languages},
    )


# ---- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MitigationRule:
    """When the rule holds (band in `bands` and/or `factor op value`), the action is recommended."""

    action: str
    text: str
    bands: tuple[str, ...] | None = None
    factor: str | None = None
    op: str | None = None
    value: bool | float | str | None = None

    def as_dict(self) -> dict[str, Any]:
        when: dict[str, Any] = {}
        if self.bands is not None:
            when["band"] = list(self.bands)
        if self.factor is not None:
            when.update(factor=self.factor, op=self.op, value=self.value)
        return {"when": when, "action": self.action, "text": self.text}


@dataclass(frozen=True)
class RiskModel:
    """Weights as data; build one with `validate_model` so every invariant holds (and the mappings are read-only)."""

    intercept: float
    weights: Mapping[str, float]
    thresholds: Mapping[str, float]
    mitigations: tuple[MitigationRule, ...] = ()
    vector: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector", np.array([self.weights[n] for n in FEATURE_NAMES], dtype=np.float64))

    def as_dict(self) -> dict[str, Any]:
        """The JSON stored in a model version and served by the API."""
        return {
            "intercept": self.intercept,
            "weights": {n: self.weights[n] for n in FEATURE_NAMES},
            "thresholds": {b: self.thresholds[b] for b in THRESHOLD_BANDS},
            "mitigations": [r.as_dict() for r in self.mitigations],
        }


class ModelError(ValueError):
    """Every problem found in a model, each with where it is (a path into the model's JSON)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc)) or 'model'}: {msg}" for loc, msg in problems))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: object) -> TypeGuard[int | float]:
    return _is_number(value) and math.isfinite(value)


def _validate_rule(i: int, raw: Any, problems: list[tuple[tuple[str | int, ...], str]]) -> MitigationRule | None:
    loc: tuple[str | int, ...] = ("mitigations", i)
    start = len(problems)
    if not isinstance(raw, Mapping):
        problems.append((loc, "must be an object with when, action and text"))
        return None
    for key in sorted(set(raw) - {"when", "action", "text"}):
        problems.append(((*loc, key), "unknown field"))
    action, text, when = raw.get("action"), raw.get("text"), raw.get("when")
    if not (isinstance(action, str) and 0 < len(action) <= 100 and action.replace("_", "").isalnum()):
        problems.append(((*loc, "action"), "must be 1–100 letters, digits or underscores"))
    if not (isinstance(text, str) and len(text.strip()) > 0 and len(text) <= 500):
        problems.append(((*loc, "text"), "must be 1–500 characters"))
    if not isinstance(when, Mapping) or not when:
        problems.append(((*loc, "when"), "must name a band list and/or a factor, op and value"))
        return None
    for key in sorted(set(when) - {"band", "factor", "op", "value"}):
        problems.append(((*loc, "when", key), "unknown field"))
    bands: tuple[str, ...] | None = None
    if "band" in when:
        raw_bands = when["band"]
        if not isinstance(raw_bands, list) or not raw_bands or any(b not in BANDS for b in raw_bands):
            problems.append(((*loc, "when", "band"), f"must be a non-empty list of {', '.join(BANDS)}"))
        else:
            bands = tuple(dict.fromkeys(raw_bands))
    factor = op = value = None
    if {"factor", "op", "value"} & set(when):
        factor, op, value = when.get("factor"), when.get("op"), when.get("value")
        if factor not in FACTOR_NAMES:
            problems.append(((*loc, "when", "factor"), f"unknown factor {factor!r}; one of {', '.join(FACTOR_NAMES)}"))
        elif factor in BOOL_FACTORS:
            if op not in ("==", "!=") or not isinstance(value, bool):
                problems.append(((*loc, "when"), f"{factor} is true/false: use op == or != with a boolean value"))
        elif factor in CATEGORY_FACTORS:
            if op not in ("==", "!=") or value not in CATEGORY_FACTORS[factor]:
                allowed = ", ".join(CATEGORY_FACTORS[factor])
                problems.append(((*loc, "when"), f"{factor} is a category: use op == or != with one of {allowed}"))
        else:
            if op not in OPS:
                problems.append(((*loc, "when", "op"), f"must be one of {' '.join(OPS)}"))
            if not _finite(value):
                problems.append(((*loc, "when", "value"), "must be a finite number"))
    elif bands is None and "band" not in when:
        problems.append(((*loc, "when"), "must name a band list and/or a factor, op and value"))
    if len(problems) > start:
        return None
    assert isinstance(action, str) and isinstance(text, str)
    return MitigationRule(
        action=action,
        text=text.strip(),
        bands=bands,
        factor=factor,
        op=op,
        value=float(value) if _is_number(value) else value,
    )


def validate_model(data: Mapping[str, Any], *, bounded: bool = True) -> RiskModel:
    """The model's JSON → a RiskModel, or ModelError listing every problem (not just the first).

    `bounded=False` skips the WEIGHT_LIMIT check only: for reading versions stored before there was one."""
    limit = WEIGHT_LIMIT if bounded else math.inf
    beyond = f"must lie within ±{WEIGHT_LIMIT:g}: a larger logistic coefficient is a mistake, not a risk"
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if not isinstance(data, Mapping):
        raise ModelError([((), "must be an object with intercept, weights, thresholds and mitigations")])
    for key in sorted(set(data) - {"intercept", "weights", "thresholds", "mitigations"}):
        problems.append(((key,), "unknown field"))
    intercept = data.get("intercept")
    if not _finite(intercept):
        problems.append((("intercept",), "must be a finite number"))
    elif abs(intercept) > limit:
        problems.append((("intercept",), beyond))
    weights = data.get("weights")
    if not isinstance(weights, Mapping):
        problems.append((("weights",), "must be an object naming a weight for every feature"))
        weights = {}
    else:
        for name in sorted(set(weights) - set(FEATURE_NAMES)):
            problems.append((("weights", name), f"unknown factor; known: {', '.join(FEATURE_NAMES)}"))
        for name in FEATURE_NAMES:
            if name not in weights:
                if name not in OPTIONAL_FEATURES:
                    problems.append((("weights", name), "missing"))
            elif not _finite(weights[name]):
                problems.append((("weights", name), "must be a finite number"))
            elif abs(weights[name]) > limit:
                problems.append((("weights", name), beyond))
            elif name in NONNEGATIVE and weights[name] < 0:
                problems.append((("weights", name), "must be >= 0: this factor may never lower risk"))
        term = weights.get("reason_termination")
        if _finite(term):
            for name in DOMINATED_BY_TERMINATION:
                other = weights.get(name)
                if _finite(other) and other > term:
                    problems.append(
                        (("weights", name), "must not exceed reason_termination: termination may never lower risk")
                    )
    thresholds = data.get("thresholds")
    if not isinstance(thresholds, Mapping):
        problems.append((("thresholds",), "must be an object with medium, high and critical"))
    else:
        for key in sorted(set(thresholds) - set(THRESHOLD_BANDS)):
            problems.append((("thresholds", key), "unknown band; give medium, high and critical (low starts at 0)"))
        ok = True
        for band in THRESHOLD_BANDS:
            value = thresholds.get(band)
            if not (_finite(value) and 0 < value < 1):
                problems.append((("thresholds", band), "must be a probability strictly between 0 and 1"))
                ok = False
        if ok and not (thresholds["medium"] < thresholds["high"] < thresholds["critical"]):
            problems.append((("thresholds",), "must increase: medium < high < critical"))
    rules: list[MitigationRule] = []
    raw_rules = data.get("mitigations", [])
    if not isinstance(raw_rules, list):
        problems.append((("mitigations",), "must be a list of rules"))
    elif len(raw_rules) > MAX_MITIGATION_RULES:
        problems.append((("mitigations",), f"at most {MAX_MITIGATION_RULES} rules"))
    else:
        for i, raw in enumerate(raw_rules):
            rule = _validate_rule(i, raw, problems)
            if rule is not None:
                rules.append(rule)
    if problems:
        raise ModelError(problems)
    assert isinstance(thresholds, Mapping) and _is_number(intercept)
    return RiskModel(
        intercept=float(intercept),
        weights=MappingProxyType({n: float(weights.get(n, 0.0)) for n in FEATURE_NAMES}),
        thresholds=MappingProxyType({b: float(thresholds[b]) for b in THRESHOLD_BANDS}),
        mitigations=tuple(rules),
    )


DEFAULT_MODEL: Final = validate_model(
    {
        # A standard client, 3 years with the leaver, satisfaction 7, contacted a month ago: about 8 %.
        "intercept": -4.3,
        "weights": {
            "years_with_leaver": 0.35,
            "single_threaded": 0.8,
            "tier_strategic": 0.3,
            "tier_key": 0.15,
            "tier_prospect": 0.4,
            "annual_value": 0.05,
            "satisfaction_deficit": 2.5,
            "satisfaction_unknown": 0.5,
            "renewal_within_90d": 0.9,
            "days_since_last_contact": 0.12,
            "open_issues": 0.4,
            "reason_termination": 0.7,
            "reason_retirement": -0.3,
            "reason_role_change": -0.5,
            "reason_leave": -0.2,
            "reason_other": 0.0,
            "destination_competitor": 1.2,
            "exfiltration_alert": 1.5,
            "seniority_gap": 0.4,
            "skill_mismatch": 0.3,
            "language_mismatch": 0.5,
            # An open deal of 100k adds 0.4 (log10 ≈ 5 × 0.08); one overdue invoice 0.42, three 0.83, and its
            # amount a little more (10k overdue: 0.2).
            "open_deal_value": 0.08,
            "overdue_invoices": 0.6,
            "overdue_amount": 0.05,
        },
        "thresholds": {"medium": 0.15, "high": 0.35, "critical": 0.6},
        "mitigations": [
            {
                "when": {"band": ["critical"]},
                "action": "executive_sponsor_call",
                "text": "An executive sponsor calls the client before the introduction of the successor.",
            },
            {
                "when": {"band": ["critical"]},
                "action": "joint_handover_meeting",
                "text": "Hold a joint handover meeting (leaver, successor and client) before the introduction.",
            },
            {
                "when": {"band": ["high", "critical"]},
                "action": "manager_account_review",
                "text": "The successor's manager reviews the account plan with the successor within 7 days.",
            },
            {
                "when": {"factor": "single_threaded", "op": "==", "value": True},
                "action": "add_second_contact",
                "text": "Add a second contact at the client and a second person to the account team.",
            },
            {
                "when": {"factor": "renewal_within_90d", "op": "==", "value": True},
                "action": "name_renewal_owner",
                "text": "Name the renewal owner now: the renewal is due within 90 days.",
            },
            {
                "when": {"factor": "destination_competitor", "op": "==", "value": True},
                "action": "retention_offer_review",
                "text": "Review a retention offer: the leaver is going to a competitor.",
            },
            {
                "when": {"factor": "exfiltration_alert", "op": "==", "value": True},
                "action": "security_review",
                "text": "Security reviews the leaver's recent exports of this client's data before the exit.",
            },
            {
                "when": {"factor": "satisfaction", "op": "<=", "value": 4},
                "action": "service_recovery_plan",
                "text": "Agree a service recovery plan for the open complaints with the client.",
            },
            {
                "when": {"factor": "overdue_invoices", "op": ">=", "value": 1},
                "action": "settle_overdue_invoices",
                "text": "Settle the overdue invoices with finance and the client before the introduction.",
            },
            {
                "when": {"factor": "days_since_last_contact", "op": ">=", "value": 90},
                "action": "reconnect_within_week",
                "text": "Contact the client within a week: there has been no contact for 90 days or more.",
            },
        ],
    }
)


# ---- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mitigation:
    action: str
    text: str


class _Rows:
    """The arrays of one scoring batch; a Score reads its row only when asked (100k dicts are costly)."""

    __slots__ = ("contributions", "features")

    def __init__(self, contributions: FloatArray, features: FloatArray) -> None:
        self.contributions = contributions
        self.features = features


@dataclass(slots=True)
class Score:
    """One client's risk: contributions (weight × feature, FEATURES order) + intercept == logit exactly.

    Not frozen only because frozen dataclasses are four times slower to build, and planning builds 100k.
    """

    probability: float
    score: float
    band: str
    logit: float
    intercept: float
    exposure: float
    mitigations: tuple[Mitigation, ...]
    _rows: _Rows = field(repr=False, compare=False)
    _row: int = field(repr=False, compare=False)

    @property
    def contributions(self) -> dict[str, float]:
        """weight × feature for every feature, in FEATURES order."""
        return dict(zip(FEATURE_NAMES, self._rows.contributions[self._row].tolist(), strict=True))

    @property
    def features(self) -> dict[str, float]:
        """The transformed factor values the weights multiply."""
        return dict(zip(FEATURE_NAMES, self._rows.features[self._row].tolist(), strict=True))


_NUMERIC_FACTORS: Final = tuple(n for n in FACTOR_NAMES if n not in CATEGORY_FACTORS)
_NULLABLE: Final = frozenset({"satisfaction", "days_since_last_contact"})
_INTEGER_FACTORS: Final = frozenset({"open_issues", "seniority_gap", "overdue_invoices"})


def _as_array(name: str, values: Sequence[Any]) -> FloatArray:
    if name in _NULLABLE:
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return np.array(values, dtype=np.float64)


class FactorTable:
    """The factors of many clients as columns: what vectorised scoring and rule matching need.

    The service builds one straight from query results, so 100k clients never become 100k
    validated Factors objects unless someone asks for them (`factors(i)`).
    """

    __slots__ = ("categories", "numbers")

    def __init__(self, numbers: dict[str, FloatArray], categories: dict[str, npt.NDArray[np.str_]]) -> None:
        self.numbers = numbers
        self.categories = categories

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[Any]]) -> FactorTable:
        """One sequence per factor name (None for unknown satisfaction / last contact)."""
        numbers = {n: _as_array(n, columns[n]) for n in _NUMERIC_FACTORS}
        categories = {n: np.array(list(columns[n]), dtype=np.str_) for n in CATEGORY_FACTORS}
        return cls(numbers, categories)

    @classmethod
    def of(cls, factors: Sequence[Factors]) -> FactorTable:
        getter = attrgetter(*FACTOR_NAMES)
        columns = dict(zip(FACTOR_NAMES, zip(*map(getter, factors), strict=True), strict=True))
        return cls.from_columns(columns)

    def __len__(self) -> int:
        return len(self.numbers["annual_value"])

    def factors(self, i: int) -> Factors:
        return Factors(**self.factor_values(i))

    def factor_values(self, i: int) -> dict[str, Any]:
        """Row i as Factors.as_dict() would give it, without building (and re-validating) a Factors."""
        values: dict[str, Any] = {}
        for name in _NUMERIC_FACTORS:
            v = float(self.numbers[name][i])
            if name in _NULLABLE and math.isnan(v):
                values[name] = None
            elif name in BOOL_FACTORS:
                values[name] = bool(v)
            elif name in _INTEGER_FACTORS:
                values[name] = int(v)
            else:
                values[name] = v
        for name in CATEGORY_FACTORS:
            values[name] = str(self.categories[name][i])
        return {name: values[name] for name in FACTOR_NAMES}


def feature_matrix(table: FactorTable) -> FloatArray:
    """Factors → features (n × len(FEATURES)), per the transforms documented in FEATURES."""
    n = len(table)
    x = np.zeros((n, len(FEATURES)), dtype=np.float64)
    num, cat = table.numbers, table.categories

    def put(name: str, values: FloatArray) -> None:
        x[:, _INDEX[name]] = values

    put("years_with_leaver", np.log1p(np.maximum(num["years_with_leaver"], 0.0)))
    put("single_threaded", num["single_threaded"])
    for tier in ("strategic", "key", "prospect"):
        put(f"tier_{tier}", (cat["tier"] == tier).astype(np.float64))
    put("annual_value", np.log10(1.0 + np.maximum(num["annual_value"], 0.0)))
    satisfaction = num["satisfaction"]
    unknown = np.isnan(satisfaction)
    put("satisfaction_deficit", np.where(unknown, 0.0, (10.0 - np.nan_to_num(satisfaction)) / 10.0))
    put("satisfaction_unknown", unknown.astype(np.float64))
    put("renewal_within_90d", num["renewal_within_90d"])
    days = np.nan_to_num(num["days_since_last_contact"], nan=_CONTACT_CAP_DAYS)
    put("days_since_last_contact", np.minimum(days, _CONTACT_CAP_DAYS) / 30.0)
    put("open_issues", np.log1p(num["open_issues"]))
    for reason in REASONS[1:]:
        put(f"reason_{reason}", (cat["reason"] == reason).astype(np.float64))
    for name in FEATURE_NAMES[_INDEX["destination_competitor"] : _INDEX["language_mismatch"] + 1]:
        put(name, num[name])  # these features are the factors as they are
    put("open_deal_value", np.log10(1.0 + np.maximum(num["open_deal_value"], 0.0)))
    put("overdue_invoices", np.log1p(np.maximum(num["overdue_invoices"], 0.0)))
    put("overdue_amount", np.log10(1.0 + np.maximum(num["overdue_amount"], 0.0)))
    return x


def logits(x: FloatArray, model: RiskModel) -> tuple[FloatArray, FloatArray]:
    """Contributions and logits; the sum runs left to right in FEATURES order, as a reader would add them."""
    contributions = x * model.vector + 0.0  # + 0.0 turns -0.0 (negative weight × 0) into 0.0
    total = np.full(x.shape[0], model.intercept, dtype=np.float64)
    for j in range(x.shape[1]):
        total = total + contributions[:, j]
    return contributions, total


def bands_of(probability: FloatArray, model: RiskModel) -> npt.NDArray[np.int64]:
    """Index into BANDS: a probability equal to a threshold is in the higher band."""
    cuts = np.array([model.thresholds[b] for b in THRESHOLD_BANDS], dtype=np.float64)
    return np.searchsorted(cuts, probability, side="right").astype(np.int64)


_COMPARE: Final = {
    "==": np.equal,
    "!=": np.not_equal,
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
}


def _rule_mask(rule: MitigationRule, table: FactorTable, in_band: Mapping[str, BoolArray]) -> BoolArray:
    mask = np.ones(len(table), dtype=np.bool_)
    if rule.bands is not None:
        mask = np.logical_or.reduce([in_band[b] for b in rule.bands])
    if rule.factor is not None:
        if rule.factor in CATEGORY_FACTORS:
            same = table.categories[rule.factor] == rule.value
            mask &= same if rule.op == "==" else ~same
        else:
            values = table.numbers[rule.factor]
            target = float(rule.value) if isinstance(rule.value, (bool, int, float)) else math.nan
            with np.errstate(invalid="ignore"):
                compared = _COMPARE[rule.op or "=="](values, target)
            mask &= compared & ~np.isnan(values)  # an unknown value never matches
    return mask


def mitigations_for(
    table: FactorTable, band_index: npt.NDArray[np.int64], model: RiskModel
) -> list[tuple[Mitigation, ...]]:
    """Rules in model order; an action named by two matching rules is listed once.

    Clients share few distinct patterns of matching rules, so each pattern's list is built once.
    """
    n = len(table)
    if not model.mitigations:
        return [()] * n
    in_band = {b: band_index == i for i, b in enumerate(BANDS)}
    matched = np.stack([_rule_mask(rule, table, in_band) for rule in model.mitigations], axis=1)
    rules = len(model.mitigations)
    if n <= 64:  # a few clients: grouping patterns costs more than it saves
        patterns, inverse = matched, np.arange(n)
    elif rules <= 62:  # each pattern as one integer: a 1-D unique is fast
        codes = matched.astype(np.int64) @ (np.int64(1) << np.arange(rules, dtype=np.int64))
        unique_codes, inverse = np.unique(codes, return_inverse=True)
        patterns = ((unique_codes[:, None] >> np.arange(rules, dtype=np.int64)) & 1).astype(np.bool_)
    else:
        packed, inverse = np.unique(np.packbits(matched, axis=1), axis=0, return_inverse=True)
        patterns = np.unpackbits(packed, axis=1)[:, :rules].astype(np.bool_)
    built: list[tuple[Mitigation, ...]] = []
    for hits in patterns.tolist():
        actions: dict[str, Mitigation] = {}
        for rule, hit in zip(model.mitigations, hits, strict=True):
            if hit and rule.action not in actions:
                actions[rule.action] = Mitigation(rule.action, rule.text)
        built.append(tuple(actions.values()))
    return [built[i] for i in inverse.reshape(-1).tolist()]


def score_table(table: FactorTable, model: RiskModel) -> list[Score]:
    """Vectorised: one matrix product and one pass per mitigation rule, for any number of clients."""
    if len(table) == 0:
        return []
    x = feature_matrix(table)
    contributions, logit = logits(x, model)
    probability = expit(logit)
    band_index = bands_of(probability, model)
    exposure = np.round(probability * table.numbers["annual_value"], 2)
    mitigations = mitigations_for(table, band_index, model)
    rows = _Rows(contributions, x)
    intercept = model.intercept
    return [
        Score(p, s, BANDS[b], z, intercept, e, m, rows, i)
        for i, (p, s, b, z, e, m) in enumerate(
            zip(
                probability.tolist(),
                np.round(probability * 100.0, 2).tolist(),
                band_index.tolist(),
                logit.tolist(),
                exposure.tolist(),
                mitigations,
                strict=True,
            )
        )
    ]


def score_many(factors: Sequence[Factors], model: RiskModel) -> list[Score]:
    return score_table(FactorTable.of(factors), model) if factors else []


def score(factors: Factors, model: RiskModel = DEFAULT_MODEL) -> Score:
    return score_many([factors], model)[0]
