"""Outcomes drawn from a known risk model: fitting on them should find its weights again."""

from __future__ import annotations

import math

import numpy as np

from app.risk import model as rm
from app.risk.model import DEFAULT_MODEL, FEATURE_NAMES, Factors, score_many, validate_model

# ---- fitting ---------------------------------------------------------------------------------------

TRUE_WEIGHTS = {
    **{name: 0.0 for name in FEATURE_NAMES},
    "years_with_leaver": 0.4,
    "single_threaded": 1.0,
    "tier_strategic": 0.5,
    "tier_prospect": 0.6,
    "satisfaction_deficit": 3.0,
    "renewal_within_90d": 1.0,
    "days_since_last_contact": 0.15,
    "open_issues": 0.5,
    "reason_termination": 1.2,
    "reason_role_change": -1.0,
    "destination_competitor": 1.5,
    "exfiltration_alert": 2.0,
    "seniority_gap": 0.5,
    "language_mismatch": 0.8,
}
TRUE_MODEL = validate_model({**DEFAULT_MODEL.as_dict(), "intercept": -4.5, "weights": TRUE_WEIGHTS})


def synthetic_factors(n: int, seed: int) -> list[Factors]:
    g = np.random.default_rng(seed)
    columns = {
        "years_with_leaver": g.exponential(3, n),
        "single_threaded": g.random(n) < 0.3,
        "tier": g.choice(rm.TIERS, n),
        "annual_value": 10 ** g.uniform(3, 7, n),
        "satisfaction": np.where(g.random(n) < 0.1, np.nan, g.uniform(0, 10, n)),
        "renewal_within_90d": g.random(n) < 0.25,
        "days_since_last_contact": g.exponential(45, n),
        "open_issues": g.poisson(1.5, n),
        "reason": g.choice(rm.REASONS, n),
        "destination_competitor": g.random(n) < 0.2,
        "exfiltration_alert": g.random(n) < 0.15,
        "seniority_gap": g.choice([0, 0, 0, 1, 2], n),
        "skill_mismatch": g.random(n) < 0.3,
        "language_mismatch": g.random(n) < 0.3,
    }
    lists = {k: v.tolist() for k, v in columns.items()}
    lists["satisfaction"] = [None if math.isnan(v) else v for v in lists["satisfaction"]]
    return [Factors(**{k: lists[k][i] for k in lists}) for i in range(n)]


def synthetic_outcomes(n: int, seed: int, model: rm.RiskModel = TRUE_MODEL) -> list[tuple[Factors, bool]]:
    """Outcomes drawn from a known model: fitting should find its weights again."""
    rows = synthetic_factors(n, seed)
    p = np.array([s.probability for s in score_many(rows, model)])
    churned = np.random.default_rng(seed + 1).random(n) < p
    return list(zip(rows, churned.tolist(), strict=True))
