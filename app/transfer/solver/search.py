"""The exact search (column generation, rounding, proof) and the public entry points.

See the package docstring (``app.transfer.solver``) for the method."""

import math
import time
import warnings
from collections.abc import Sequence

import numpy as np

from app.transfer.solver.core import (
    _CG_GAP,
    _CG_MAX_ROUNDS,
    _CG_PER_CLASS,
    DEFAULT_CONFIG,
    REASON_NO_CAPACITY,
    REASON_NO_ELIGIBLE,
    REASON_PENALTY,
    Assignment,
    BoolArray,
    CandidateSpec,
    ClientSpec,
    FloatArray,
    IntArray,
    Solution,
    SolverConfig,
    _build,
    _class_block,
    _distinct,
    _group_chunks,
    _pair_cost,
    _Problem,
    fit_cost,
    load_cost,
)
from app.transfer.solver.heuristics import (
    _greedy_order,
    _LoadTable,
    _place,
    _Result,
    _result,
    _round,
)
from app.transfer.solver.lp import (
    _candidate_prices,
    _full_price_bound,
    _initial_columns,
    _lagrangian_bound,
    _Model,
    _model,
    _price,
    _solve_lp,
    _solve_milp,
)


def _optimise(p: _Problem, stats: dict[str, float], deadline: float) -> tuple[_Result, bool, float]:
    """Best solution, whether it is proven optimal, and a valid lower bound; never worse than ``greedy()``.

    An unproven plan is compared with the greedy baseline (0.7 s at 22,600 x 2,000), whatever cut the proof short:
    the time limit, or a gap too wide for the proof MILP after column generation converged.
    """
    result, proven, bound = _search(p, stats, deadline)
    if proven:
        return result, proven, bound
    if "greedy_cost" not in stats:
        cc, jj = _place(p, _LoadTable(p), np.zeros(p.n_cands, dtype=np.int64), _greedy_order(p))
        fallback = _result(p, cc, jj, np.ones(cc.size, dtype=np.int64))
        stats["greedy_cost"] = fallback.total
        if fallback.total < result.total:
            result = fallback
    tol = 1e-9 * (1.0 + abs(result.total)) + 1e-7
    if result.total - bound <= tol:
        return result, True, result.total
    return result, False, bound


def _search(p: _Problem, stats: dict[str, float], deadline: float) -> tuple[_Result, bool, float]:
    """Column generation, rounding and the proof MILP: a solution, whether it is proven optimal, a valid bound."""
    clock = time.perf_counter()
    table = _LoadTable(p)
    keys, fit_bound = _initial_columns(p)
    stats["initial_columns"] = float(keys.size)
    stats["t_initial"] = time.perf_counter() - clock
    penalty = p.config.unassigned_penalty
    prices: tuple[FloatArray, FloatArray, FloatArray] | None = None  # (class, candidate, superadditivity row)
    last_lp: tuple[_Model, FloatArray] | None = None
    converged = False
    rounds = 0
    while rounds < _CG_MAX_ROUNDS and time.perf_counter() < deadline:
        model = _model(p, keys)
        lp = _solve_lp(model, deadline - time.perf_counter())
        if lp is None:
            break
        rounds += 1
        last_lp = (model, lp[2])
        alpha, beta = lp[0][: p.n_classes], _candidate_prices(p, model, lp[0][p.n_classes :])
        gamma = np.zeros(p.n_cands)
        if lp[1].size:
            gamma[model.active] = lp[1]
        new, _, best = _price(p, alpha, beta, -1e-7, _CG_PER_CLASS, keys, gamma=gamma)
        prices = (np.minimum(penalty, best), beta, gamma)
        # Converged once no pair prices out, or once the restricted LP's value meets the Lagrangian bound of its own
        # duals: the columns still priced out then change the LP value by less than the tolerance (at 22,600 x
        # 2,000 the last two rounds, ~3 s, added 23 columns and nothing to the bound). Both the incumbent check and
        # reduced-cost fixing below use that certified bound, so stopping here never costs exactness.
        lp_value = float(model.cost @ lp[2])
        own_bound = _lagrangian_bound(p, prices[0], prices[1], 0.0, prices[2])
        if new.size == 0 or lp_value - own_bound <= _CG_GAP * (1.0 + abs(lp_value)):
            converged = True
            break
        keys = _distinct(keys, new)
    stats["cg_rounds"] = float(rounds)
    stats["t_column_generation"] = time.perf_counter() - clock - stats["t_initial"]
    incumbent: _Result | None = None
    clock = time.perf_counter()
    if last_lp is not None:
        incumbent = _round(p, last_lp[0], last_lp[1], table, deadline, stats)
    stats["t_round"] = time.perf_counter() - clock
    if not converged:
        cc, jj = _place(p, table, np.zeros(p.n_cands, dtype=np.int64), _greedy_order(p))
        fallback = _result(p, cc, jj, np.ones(cc.size, dtype=np.int64))
        stats["greedy_cost"] = fallback.total
        if incumbent is None or fallback.total < incumbent.total:
            incumbent = fallback
    assert incumbent is not None
    lp_bound = -math.inf if prices is None else _lagrangian_bound(p, prices[0], prices[1], 0.0, prices[2])
    stats["lp_bound"] = lp_bound
    stats["fit_bound"] = fit_bound
    bound = max(lp_bound, fit_bound)
    if not converged:
        # One more pricing pass (not interrupted by the time limit) for a certificate far tighter than the fit bound.
        stats["full_price_bound"] = _full_price_bound(p)
        bound = max(bound, stats["full_price_bound"])
    stats["heuristic_cost"] = incumbent.total
    tol = 1e-9 * (1.0 + abs(incumbent.total)) + 1e-7
    if incumbent.total - bound <= tol:
        return incumbent, True, incumbent.total
    if prices is None or time.perf_counter() >= deadline:
        return incumbent, False, bound
    clock = time.perf_counter()
    # Fixing must use the bound of the same multipliers as the reduced costs.
    limit = p.config.milp_max_columns
    extra, negative, _ = _price(
        p, prices[0], prices[1], incumbent.total - lp_bound + tol, None, limit=limit, gamma=prices[2]
    )
    if negative < -tol:  # only float noise is possible with dual-feasible multipliers
        raise RuntimeError("internal error: reduced costs are not dual feasible")
    # Past the limit the pass stopped early (at 22,600 x 2,000 it would list 7.8M pairs, ~1.5 s with the union).
    keys = extra if extra.size > limit else _distinct(keys, extra, incumbent.cc * p.n_cands + incumbent.jj)
    stats["columns"] = float(keys.size)
    if keys.size > limit:
        # A wide gap leaves millions of pairs that could still improve: HiGHS would need gigabytes and hours for
        # them. The incumbent goes back as feasible, with its certified gap.
        stats["milp_skipped"] = 1.0
        return incumbent, False, bound
    model = _model(p, keys)
    values, proven, milp_bound = _solve_milp(model, deadline - time.perf_counter(), cutoff=incumbent.total + tol)
    stats["t_milp"] = time.perf_counter() - clock
    result = incumbent
    if values is not None:
        n_x = len(model.cc)
        found = _result(p, model.cc, model.jj, np.rint(values[:n_x]).astype(np.int64))
        if found.total < result.total:
            result = found
    if proven:
        return result, True, result.total
    # Pairs outside the model can only beat the incumbent, which we already hold.
    return result, False, max(bound, min(incumbent.total, milp_bound))


# --------------------------------------------------------------------------- #
# Explanation
# --------------------------------------------------------------------------- #


def _runner_up_table(p: _Problem) -> tuple[IntArray, IntArray, BoolArray]:
    """Two cheapest feasible candidates per class (ties: lower id) and whether any is eligible."""
    n_c = p.n_classes
    first = np.full(n_c, -1, dtype=np.int64)
    second = np.full(n_c, -1, dtype=np.int64)
    any_eligible = np.zeros(n_c, dtype=np.bool_)
    for g0, g1 in _group_chunks(p):
        c0, c1, block = _class_block(p, g0, g1, weighted=False)
        rows = np.arange(c1 - c0)
        best = np.argmin(block, axis=1)
        ok = np.isfinite(block[rows, best])
        first[c0:c1] = np.where(ok, best, -1)
        block[rows, best] = np.inf
        nxt = np.argmin(block, axis=1)
        ok2 = np.isfinite(block[rows, nxt])
        second[c0:c1] = np.where(ok2, nxt, -1)
        g = p.c_group[c0:c1]
        elig = (p.seniority[None, :] >= p.g_minsen[g][:, None]) & (p.clearance[None, :] >= p.g_sens[g][:, None])
        any_eligible[c0:c1] = elig.any(axis=1)
    return first, second, any_eligible


def _assemble(p: _Problem, result: _Result, proven: bool, bound: float) -> Solution:
    config = p.config
    after = p.current + result.added_units / p.scale
    first, second, any_eligible = _runner_up_table(p)
    cache: dict[tuple[int, int, bool], dict[str, float]] = {}

    def breakdown(c: int, j: int, chosen: bool) -> dict[str, float]:
        key = (c, j, chosen)
        cached = cache.get(key)
        if cached is None:
            client = p.clients[p.c_members[c][0]]
            cand = p.cands[j]
            points = float(p.g_points[p.c_group[c]])
            if chosen:
                load = load_cost(float(after[j]), cand.capacity, config) - load_cost(
                    float(after[j]) - points, cand.capacity, config
                )
            else:
                load = load_cost(float(after[j]) + points, cand.capacity, config) - load_cost(
                    float(after[j]), cand.capacity, config
                )
            cached = fit_cost(client, cand, config)
            cached["load"] = load
            cached["risk_weight"] = float(client.risk_weight)
            cache[key] = cached
        return dict(cached)

    slots: list[Assignment | None] = [None] * len(p.clients)
    pair_cost = _pair_cost(p, result.cc, result.jj, weighted=False)
    order = np.lexsort((p.cand_ids[result.jj], pair_cost, result.cc))
    bounds = np.searchsorted(result.cc[order], np.arange(p.n_classes + 1))
    for c in range(p.n_classes):
        members = p.c_members[c]
        cursor = 0
        risk = float(p.g_risk[p.c_group[c]])
        for idx in order[bounds[c] : bounds[c + 1]]:
            j = int(result.jj[idx])
            cost = float(pair_cost[idx])
            r = int(first[c]) if int(first[c]) != j else int(second[c])
            runner_id = int(p.cand_ids[r]) if r >= 0 else None
            runner_bd = breakdown(c, r, chosen=False) if r >= 0 else None
            for _ in range(int(result.x[idx])):
                i = members[cursor]
                cursor += 1
                slots[i] = Assignment(
                    client_id=p.clients[i].id,
                    successor_id=int(p.cand_ids[j]),
                    cost=risk * cost,
                    breakdown=breakdown(c, j, chosen=True),
                    runner_up_id=runner_id,
                    runner_up_breakdown=dict(runner_bd) if runner_bd is not None else None,
                    needs_attention=False,
                    reason=None,
                )
        if cursor < len(members):
            size = int(p.g_size[p.c_group[c]])
            if not any_eligible[c]:
                reason = REASON_NO_ELIGIBLE
            else:
                g = int(p.c_group[c])
                room = (
                    (p.seniority >= p.g_minsen[g])
                    & (p.clearance >= p.g_sens[g])
                    & (p.rem_units - result.added_units >= size)
                )
                reason = REASON_PENALTY if room.any() else REASON_NO_CAPACITY
            r = int(first[c])
            runner_id = int(p.cand_ids[r]) if r >= 0 else None
            for i in members[cursor:]:
                slots[i] = Assignment(
                    client_id=p.clients[i].id,
                    successor_id=None,
                    cost=0.0,
                    breakdown={},
                    runner_up_id=runner_id,
                    runner_up_breakdown=breakdown(c, r, chosen=False) if r >= 0 else None,
                    needs_attention=True,
                    reason=reason,
                )
    assignments = [a for a in slots if a is not None]
    if len(assignments) != len(p.clients):
        raise RuntimeError("internal error: a client was not expanded")
    loads_after = {int(cid): float(load) for cid, load in zip(p.cand_ids, after, strict=True)}
    status = "optimal" if proven else "feasible"
    stats = {"lower_bound": bound, "gap": float(result.total) - bound}
    return Solution(assignments, float(result.total), loads_after, status, stats)


# --------------------------------------------------------------------------- #
# Public entry points
# --------------------------------------------------------------------------- #


def solve(
    clients: Sequence[ClientSpec],
    candidates: Sequence[CandidateSpec],
    config: SolverConfig = DEFAULT_CONFIG,
) -> Solution:
    """Minimum-cost reassignment of all clients at once (see module docstring)."""
    start = clock = time.perf_counter()
    problem = _build(clients, candidates, config)
    loads = {c.id: float(c.current_load) for c in candidates}
    if not clients:
        return Solution([], 0.0, loads, "optimal")
    if not candidates:
        interim = [Assignment(c.id, None, 0.0, {}, None, None, True, REASON_NO_ELIGIBLE) for c in clients]
        return Solution(interim, config.unassigned_penalty * len(clients), loads, "optimal")
    stats: dict[str, float] = {
        "classes": float(problem.n_classes),
        "groups": float(len(problem.g_ind)),
        "t_build": time.perf_counter() - clock,
    }
    limit = config.time_limit
    deadline = math.inf if limit is None else start + limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result, proven, bound = _optimise(problem, stats, deadline)
    clock = time.perf_counter()
    solution = _assemble(problem, result, proven, bound)
    stats["t_assemble"] = time.perf_counter() - clock
    solution.stats.update(stats)
    return solution


def greedy(
    clients: Sequence[ClientSpec],
    candidates: Sequence[CandidateSpec],
    config: SolverConfig = DEFAULT_CONFIG,
) -> dict[int, int | None]:
    """Riskiest-first greedy baseline: shows what the exact solve buys."""
    p = _build(clients, candidates, config)
    mapping: dict[int, int | None] = {c.id: None for c in clients}
    if not clients or not candidates:
        return mapping
    cc, jj = _place(p, _LoadTable(p), np.zeros(p.n_cands, dtype=np.int64), _greedy_order(p))
    cursor = np.zeros(p.n_classes, dtype=np.int64)
    for c, j in zip(cc.tolist(), jj.tolist(), strict=True):
        client = p.clients[p.c_members[c][cursor[c]]]
        cursor[c] += 1
        mapping[client.id] = int(p.cand_ids[j])
    return mapping
