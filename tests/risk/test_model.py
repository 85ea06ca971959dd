"""The pure risk model: exact explanations, monotonicity by construction, validation, mitigations, fitting."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.risk import fitting
from app.risk import model as rm
from app.risk.model import (
    DEFAULT_MODEL,
    FEATURE_NAMES,
    OPTIONAL_FEATURES,
    Factors,
    ModelError,
    score,
    score_many,
    validate_model,
)
from tests.support.outcomes import TRUE_MODEL, TRUE_WEIGHTS, synthetic_factors, synthetic_outcomes

ROOT = Path(__file__).resolve().parents[2]

factors_st = st.builds(
    Factors,
    years_with_leaver=st.floats(0, 60),
    single_threaded=st.booleans(),
    tier=st.sampled_from(rm.TIERS),
    annual_value=st.floats(0, 1e13),
    satisfaction=st.none() | st.floats(0, 10),
    renewal_within_90d=st.booleans(),
    days_since_last_contact=st.none() | st.floats(0, 1e5),
    open_issues=st.integers(0, 100_000),
    reason=st.sampled_from(rm.REASONS),
    destination_competitor=st.booleans(),
    exfiltration_alert=st.booleans(),
    seniority_gap=st.integers(0, 3),
    skill_mismatch=st.booleans(),
    language_mismatch=st.booleans(),
)


@st.composite
def models_st(draw: st.DrawFn) -> rm.RiskModel:
    """Any model validation accepts: random weights within the sign constraints."""
    weights = {f.name: draw(st.floats(0, 5) if f.nonnegative else st.floats(-5, 5), label=f.name) for f in rm.FEATURES}
    for name in rm.DOMINATED_BY_TERMINATION:
        weights[name] = min(weights[name], weights["reason_termination"])
    cuts = sorted(draw(st.lists(st.floats(0.01, 0.99), min_size=3, max_size=3, unique=True)))
    data = {**DEFAULT_MODEL.as_dict(), "intercept": draw(st.floats(-10, 10)), "weights": weights}
    data["thresholds"] = dict(zip(rm.THRESHOLD_BANDS, cuts, strict=True))
    return validate_model(data)


def _sequential(intercept: float, contributions: dict[str, float]) -> float:
    total = intercept
    for c in contributions.values():
        total += c
    return total


# ---- explanations --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(f=factors_st, model=models_st())
def test_contributions_add_up_to_the_logit_exactly(f: Factors, model: rm.RiskModel) -> None:
    s = score(f, model)
    assert list(s.contributions) == list(FEATURE_NAMES)
    assert _sequential(s.intercept, s.contributions) == s.logit
    for name, c in s.contributions.items():
        assert c == model.weights[name] * s.features[name] + 0.0
    assert s.probability == pytest.approx(1 / (1 + math.exp(-s.logit)) if s.logit > -700 else 0.0, abs=1e-12)
    assert 0 <= s.score <= 100
    assert s.exposure == pytest.approx(s.probability * f.annual_value, abs=0.01, rel=1e-9)


def test_batch_and_single_scores_agree() -> None:
    rows = [
        Factors(),
        Factors(tier="strategic", satisfaction=2, exfiltration_alert=True, annual_value=5e6),
        Factors(reason="role_change", days_since_last_contact=400, open_issues=7),
    ]
    batch = score_many(rows, DEFAULT_MODEL)
    for f, s in zip(rows, batch, strict=True):
        one = score(f, DEFAULT_MODEL)
        assert (one.probability, one.logit, one.band, one.contributions) == (
            s.probability,
            s.logit,
            s.band,
            s.contributions,
        )
    assert score_many([], DEFAULT_MODEL) == []


def test_feature_transforms_are_as_documented() -> None:
    f = Factors(
        years_with_leaver=3,
        tier="key",
        annual_value=999,
        satisfaction=7,
        days_since_last_contact=60,
        open_issues=2,
        reason="termination",
        seniority_gap=2,
    )
    x = score(f).features
    assert x["years_with_leaver"] == pytest.approx(math.log1p(3))
    assert (x["tier_key"], x["tier_strategic"], x["tier_prospect"]) == (1.0, 0.0, 0.0)
    assert x["annual_value"] == pytest.approx(3.0)
    assert x["satisfaction_deficit"] == pytest.approx(0.3)
    assert x["satisfaction_unknown"] == 0.0
    assert x["days_since_last_contact"] == pytest.approx(2.0)
    assert x["open_issues"] == pytest.approx(math.log(3))
    assert x["reason_termination"] == 1.0 and x["reason_other"] == 0.0
    assert x["seniority_gap"] == 2.0
    unknown = score(Factors(satisfaction=None, days_since_last_contact=None)).features
    assert (unknown["satisfaction_deficit"], unknown["satisfaction_unknown"]) == (0.0, 1.0)
    assert unknown["days_since_last_contact"] == pytest.approx(365 / 30)


def test_default_model_is_sensible() -> None:
    typical = Factors(years_with_leaver=3, satisfaction=7, days_since_last_contact=30, open_issues=1, annual_value=1e5)
    worst = Factors(
        years_with_leaver=10,
        single_threaded=True,
        tier="strategic",
        annual_value=5e6,
        satisfaction=2,
        renewal_within_90d=True,
        days_since_last_contact=200,
        open_issues=5,
        reason="termination",
        destination_competitor=True,
        exfiltration_alert=True,
    )
    assert score(typical).band == "low"
    assert score(worst).band == "critical"
    actions = [m.action for m in score(worst).mitigations]
    assert actions[:2] == ["executive_sponsor_call", "joint_handover_meeting"]
    for key in ("add_second_contact", "name_renewal_owner", "retention_offer_review", "security_review"):
        assert key in actions


# ---- monotonicity (holds for every model that passes validation) ---------------------------------


@settings(max_examples=150, deadline=None)
@given(f=factors_st, model=models_st(), drop=st.floats(0, 10))
def test_lower_satisfaction_never_lowers_risk(f: Factors, model: rm.RiskModel, drop: float) -> None:
    known = dataclasses.replace(f, satisfaction=f.satisfaction if f.satisfaction is not None else 10.0)
    lower = dataclasses.replace(known, satisfaction=max(0.0, (known.satisfaction or 0) - drop))
    assert score(lower, model).logit >= score(known, model).logit
    assert score(lower, model).probability >= score(known, model).probability


@settings(max_examples=150, deadline=None)
@given(f=factors_st, model=models_st())
def test_an_alert_a_competitor_or_a_termination_never_lowers_risk(f: Factors, model: rm.RiskModel) -> None:
    base = score(f, model)
    for change in ({"exfiltration_alert": True}, {"destination_competitor": True}, {"reason": "termination"}):
        worse = score(dataclasses.replace(f, **change), model)
        assert worse.logit >= base.logit, change
        assert rm.BANDS.index(worse.band) >= rm.BANDS.index(base.band), change


@settings(max_examples=150, deadline=None)
@given(f=factors_st, model=models_st())
def test_risk_raising_factors_never_lower_risk(f: Factors, model: rm.RiskModel) -> None:
    base = score(f, model).logit
    for change in (
        {"single_threaded": True},
        {"renewal_within_90d": True},
        {"open_issues": f.open_issues + 1},
        {"days_since_last_contact": (f.days_since_last_contact or 0) + 30} if f.days_since_last_contact else {},
        {"seniority_gap": 3},
        {"skill_mismatch": True},
        {"language_mismatch": True},
    ):
        assert score(dataclasses.replace(f, **change), model).logit >= base, change


# ---- bands and mitigations -----------------------------------------------------------------------


def test_bands_follow_thresholds_with_ties_going_up() -> None:
    m = DEFAULT_MODEL
    p = np.array([0.0, 0.1499, 0.15, 0.3499, 0.35, 0.5999, 0.6, 1.0])
    assert [rm.BANDS[i] for i in rm.bands_of(p, m)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]


def test_mitigation_rules_match_bands_and_factors_and_list_an_action_once() -> None:
    data = DEFAULT_MODEL.as_dict()
    data["mitigations"] = [
        {"when": {"factor": "tier", "op": "==", "value": "strategic"}, "action": "exec", "text": "Exec call."},
        {"when": {"band": ["low"], "factor": "open_issues", "op": ">", "value": 2}, "action": "fix", "text": "Fix."},
        {"when": {"factor": "satisfaction", "op": "<", "value": 5}, "action": "exec", "text": "Exec call again."},
        {"when": {"factor": "reason", "op": "!=", "value": "resignation"}, "action": "why", "text": "Ask why."},
    ]
    m = validate_model(data)
    out = score_many(
        [
            Factors(tier="strategic", satisfaction=3),
            Factors(open_issues=5, satisfaction=None, days_since_last_contact=10),
            Factors(reason="retirement", satisfaction=None),
            Factors(open_issues=5, satisfaction=0, exfiltration_alert=True, reason="termination"),
        ],
        m,
    )
    assert [[x.action for x in s.mitigations] for s in out] == [["exec"], ["fix"], ["why"], ["exec", "why"]]
    assert out[0].mitigations[0].text == "Exec call."
    assert out[3].band != "low"


# ---- validation ------------------------------------------------------------------------------------


def _problems(data: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    with pytest.raises(ModelError) as info:
        validate_model(data)
    return dict(info.value.problems)


def test_validation_lists_every_problem() -> None:
    data = DEFAULT_MODEL.as_dict()
    data["weights"] = {**data["weights"], "bogus": 1.0, "exfiltration_alert": -0.1, "satisfaction_deficit": math.nan}
    del data["weights"]["tier_key"]
    data["weights"]["reason_leave"] = 5.0  # above termination
    data["thresholds"] = {"medium": 0.5, "high": 0.4, "critical": 0.9}
    data["intercept"] = math.inf
    problems = _problems(data)
    assert set(problems) == {
        ("weights", "bogus"),
        ("weights", "exfiltration_alert"),
        ("weights", "satisfaction_deficit"),
        ("weights", "tier_key"),
        ("weights", "reason_leave"),
        ("thresholds",),
        ("intercept",),
    }
    assert "never lower risk" in problems[("weights", "exfiltration_alert")]
    assert "unknown factor" in problems[("weights", "bogus")]
    assert "exfiltration_alert" in str(ModelError(list(problems.items())))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"intercept": 20.5}, ("intercept",)),
        ({"intercept": -1e300}, ("intercept",)),
        ({"weights": {"single_threaded": 1e308}}, ("weights", "single_threaded")),
        ({"weights": {"tier_key": -20.001}}, ("weights", "tier_key")),
        ({"weights": {"reason_termination": 25.0, "exfiltration_alert": 21.0}}, ("weights", "exfiltration_alert")),
    ],
)
def test_weights_and_intercept_are_bounded(change: dict[str, Any], where: tuple[str, ...]) -> None:
    """|w| <= 20: finite but absurd weights (1e308) were valid, and a logit of 2e308 is inf (inf - inf is NaN)."""
    data = DEFAULT_MODEL.as_dict()
    data["intercept"] = change.get("intercept", data["intercept"])
    data["weights"].update(change.get("weights", {}))
    problems = _problems(data)
    assert where in problems and "±20" in problems[where]
    assert validate_model(data, bounded=False).as_dict() == data  # how a version stored before the bound reads
    at_bound = DEFAULT_MODEL.as_dict()
    at_bound["intercept"], at_bound["weights"]["tier_key"] = -rm.WEIGHT_LIMIT, rm.WEIGHT_LIMIT
    validate_model(at_bound)


@pytest.mark.parametrize(
    ("thresholds", "where"),
    [
        ({"medium": 0.0, "high": 0.4, "critical": 0.6}, ("thresholds", "medium")),
        ({"medium": 0.2, "high": 0.4, "critical": 1.0}, ("thresholds", "critical")),
        ({"medium": 0.2, "high": 0.2, "critical": 0.6}, ("thresholds",)),
        ({"medium": 0.2, "high": 0.4}, ("thresholds", "critical")),
        ({"medium": 0.2, "high": 0.4, "critical": 0.6, "extreme": 0.9}, ("thresholds", "extreme")),
        ({"medium": True, "high": 0.4, "critical": 0.6}, ("thresholds", "medium")),
    ],
)
def test_thresholds_must_increase_inside_zero_one(thresholds: dict[str, Any], where: tuple[str, ...]) -> None:
    assert where in _problems({**DEFAULT_MODEL.as_dict(), "thresholds": thresholds})


@pytest.mark.parametrize(
    ("rule", "where"),
    [
        ({"when": {"factor": "mood", "op": "==", "value": 1}, "action": "a", "text": "t"}, ("when", "factor")),
        ({"when": {"factor": "single_threaded", "op": ">", "value": True}, "action": "a", "text": "t"}, ("when",)),
        ({"when": {"factor": "tier", "op": "==", "value": "gold"}, "action": "a", "text": "t"}, ("when",)),
        ({"when": {"factor": "open_issues", "op": "~", "value": 1}, "action": "a", "text": "t"}, ("when", "op")),
        ({"when": {"factor": "open_issues", "op": ">", "value": "x"}, "action": "a", "text": "t"}, ("when", "value")),
        ({"when": {"band": ["severe"]}, "action": "a", "text": "t"}, ("when", "band")),
        ({"when": {}, "action": "a", "text": "t"}, ("when",)),
        ({"when": {"band": ["low"]}, "action": "a b", "text": "t"}, ("action",)),
        ({"when": {"band": ["low"]}, "action": "a", "text": " "}, ("text",)),
        ({"when": {"band": ["low"]}, "action": "a", "text": "t", "extra": 1}, ("extra",)),
    ],
)
def test_mitigation_rules_are_validated(rule: dict[str, Any], where: tuple[str, ...]) -> None:
    assert ("mitigations", 0, *where) in _problems({**DEFAULT_MODEL.as_dict(), "mitigations": [rule]})


def test_a_valid_model_round_trips_through_json() -> None:
    assert validate_model(DEFAULT_MODEL.as_dict()) == DEFAULT_MODEL
    assert _problems({}).keys() >= {("intercept",), ("weights",), ("thresholds",)}


def test_the_migration_seeds_the_default_model() -> None:
    path = ROOT / "migrations" / "versions" / "20261122_risk_model_versions.py"
    spec = importlib.util.spec_from_file_location("risk_migration", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seeded = validate_model(module.DEFAULT_MODEL_V1)
    # The book's features came later: the seeded version weighs them 0 (it scores as it always did), the code's
    # default weighs them, and gained one rule on them.
    assert seeded.intercept == DEFAULT_MODEL.intercept and seeded.thresholds == DEFAULT_MODEL.thresholds
    assert {n: w for n, w in seeded.weights.items() if n not in OPTIONAL_FEATURES} == {
        n: w for n, w in DEFAULT_MODEL.weights.items() if n not in OPTIONAL_FEATURES
    }
    assert all(seeded.weights[n] == 0 and DEFAULT_MODEL.weights[n] > 0 for n in OPTIONAL_FEATURES)
    assert seeded.mitigations == tuple(r for r in DEFAULT_MODEL.mitigations if r.factor not in OPTIONAL_FEATURES)


def test_factors_refuse_impossible_values() -> None:
    for bad in ({"tier": "gold"}, {"reason": "fired"}, {"satisfaction": 11}, {"open_issues": -1}):
        with pytest.raises(ValueError):
            Factors(**bad)


def test_successor_fit_restates_the_solver() -> None:
    fit = rm.successor_fit(
        tier="strategic",
        industry="banking",
        language="zh-CN",
        successor_seniority=1,
        successor_skills=["retail"],
        successor_languages=["en"],
    )
    assert fit == rm.SuccessorFit(seniority_gap=2, skill_mismatch=True, language_mismatch=True)
    good = rm.successor_fit(
        tier="standard",
        industry=None,
        language="zh",
        successor_seniority=3,
        successor_skills=[],
        successor_languages=["zh-TW"],
    )
    assert good == rm.SuccessorFit()


def test_fit_recovers_known_weights() -> None:
    fitted, metrics = fitting.fit(synthetic_outcomes(20_000, seed=7), l2=1.0, seed=3)
    for name, true in TRUE_WEIGHTS.items():
        got = fitted.weights[name]
        if abs(true) >= 0.8:  # the big weights: right sign, within 30 %
            assert math.copysign(1, got) == math.copysign(1, true), name
            assert abs(got - true) <= 0.3 * abs(true), (name, true, got)
        else:  # the small ones (tiers share a baseline, so they are noisier): within 0.3
            assert abs(got - true) <= 0.3, (name, true, got)
    assert fitted.intercept == pytest.approx(-4.5, abs=0.5)
    assert metrics.converged
    assert metrics.auc is not None and metrics.auc > 0.7
    assert metrics.brier < metrics.brier_base_rate
    assert (metrics.rows, metrics.test_rows) == (20_000, 5_000)
    assert fitted.thresholds == DEFAULT_MODEL.thresholds and fitted.mitigations == DEFAULT_MODEL.mitigations


def test_fit_keeps_sign_constraints_even_when_the_data_disagrees() -> None:
    """Outcomes where alerts *lower* churn: the fitted weight stops at 0 and the model stays valid."""
    perverse = validate_model({**TRUE_MODEL.as_dict()})
    rows = synthetic_outcomes(5_000, seed=11, model=perverse)
    flipped = [(f, (not y) if f.exfiltration_alert else y) for f, y in rows]
    fitted, _ = fitting.fit(flipped, seed=1)
    assert fitted.weights["exfiltration_alert"] >= 0
    for name in rm.DOMINATED_BY_TERMINATION:
        assert fitted.weights[name] <= fitted.weights["reason_termination"]
    validate_model(fitted.as_dict())


def test_fit_refuses_what_it_cannot_learn_from() -> None:
    rows = synthetic_outcomes(50, seed=1)
    with pytest.raises(ValueError, match="both"):
        fitting.fit([(f, False) for f, _ in rows])
    with pytest.raises(ValueError, match="at least"):
        fitting.fit(rows[:5])
    with pytest.raises(ValueError, match="l2"):
        fitting.fit(rows, l2=-1)


def test_fit_refuses_weights_beyond_the_bound() -> None:
    """An alert on exactly the clients that churned, without a penalty: the weight runs away, and the fit says to
    penalise instead of storing it."""
    rows = [(Factors(exfiltration_alert=bool(i % 2)), bool(i % 2)) for i in range(400)]
    with pytest.raises(ValueError, match=r"exfiltration_alert.*beyond ±20.*larger l2"):
        fitting.fit(rows, l2=0.0)
    fitted, _ = fitting.fit(rows, l2=1.0)
    assert 0 < fitted.weights["exfiltration_alert"] <= rm.WEIGHT_LIMIT


def test_auc_is_mann_whitney() -> None:
    g = np.random.default_rng(0)
    y = g.random(300) < 0.3
    p = np.round(g.random(300), 1)  # ties count half
    pairs = [(a, b) for a in p[y] for b in p[~y]]
    brute = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert fitting.auc(y, p) == pytest.approx(brute)
    assert fitting.auc(np.array([True, True]), np.array([0.1, 0.2])) is None
    assert fitting.brier(np.array([True, False]), np.array([1.0, 0.5])) == pytest.approx(0.125)


def test_stored_factor_values_round_trip_exactly() -> None:
    # Items store factor_values (no Factors built per row): same keys, order, types and values as as_dict.
    rows = synthetic_factors(200, seed=7)
    table = rm.FactorTable.of(rows)
    for i, f in enumerate(rows):
        values = table.factor_values(i)
        assert list(values) == list(f.as_dict()) and values == f.as_dict()
        assert [type(v) for v in values.values()] == [type(v) for v in f.as_dict().values()]
