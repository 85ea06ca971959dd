"""Fitting the churn-risk model to outcomes: penalised logistic regression under the model's sign rules.

Pure (no database): `risk.service.fit_model` feeds it the outcomes and stores the result as a draft version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import rankdata

from app.risk.model import (
    _INDEX,
    DEFAULT_MODEL,
    DOMINATED_BY_TERMINATION,
    FEATURE_NAMES,
    FEATURES,
    WEIGHT_LIMIT,
    BoolArray,
    Factors,
    FactorTable,
    FloatArray,
    RiskModel,
    feature_matrix,
    logits,
    validate_model,
)


@dataclass(frozen=True)
class FitMetrics:
    """Validation figures on the held-out split (AUC: Mann–Whitney; Brier: mean squared error)."""

    rows: int
    train_rows: int
    test_rows: int
    churn_rate: float
    auc: float | None
    brier: float
    brier_base_rate: float
    log_loss: float
    baseline_auc: float | None
    baseline_brier: float
    l2: float
    seed: int
    holdout: float
    converged: bool
    iterations: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def auc(y: BoolArray, p: FloatArray) -> float | None:
    """Probability that a churned client outranks a retained one (ties count half); None without both."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(p)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def brier(y: BoolArray, p: FloatArray) -> float:
    return float(np.mean((p - y.astype(np.float64)) ** 2))


def _reparametrisation() -> FloatArray:
    """weights = A @ theta; other reasons are termination minus a non-negative gap, so they never exceed it."""
    k = len(FEATURES)
    a = np.eye(k)
    term = _INDEX["reason_termination"]
    for name in DOMINATED_BY_TERMINATION:
        j = _INDEX[name]
        a[j, j] = -1.0
        a[j, term] = 1.0
    return a


def _bounds() -> list[tuple[float | None, float | None]]:
    bounds: list[tuple[float | None, float | None]] = [(None, None)]  # intercept
    for f in FEATURES:
        nonneg = f.nonnegative or f.name in DOMINATED_BY_TERMINATION
        bounds.append((0.0, None) if nonneg else (None, None))
    return bounds


def fit(
    rows: Sequence[tuple[Factors, bool]],
    *,
    l2: float = 1.0,
    seed: int = 0,
    holdout: float = 0.25,
    base: RiskModel = DEFAULT_MODEL,
) -> tuple[RiskModel, FitMetrics]:
    """L2-regularised logistic regression under the model's sign constraints (L-BFGS-B).

    Fits intercept and weights on a random (1 − holdout) share of the rows; the rest give AUC and Brier,
    next to the same figures for `base` (the model to compare with). Thresholds and mitigations are
    taken from `base`: the data says how factors weigh, people say what to do about it.
    """
    if not (l2 >= 0 and math.isfinite(l2)):
        raise ValueError("l2 must be a finite number >= 0")
    if not (0 < holdout < 1):
        raise ValueError("holdout must lie strictly between 0 and 1")
    n = len(rows)
    y_all = np.fromiter((bool(r[1]) for r in rows), dtype=np.bool_, count=n)
    n_test = round(n * holdout)
    if n < 10 or n_test < 1 or n - n_test < 2:
        raise ValueError("fitting needs at least 10 rows")
    if y_all.all() or not y_all.any():
        raise ValueError("fitting needs both churned and retained outcomes")
    x_all = feature_matrix(FactorTable.of([r[0] for r in rows]))
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    x, y = x_all[train], y_all[train].astype(np.float64)
    if y.min() == y.max():
        raise ValueError("the training split holds only one outcome; add rows or change the seed")
    mean = x.mean(axis=0)
    xc = x - mean  # centring only moves the intercept and makes the problem far better conditioned
    a = _reparametrisation()
    k = len(FEATURES)

    def objective(params: FloatArray) -> tuple[float, FloatArray]:
        b, theta = params[0], params[1:]
        w = a @ theta
        z = b + xc @ w
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * float(w @ w))
        residual = expit(z) - y
        grad_w = xc.T @ residual + l2 * w
        return loss, np.concatenate(([residual.sum()], a.T @ grad_w))

    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    start = np.zeros(k + 1)
    start[0] = math.log(rate / (1 - rate))
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=_bounds(),
        options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8},
    )
    theta = result.x[1:]
    w = a @ theta
    for j, f in enumerate(FEATURES):  # round-off of a bound must not fail validation
        if f.nonnegative:
            w[j] = max(w[j], 0.0)
    term = w[_INDEX["reason_termination"]]
    for name in DOMINATED_BY_TERMINATION:
        w[_INDEX[name]] = min(w[_INDEX[name]], term)
    intercept = float(result.x[0] - mean @ w)
    beyond = [name for j, name in enumerate(FEATURE_NAMES) if not abs(w[j]) <= WEIGHT_LIMIT]
    if not abs(intercept) <= WEIGHT_LIMIT:
        beyond.append("intercept")
    if beyond:
        raise ValueError(
            f"the fit puts {', '.join(beyond)} beyond ±{WEIGHT_LIMIT:g} (the outcomes separate too cleanly for "
            f"l2={l2:g}); fit with a larger l2"
        )
    fitted = validate_model(
        {
            **base.as_dict(),
            "intercept": intercept,
            "weights": {name: float(w[j]) for j, name in enumerate(FEATURE_NAMES)},
        }
    )
    x_test, y_test = x_all[test], y_all[test]
    p_test = expit(logits(x_test, fitted)[1])
    p_base = expit(logits(x_test, base)[1])
    clipped = np.clip(p_test, 1e-12, 1 - 1e-12)
    metrics = FitMetrics(
        rows=n,
        train_rows=len(train),
        test_rows=len(test),
        churn_rate=float(y_all.mean()),
        auc=auc(y_test, p_test),
        brier=brier(y_test, p_test),
        brier_base_rate=brier(y_test, np.full(len(test), float(y.mean()))),
        log_loss=float(-np.mean(np.where(y_test, np.log(clipped), np.log1p(-clipped)))),
        baseline_auc=auc(y_test, p_base),
        baseline_brier=brier(y_test, p_base),
        l2=float(l2),
        seed=int(seed),
        holdout=float(holdout),
        converged=bool(result.success),
        iterations=int(result.nit),
    )
    return fitted, metrics
