"""Column generation, the restricted master (LP / proof MILP) and the Lagrangian bounds.

See the package docstring (``app.transfer.solver``) for the method."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from app.transfer.solver.core import (
    _INIT_MIN_COLUMNS,
    _INIT_PARTITION,
    _SUPERADDITIVE_MAX_CELLS,
    LOAD_SEGMENTS,
    FloatArray,
    IntArray,
    _class_block,
    _distinct,
    _first_cost,
    _group_chunks,
    _pair_cost,
    _pair_ub,
    _Problem,
    _segment_slopes,
)

# --------------------------------------------------------------------------- #
# Column selection
# --------------------------------------------------------------------------- #


def _initial_columns(p: _Problem) -> tuple[IntArray, float]:
    """Cheap pairs covering each class twice over, plus the capacity-free best-fit bound.

    The bound (every client at its cheapest eligible fit or interim, load
    ignored) is weak but always valid, so even a time-cut plan has a certificate.
    """
    n_j = p.n_cands
    util = np.divide(p.current, p.capacity, out=np.ones(n_j), where=p.capacity > 0)
    seg = np.clip(np.floor(util * LOAD_SEGMENTS), 0, LOAD_SEGMENTS - 1).astype(np.int64)
    marginal = _segment_slopes(p.config)[seg] / p.scale
    keys: list[IntArray] = []
    fit_bound = 0.0
    for g0, g1 in _group_chunks(p):
        c0, c1, block = _class_block(p, g0, g1, weighted=True)
        cheapest = np.minimum(p.config.unassigned_penalty, block.min(axis=1, initial=np.inf))
        fit_bound += float(p.c_count[c0:c1] @ cheapest)
        sizes = p.g_size[p.c_group[c0:c1]]
        score = block + sizes[:, None] * marginal[None, :]
        k = min(_INIT_PARTITION, n_j)
        part = np.argpartition(score, k - 1, axis=1)[:, :k] if k < n_j else np.tile(np.arange(n_j), (c1 - c0, 1))
        part_scores = np.take_along_axis(score, part, axis=1)
        order = np.argsort(part_scores, axis=1, kind="stable")
        part = np.take_along_axis(part, order, axis=1)
        part_scores = np.take_along_axis(part_scores, order, axis=1)
        for r in range(c1 - c0):
            c = c0 + r
            need = 2 * int(p.c_count[c])
            cols = part[r][np.isfinite(part_scores[r])]
            room = p.rem_units[cols] // sizes[r]
            if room.sum() < need and len(cols) == k and k < n_j:
                full = np.argsort(score[r], kind="stable")
                cols = full[np.isfinite(score[r][full])]
                room = p.rem_units[cols] // sizes[r]
            cover = np.cumsum(room)
            take = int(np.searchsorted(cover, need)) + 1
            take = max(take, _INIT_MIN_COLUMNS)
            keys.append(c * n_j + cols[:take].astype(np.int64))
    if not keys:
        return np.zeros(0, dtype=np.int64), fit_bound
    return _distinct(*keys), fit_bound


def _price(
    p: _Problem,
    alpha: FloatArray,
    beta: FloatArray,
    threshold: float,
    per_class: int | None,
    known: IntArray | None = None,
    limit: int | None = None,
    gamma: FloatArray | None = None,
) -> tuple[IntArray, float, FloatArray]:
    """Pairs with reduced cost below threshold, sum of ub*min(0,d), and each class's best price.

    The best price ``min_j(cost - size * beta_j)`` yields dual-feasible class
    multipliers, hence a valid bound even from a non-converged LP.  Pairs in
    ``known`` (sorted keys, e.g. the restricted master's) are never returned, so
    they cannot take the ``per_class`` slots of new ones: a modelled pair at its
    upper bound has a negative reduced cost at optimal duals.  Past ``limit``
    pairs found the pass stops early (the sum and the prices are then partial).
    """
    n_j = p.n_cands
    found: list[IntArray] = []
    negative = 0.0
    best = np.full(p.n_classes, np.inf)
    count = 0
    for g0, g1 in _group_chunks(p):
        c0, c1, block = _class_block(p, g0, g1, weighted=True)
        sizes = p.g_size[p.c_group[c0:c1]].astype(np.float64)
        block -= sizes[:, None] * beta[None, :]
        if gamma is not None:
            block += p.first_cost[p.g_first[p.c_group[c0:c1]]] * gamma[None, :]
        best[c0:c1] = block.min(axis=1, initial=np.inf)
        block -= alpha[c0:c1, None]
        neg_r, neg_j = np.nonzero(block < 0)
        if neg_r.size:
            cc = neg_r.astype(np.int64) + c0
            jj = neg_j.astype(np.int64)
            negative += float(np.sum(_pair_ub(p, cc, jj) * block[neg_r, neg_j]))
        if known is not None:
            k0, k1 = np.searchsorted(known, [c0 * n_j, c1 * n_j])
            inside = known[k0:k1]
            block[inside // n_j - c0, inside % n_j] = np.inf
        if per_class is not None and per_class < n_j:
            # The per_class cheapest of each row, then the threshold: a partition, not a sort of every priced pair.
            part = np.argpartition(block, per_class - 1, axis=1)[:, :per_class]
            below = np.take_along_axis(block, part, axis=1) < threshold
            rows = np.nonzero(below)[0]
            cols = part[below]
        else:
            rows, cols = np.nonzero(block < threshold)
        if rows.size == 0:
            continue
        found.append((rows.astype(np.int64) + c0) * n_j + cols.astype(np.int64))
        count += rows.size
        if limit is not None and count > limit:
            break
    keys = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    return keys, negative, best


# --------------------------------------------------------------------------- #
# LP / MILP
# --------------------------------------------------------------------------- #


@dataclass
class _Model:
    cc: IntArray
    jj: IntArray
    cost: FloatArray
    a: sparse.csr_array
    rhs: FloatArray
    lower: FloatArray
    upper: FloatArray
    integrality: npt.NDArray[np.int8]
    active: IntArray  # the candidates with a capacity row (those some pair uses), sorted
    a_ub: sparse.csr_array  # per active candidate: sum of its clients' first costs <= its load cost (<= 0 rows)


def _model(p: _Problem, keys: IntArray) -> _Model:
    """The restricted master over `keys`, with rows and load segments only for the candidates they use.

    A candidate no pair uses has an empty load row; leaving it (and its segments) out changes nothing, and its
    dual is known without the LP (`_candidate_prices`). A 40-client book against 2,000 candidates thus solves
    LPs of a few hundred columns instead of 20,000.
    """
    n_c, n_j = p.n_classes, p.n_cands
    cc = keys // max(n_j, 1)
    jj = keys % max(n_j, 1)
    active = _distinct(jj)
    row_of = np.full(n_j, -1, dtype=np.int64)
    row_of[active] = np.arange(active.size)
    segs = np.nonzero(row_of[p.seg_j] >= 0)[0]
    n_x, n_s, n_a = len(keys), len(segs), len(active)
    x_cost = _pair_cost(p, cc, jj, weighted=True)
    sizes = p.g_size[p.c_group[cc]].astype(np.float64)
    rows = np.concatenate([cc, n_c + row_of[jj], np.arange(n_c), n_c + row_of[p.seg_j[segs]]])
    cols = np.concatenate([np.arange(n_x), np.arange(n_x), n_x + np.arange(n_c), n_x + n_c + np.arange(n_s)])
    vals = np.concatenate([np.ones(n_x), sizes, np.ones(n_c), -np.ones(n_s)])
    a = sparse.csr_array((vals, (rows, cols)), shape=(n_c + n_a, n_x + n_c + n_s))
    cost = np.concatenate([x_cost, np.full(n_c, p.config.unassigned_penalty), p.seg_slope[segs]])
    rhs = np.concatenate([p.c_count.astype(np.float64), np.zeros(n_a)])
    lower = np.zeros(n_x + n_c + n_s)
    upper = np.concatenate([_pair_ub(p, cc, jj).astype(np.float64), p.c_count.astype(np.float64), p.seg_width[segs]])
    integrality = np.concatenate([np.ones(n_x + n_c, dtype=np.int8), np.zeros(n_s, dtype=np.int8)])
    # Convex load cost with f(0) = 0 is superadditive: f(s1 + s2 + ...) >= f(s1) + f(s2) + ..., so a candidate's
    # load cost is at least the sum of what each of its clients would cost it alone. Integer plans meet these rows
    # anyway; the LP does not: without them it spreads fractions of 5-point clients over the cheap first load units
    # of many idle candidates (at full scale ~3-7 of a ~1,000 LP-to-integer gap; ~0.2-0.5 with them).
    # Past single-leaver sizes they are left out: with them the 500-leaver plan (22,626 x 2,000) took 1.44x as long
    # (17.4 s vs 12.1 s, medians of 3 alternating runs) for a gap of 368 instead of 380 (0.23 %), proof skipped.
    if n_c * n_j <= _SUPERADDITIVE_MAX_CELLS:
        ub_rows = np.concatenate([row_of[jj], row_of[p.seg_j[segs]]])
        ub_cols = np.concatenate([np.arange(n_x), n_x + n_c + np.arange(n_s)])
        ub_vals = np.concatenate([_first_cost(p, cc, jj), -p.seg_slope[segs]])
        a_ub = sparse.csr_array((ub_vals, (ub_rows, ub_cols)), shape=(n_a, n_x + n_c + n_s))
    else:
        a_ub = sparse.csr_array((0, n_x + n_c + n_s))
    return _Model(cc, jj, cost, a, rhs, lower, upper, integrality, active, a_ub)


def _candidate_prices(p: _Problem, model: _Model, row_duals: FloatArray) -> FloatArray:
    """Every candidate's dual: the LP's for the modelled ones; for the others, minus the slope of their first
    load segment (what one more unit costs them), which with zero load is an optimal dual of their empty row."""
    first = np.searchsorted(p.seg_j, np.arange(p.n_cands))
    has = np.zeros(p.n_cands, dtype=np.bool_)
    has[p.seg_j] = True
    beta = np.full(p.n_cands, -np.inf)
    beta[has] = -p.seg_slope[first[has]]
    beta[model.active] = row_duals
    return beta


def _solve_lp(model: _Model, time_limit: float) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """LP relaxation: equality-row duals, the superadditivity rows' multipliers (>= 0) and the primal; None when
    the time budget ran out first."""
    rows = model.a_ub.shape[0]
    res: Any = linprog(
        model.cost,
        A_ub=model.a_ub if rows else None,
        b_ub=np.zeros(rows) if rows else None,
        A_eq=model.a,
        b_eq=model.rhs,
        bounds=np.column_stack([model.lower, model.upper]),
        method="highs",
        options={"time_limit": max(time_limit, 0.01)},
    )
    if res.status == 1:
        return None
    if res.status != 0:
        raise RuntimeError(f"LP relaxation failed: {res.message}")
    duals = np.asarray(res.eqlin.marginals, dtype=np.float64)
    gamma = np.maximum(0.0, -np.asarray(res.ineqlin.marginals, dtype=np.float64)) if rows else np.zeros(0)
    return duals, gamma, np.asarray(res.x, dtype=np.float64)


_NO_HEURISTICS: Final = {
    "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_feasibility_jump": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_root_reduced_cost": False,
}
"""HiGHS options (passed through scipy verbatim) for a proof that starts from a known incumbent: HiGHS's
primal heuristics (sub-MIPs at the root) only look for what we already hold."""


def _solve_milp(model: _Model, time_limit: float, cutoff: float | None = None) -> tuple[FloatArray | None, bool, float]:
    """MILP values (None if none found in time), whether proven optimal, and its dual bound.

    With ``cutoff`` (the incumbent's cost plus a tolerance) HiGHS prunes every node that cannot beat it and runs
    no primal heuristics: a proof, not a search.
    """
    options: dict[str, Any] = {"mip_rel_gap": 0.0, "presolve": True}
    if math.isfinite(time_limit):
        options["time_limit"] = max(time_limit, 0.01)
    if cutoff is not None:
        options.update(_NO_HEURISTICS, objective_bound=cutoff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy names the options it passes on verbatim
        res: Any = milp(
            model.cost,
            integrality=model.integrality,
            bounds=Bounds(model.lower, model.upper),
            constraints=[LinearConstraint(model.a, model.rhs, model.rhs)]
            + ([LinearConstraint(model.a_ub, -np.inf, np.zeros(model.a_ub.shape[0]))] if model.a_ub.shape[0] else []),
            options=options,
        )
    if cutoff is not None and res.status == 2:
        return None, False, -math.inf  # nothing below the cutoff, yet the incumbent is: round-off, no proof
    if res.status not in (0, 1):
        raise RuntimeError(f"MILP failed: {res.message}")
    dual_bound = res.mip_dual_bound
    bound = float(dual_bound) if dual_bound is not None else -math.inf
    if res.x is None:
        return None, False, bound
    return np.asarray(res.x, dtype=np.float64), bool(res.status == 0), bound


def _lagrangian_bound(
    p: _Problem, alpha: FloatArray, beta: FloatArray, negative: float, gamma: FloatArray | None = None
) -> float:
    """Valid for any multipliers (``gamma >= 0`` on the superadditivity rows): each relaxed variable sits at its
    cheapest bound."""
    counts = p.c_count.astype(np.float64)
    bound = float(alpha @ counts)
    bound += float(counts @ np.minimum(0.0, p.config.unassigned_penalty - alpha))
    slope = p.seg_slope if gamma is None else p.seg_slope * (1.0 - gamma[p.seg_j])
    bound += float(p.seg_width @ np.minimum(0.0, slope + beta[p.seg_j]))
    return bound + negative


def _full_price_bound(p: _Problem) -> float:
    """Lagrangian bound with every candidate priced at the slope of its last load unit (its price when full).

    When spare capacity is close to demand, most candidates end up in their last load segment, so these prices are
    close to optimal duals (1,607 of 2,000 exactly so on the full-scale bench book) and the bound is far tighter
    than the capacity-free one; valid for any prices, so it certifies a plan whose column generation was cut short.
    """
    bounds = np.searchsorted(p.seg_j, np.arange(p.n_cands + 1))
    has = bounds[1:] > bounds[:-1]
    beta = np.full(p.n_cands, -np.inf)  # no room at all: no pair can use the candidate
    beta[has] = -p.seg_slope[bounds[1:][has] - 1]
    _, _, best = _price(p, np.full(p.n_classes, -np.inf), beta, -math.inf, None)  # -inf: skip the sum of negatives
    return _lagrangian_bound(p, np.minimum(p.config.unassigned_penalty, best), beta, 0.0)
