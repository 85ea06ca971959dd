"""Tests for the exact handover solver: optimality against brute force, then the rules."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.transfer import solver
from app.transfer.solver import CandidateSpec, ClientSpec, Solution, SolverConfig

TIERS = ["strategic", "key", "standard", "prospect"]
INDUSTRIES = ["retail", "energy", "banking"]
REGIONS = ["north", "south"]
LANGUAGES = ["en", "de"]
CONFIGS = [
    SolverConfig(),
    SolverConfig(unassigned_penalty=6.0, weight_load=5.0),
    SolverConfig(weight_continuity=0.0, weight_pool=0.0, weight_language=1.0),
]


def cand(
    cid: int,
    *,
    seniority: int = 4,
    clearance: int = 3,
    capacity: float = 10.0,
    current_load: float = 0.0,
    skills: frozenset[str] = frozenset({"retail"}),
    regions: frozenset[str] = frozenset({"north"}),
    languages: frozenset[str] = frozenset({"en"}),
    pool_rank: int = 0,
) -> CandidateSpec:
    return CandidateSpec(cid, seniority, clearance, capacity, current_load, skills, regions, languages, pool_rank)


def client(
    cid: int,
    *,
    tier: str = "standard",
    industry: str | None = "retail",
    region: str | None = "north",
    language: str | None = "en",
    sensitivity: int = 1,
    team: frozenset[int] = frozenset(),
    risk: float = 1.0,
) -> ClientSpec:
    return ClientSpec(cid, tier, industry, region, language, sensitivity, team, risk)


def successors(solution: Solution) -> dict[int, int | None]:
    return {a.client_id: a.successor_id for a in solution.assignments}


@st.composite
def instances(
    draw: st.DrawFn,
) -> tuple[list[ClientSpec], list[CandidateSpec], SolverConfig]:
    n_cands = draw(st.integers(0, 3))
    candidates = [
        cand(
            100 + j,
            seniority=draw(st.integers(1, 4)),
            clearance=draw(st.integers(1, 3)),
            capacity=draw(st.sampled_from([0.0, 1.0, 2.5, 3.0, 5.0, 7.0, 12.0])),
            current_load=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 9.0])),
            skills=draw(st.frozensets(st.sampled_from(INDUSTRIES))),
            regions=draw(st.frozensets(st.sampled_from(REGIONS))),
            languages=draw(st.frozensets(st.sampled_from(LANGUAGES))),
            pool_rank=draw(st.integers(0, 2)),
        )
        for j in range(n_cands)
    ]
    n_clients = draw(st.integers(0, 6))
    risk = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]) | st.floats(0.0, 5.0, allow_nan=False)
    clients = [
        client(
            i + 1,
            tier=draw(st.sampled_from(TIERS)),
            industry=draw(st.sampled_from([*INDUSTRIES, None])),
            region=draw(st.sampled_from([*REGIONS, None])),
            language=draw(st.sampled_from([*LANGUAGES, None])),
            sensitivity=draw(st.integers(1, 3)),
            team=draw(st.frozensets(st.sampled_from([100, 101, 102, 999]), max_size=2)),
            risk=draw(risk),
        )
        for i in range(n_clients)
    ]
    return clients, candidates, draw(st.sampled_from(CONFIGS))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(instances())
def test_solve_matches_brute_force(
    instance: tuple[list[ClientSpec], list[CandidateSpec], SolverConfig],
) -> None:
    clients, candidates, config = instance
    solution = solver.solve(clients, candidates, config)
    options: list[int | None] = [None, *(c.id for c in candidates)]
    best = min(
        solver.objective(clients, candidates, dict(zip([c.id for c in clients], pick)), config)
        for pick in itertools.product(options, repeat=len(clients))
    )
    assert solution.status == "optimal"
    assert solution.total_cost == pytest.approx(best, abs=1e-6)
    assert solver.objective(clients, candidates, successors(solution), config) == pytest.approx(
        solution.total_cost, abs=1e-6
    )


def _random_book(seed: int) -> tuple[list[ClientSpec], list[CandidateSpec]]:
    rng = random.Random(seed)
    candidates = [
        cand(
            200 + j,
            seniority=rng.randint(1, 4),
            clearance=rng.randint(1, 3),
            capacity=float(rng.choice([6, 10, 15])),
            current_load=float(rng.choice([0, 2, 5, 8])),
            skills=frozenset(rng.sample(INDUSTRIES, rng.randint(1, 2))),
            regions=frozenset(rng.sample(REGIONS, 1)),
            languages=frozenset(rng.sample(LANGUAGES, rng.randint(1, 2))),
            pool_rank=rng.randint(0, 2),
        )
        for j in range(8)
    ]
    clients = [
        client(
            i + 1,
            tier=rng.choice(TIERS),
            industry=rng.choice(INDUSTRIES),
            region=rng.choice(REGIONS),
            language=rng.choice(LANGUAGES),
            sensitivity=rng.choice([1, 1, 2, 3]),
            team=frozenset(rng.sample([200, 201, 202], rng.randint(0, 1))),
            risk=rng.choice([0.5, 1.0, 2.0]),
        )
        for i in range(60)
    ]
    return clients, candidates


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_capacity_and_ownership_invariants(seed: int) -> None:
    clients, candidates = _random_book(seed)
    config = SolverConfig()
    solution = solver.solve(clients, candidates, config)
    assert [a.client_id for a in solution.assignments] == [c.id for c in clients]
    by_id = {c.id: c for c in candidates}
    added = dict.fromkeys(by_id, 0.0)
    for spec, a in zip(clients, solution.assignments, strict=True):
        if a.successor_id is None:
            assert a.needs_attention
            assert a.reason in {solver.REASON_NO_CAPACITY, solver.REASON_NO_ELIGIBLE}
            continue
        assert a.reason is None
        assert solver.eligible(spec, by_id[a.successor_id], config)
        assert a.cost == pytest.approx(spec.risk_weight * a.breakdown["total"])
        added[a.successor_id] += config.load_points[spec.tier]
    for cid, extra in added.items():
        after = by_id[cid].current_load + extra
        assert solution.loads_after[cid] == pytest.approx(after)
        if extra:
            assert after <= by_id[cid].capacity + 1e-9
    greedy_cost = solver.objective(clients, candidates, solver.greedy(clients, candidates, config), config)
    assert solution.total_cost <= greedy_cost + 1e-6


def test_ineligible_candidates_are_never_chosen() -> None:
    junior = cand(1, seniority=1, clearance=3)  # perfect fit, too junior for strategic
    no_clearance = cand(2, seniority=4, clearance=1)  # perfect fit, not cleared
    senior = cand(3, seniority=4, clearance=3, skills=frozenset(), pool_rank=2)
    clients = [client(10, tier="strategic", sensitivity=3), client(11, tier="prospect")]
    solution = solver.solve(clients, [junior, no_clearance, senior])
    assert successors(solution)[10] == 3
    stuck = solver.solve([client(12, tier="strategic")], [junior])
    (only,) = stuck.assignments
    assert only.successor_id is None
    assert only.needs_attention
    assert only.reason == solver.REASON_NO_ELIGIBLE


def test_account_team_member_wins_a_tie() -> None:
    candidates = [cand(1), cand(2), cand(3)]
    solution = solver.solve([client(10, team=frozenset({2}))], candidates)
    (a,) = solution.assignments
    assert a.successor_id == 2
    assert a.breakdown["continuity"] == 0.0
    assert a.runner_up_breakdown is not None
    assert a.runner_up_breakdown["continuity"] == SolverConfig().weight_continuity


def test_riskier_client_gets_the_only_good_fit() -> None:
    good = cand(1, capacity=3.0)  # room for exactly one key client
    poor = cand(2, capacity=30.0, skills=frozenset(), languages=frozenset({"de"}))
    clients = [client(10, tier="key", risk=1.0), client(11, tier="key", risk=2.5)]
    for ordered in (clients, clients[::-1]):
        assert successors(solver.solve(ordered, [good, poor])) == {11: 1, 10: 2}


def test_runner_up_is_another_feasible_candidate() -> None:
    best = cand(1)
    second = cand(2, regions=frozenset({"south"}))
    ineligible = cand(3, seniority=1)
    full = cand(4, capacity=1.0, current_load=1.0)
    solution = solver.solve([client(10, tier="key")], [best, second, ineligible, full])
    (a,) = solution.assignments
    assert (a.successor_id, a.runner_up_id) == (1, 2)
    assert a.runner_up_breakdown is not None
    fit = solver.fit_cost(client(10, tier="key"), second, SolverConfig())
    for key, value in fit.items():
        assert a.runner_up_breakdown[key] == pytest.approx(value)
    assert a.runner_up_breakdown["load"] >= 0.0
    assert a.runner_up_breakdown["risk_weight"] == 1.0


def test_degenerate_inputs() -> None:
    empty = solver.solve([], [cand(1, current_load=2.0)])
    assert empty.assignments == []
    assert empty.total_cost == 0.0
    assert empty.loads_after == {1: 2.0}

    nobody = solver.solve([client(1), client(2)], [])
    assert [a.reason for a in nobody.assignments] == [solver.REASON_NO_ELIGIBLE] * 2
    assert all(a.needs_attention and a.successor_id is None for a in nobody.assignments)
    assert nobody.total_cost == 2 * SolverConfig().unassigned_penalty

    zero = solver.solve([client(1)], [cand(1, capacity=0.0), cand(2, current_load=12.0)])
    (a,) = zero.assignments
    assert a.successor_id is None
    assert a.reason == solver.REASON_NO_CAPACITY
    assert a.runner_up_id is None

    cheap_interim = solver.solve(
        [client(1, industry="energy", language="de")],
        [cand(1)],
        SolverConfig(unassigned_penalty=1.0),
    )
    assert cheap_interim.assignments[0].reason == solver.REASON_PENALTY


@pytest.mark.parametrize(
    "make",
    [
        lambda: SolverConfig(weight_skill=math.nan),
        lambda: SolverConfig(weight_load=-1.0),
        lambda: SolverConfig(unassigned_penalty=math.inf),
        lambda: SolverConfig(load_points={"standard": 0.0}, min_seniority={"standard": 1}),
        lambda: client(1, risk=-0.5),
        lambda: client(1, risk=math.nan),
        lambda: cand(1, capacity=math.nan),
        lambda: cand(1, current_load=-1.0),
        lambda: solver.solve([client(1), client(1)], [cand(1)]),
        lambda: solver.solve([client(1, tier="platinum")], [cand(1)]),
    ],
)
def test_bad_inputs_are_rejected(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_time_limit_returns_a_certified_feasible_plan() -> None:
    clients, candidates = _random_book(4)
    solution = solver.solve(clients, candidates, SolverConfig(time_limit=1e-9))
    assert solution.status in {"optimal", "feasible"}
    assert [a.client_id for a in solution.assignments] == [c.id for c in clients]
    assert solution.stats["lower_bound"] <= solution.total_cost + 1e-9
    assert solver.objective(clients, candidates, successors(solution)) == pytest.approx(solution.total_cost)


def test_load_cost_is_convex_and_ignores_existing_load() -> None:
    config = SolverConfig()
    steps = [solver.load_cost(0.5 * k, 10.0, config) for k in range(21)]
    increments = [b - a for a, b in itertools.pairwise(steps)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(increments))
    busy = cand(1, capacity=10.0, current_load=9.0)
    idle = cand(2, capacity=10.0, current_load=0.0)
    solution = solver.solve([client(1)], [busy, idle])
    assert successors(solution) == {1: 2}
    expected = solver.fit_cost(client(1), idle, config)["total"] + solver.load_cost(1.0, 10.0, config)
    assert solution.total_cost == pytest.approx(expected)


def _reference_optimum(clients: list[ClientSpec], candidates: list[CandidateSpec], config: SolverConfig) -> float:
    """An independent exact model, one binary per (client, candidate), load cost by continuous pieces between the
    candidate's current load and its capacity (convex, so the pieces fill in order): too big for brute force,
    small for HiGHS, and sharing nothing with the solver's classes, column generation or restricted master."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    pairs = [
        (i, j)
        for i, c in enumerate(clients)
        for j, k in enumerate(candidates)
        if solver.eligible(c, k, config) and config.load_points[c.tier] <= k.capacity - k.current_load + 1e-9
    ]
    pieces: list[tuple[int, float, float]] = []  # candidate, width, slope
    for j, k in enumerate(candidates):
        cuts = sorted({k.current_load, k.capacity, *(k.capacity * s / 10 for s in range(1, 10))})
        cuts = [x for x in cuts if k.current_load <= x <= k.capacity]
        for lo, hi in itertools.pairwise(cuts):
            if hi > lo:
                cost = solver.load_cost(hi, k.capacity, config) - solver.load_cost(lo, k.capacity, config)
                pieces.append((j, hi - lo, cost / (hi - lo)))
    n_p, n_c, n_s = len(pairs), len(clients), len(pieces)
    cost = np.concatenate(
        [
            [clients[i].risk_weight * solver.fit_cost(clients[i], candidates[j], config)["total"] for i, j in pairs]
            if n_p
            else np.zeros(0),
            np.full(n_c, config.unassigned_penalty),
            [p[2] for p in pieces] if n_s else np.zeros(0),
        ]
    )
    rows = np.zeros((n_c + len(candidates), n_p + n_c + n_s))
    for col, (i, j) in enumerate(pairs):
        rows[i, col] = 1.0
        rows[n_c + j, col] = config.load_points[clients[i].tier]
    for i in range(n_c):
        rows[i, n_p + i] = 1.0
    for col, (j, _, _) in enumerate(pieces):
        rows[n_c + j, n_p + n_c + col] = -1.0
    rhs = np.concatenate([np.ones(n_c), np.zeros(len(candidates))])
    upper = np.concatenate([np.ones(n_p + n_c), [p[1] for p in pieces] if n_s else np.zeros(0)])
    res = milp(
        cost,
        integrality=np.concatenate([np.ones(n_p + n_c), np.zeros(n_s)]),
        bounds=Bounds(np.zeros(n_p + n_c + n_s), upper),
        constraints=LinearConstraint(rows, rhs, rhs),
        options={"mip_rel_gap": 0.0},
    )
    assert res.status == 0
    return float(res.fun)


def _wide_book(seed: int) -> tuple[list[ClientSpec], list[CandidateSpec]]:
    rng = random.Random(seed)
    candidates = [
        cand(
            300 + j,
            seniority=rng.randint(1, 4),
            clearance=rng.randint(1, 3),
            capacity=float(rng.choice([2, 3, 4, 6])),
            current_load=float(rng.choice([0, 0.5, 1, 1.5])),
            skills=frozenset(rng.sample(INDUSTRIES, rng.randint(0, 2))),
            regions=frozenset(rng.sample(REGIONS, rng.randint(0, 1))),
            languages=frozenset(rng.sample(LANGUAGES, rng.randint(0, 2))),
            pool_rank=rng.randint(0, 2),
        )
        for j in range(150)
    ]
    clients = [
        client(
            i + 1,
            tier=rng.choice(TIERS),
            industry=rng.choice([*INDUSTRIES, None]),
            region=rng.choice([*REGIONS, None]),
            language=rng.choice(LANGUAGES),
            sensitivity=rng.choice([1, 1, 2, 3]),
            team=frozenset(rng.sample([300, 301, 302, 303], rng.randint(0, 2))),
            risk=rng.choice([0.5, 1.0, 2.0, 3.0]),
        )
        for i in range(40)
    ]
    return clients, candidates


@pytest.mark.parametrize("seed", range(6))
def test_solve_matches_an_independent_model_when_most_candidates_go_unused(seed: int) -> None:
    # A leaver's book against a whole organisation: the solver models only the candidates its pairs use (the
    # others' prices come from their first load segment). 40 clients, 150 small candidates (their load
    # costs push the optimum past the columns the solver starts from): far past brute force.
    clients, candidates = _wide_book(seed)
    config = CONFIGS[seed % len(CONFIGS)]
    solution = solver.solve(clients, candidates, config)
    assert solution.status == "optimal"
    assert solution.total_cost == pytest.approx(_reference_optimum(clients, candidates, config), abs=1e-6)
    assert solver.objective(clients, candidates, successors(solution), config) == pytest.approx(
        solution.total_cost, abs=1e-6
    )


def test_too_wide_a_proof_is_skipped_and_the_plan_is_certified_feasible() -> None:
    clients, candidates = _wide_book(0)
    exact = solver.solve(clients, candidates, SolverConfig())
    assert exact.status == "optimal" and exact.stats["columns"] > 10  # this book needs the proof MILP
    capped = solver.solve(clients, candidates, SolverConfig(milp_max_columns=10))
    assert capped.status == "feasible" and capped.stats["milp_skipped"] == 1.0
    assert capped.stats["lower_bound"] <= exact.total_cost + 1e-6 <= capped.total_cost + 2e-6
    assert solver.objective(clients, candidates, successors(capped)) == pytest.approx(capped.total_cost)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(instances())
def test_full_price_bound_never_exceeds_the_optimum(
    instance: tuple[list[ClientSpec], list[CandidateSpec], SolverConfig],
) -> None:
    clients, candidates, config = instance
    if not clients or not candidates:
        return
    options: list[int | None] = [None, *(c.id for c in candidates)]
    best = min(
        solver.objective(clients, candidates, dict(zip([c.id for c in clients], pick)), config)
        for pick in itertools.product(options, repeat=len(clients))
    )
    bound = solver._full_price_bound(solver._build(clients, candidates, config))
    assert math.isfinite(bound)
    assert bound <= best + 1e-6


def test_a_time_cut_plan_is_certified_by_the_full_price_bound() -> None:
    clients, candidates = _random_book(5)
    exact = solver.solve(clients, candidates, SolverConfig())
    cut = solver.solve(clients, candidates, SolverConfig(time_limit=1e-9))
    assert exact.status == "optimal"
    if cut.status == "feasible":
        assert cut.stats["full_price_bound"] > cut.stats["fit_bound"]
        assert cut.stats["lower_bound"] >= cut.stats["full_price_bound"]
    assert cut.stats["lower_bound"] <= exact.total_cost + 1e-6 <= cut.total_cost + 2e-6


@st.composite
def mid_instances(
    draw: st.DrawFn,
) -> tuple[list[ClientSpec], list[CandidateSpec], SolverConfig]:
    """Past brute force: up to 14 clients and 7 candidates, many idle with small capacities, so that big clients
    split over cheap first load units in the LP and the proof MILP (and its cutoff) has work to do."""
    n_cands = draw(st.integers(1, 7))
    candidates = [
        cand(
            100 + j,
            seniority=draw(st.integers(1, 4)),
            clearance=draw(st.integers(1, 3)),
            capacity=draw(st.sampled_from([0.0, 2.0, 3.5, 5.0, 8.0, 12.5, 20.0])),
            current_load=draw(st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 6.0])),
            skills=draw(st.frozensets(st.sampled_from(INDUSTRIES))),
            regions=draw(st.frozensets(st.sampled_from(REGIONS))),
            languages=draw(st.frozensets(st.sampled_from(LANGUAGES))),
            pool_rank=draw(st.integers(0, 2)),
        )
        for j in range(n_cands)
    ]
    n_clients = draw(st.integers(1, 14))
    clients = [
        client(
            i + 1,
            tier=draw(st.sampled_from(TIERS)),
            industry=draw(st.sampled_from([*INDUSTRIES, None])),
            region=draw(st.sampled_from([*REGIONS, None])),
            language=draw(st.sampled_from([*LANGUAGES, None])),
            sensitivity=draw(st.integers(1, 3)),
            team=draw(st.frozensets(st.sampled_from([100 + j for j in range(n_cands)]), max_size=2)),
            risk=draw(st.sampled_from([1.0, 1.5, 2.5, 4.0])),
        )
        for i in range(n_clients)
    ]
    return clients, candidates, draw(st.sampled_from(CONFIGS))


@settings(max_examples=80, deadline=None, derandomize=True)
@given(mid_instances())
def test_proved_optimum_matches_a_naive_client_level_milp(
    instance: tuple[list[ClientSpec], list[CandidateSpec], SolverConfig],
) -> None:
    # The independent model has one binary per (client, candidate), no classes, no pricing, no superadditivity
    # rows, no cutoff: whatever the solver proves optimal must cost exactly its optimum.
    clients, candidates, config = instance
    solution = solver.solve(clients, candidates, config)
    assert solution.status == "optimal"
    assert solution.total_cost == pytest.approx(_reference_optimum(clients, candidates, config), abs=1e-6)
    assert solver.objective(clients, candidates, successors(solution), config) == pytest.approx(
        solution.total_cost, abs=1e-6
    )


def _mapping(p: solver._Problem, result: solver._Result) -> dict[int, int | None]:
    """Class counts back to clients (interchangeable within a class), interim for the rest."""
    out: dict[int, int | None] = {c.id: None for c in p.clients}
    cursor = [0] * p.n_classes
    for c, j, x in zip(result.cc.tolist(), result.jj.tolist(), result.x.tolist(), strict=True):
        for _ in range(x):
            out[p.clients[p.c_members[c][cursor[c]]].id] = int(p.cand_ids[j])
            cursor[c] += 1
    return out


@settings(max_examples=150, deadline=None, derandomize=True)
@given(instances(), st.randoms(use_true_random=False))
def test_focused_local_search_keeps_the_exact_objective_and_never_worsens(
    instance: tuple[list[ClientSpec], list[CandidateSpec], SolverConfig], rng: random.Random
) -> None:
    # The joint plan's incumbent search moves only some clients (the LP rounding's leftovers): whatever the focus,
    # its plan is feasible, priced exactly (the scalar reference objective agrees) and no worse than its start;
    # focusing on every client is the unfocused search.
    clients, candidates, config = instance
    if not clients or not candidates:
        return
    p = solver._build(clients, candidates, config)
    table = solver._LoadTable(p)
    loads = np.zeros(p.n_cands, dtype=np.int64)
    order = [(c, int(p.c_count[c])) for c in rng.sample(range(p.n_classes), p.n_classes)]
    cc, jj = solver._place(p, table, loads, order)
    start = solver._result(p, cc, jj, np.ones(cc.size, dtype=np.int64))
    focus = np.asarray([rng.randint(0, x) for x in start.x.tolist()], dtype=np.int64)
    for f in (focus, None):
        found = solver._improve(p, table, start, math.inf, focus=f)
        assert found.total <= start.total + 1e-9
        assert solver.objective(clients, candidates, _mapping(p, found), config) == pytest.approx(found.total, abs=1e-6)
    everyone = solver._improve(p, table, start, math.inf, focus=start.x.copy())
    unfocused = solver._improve(p, table, start, math.inf)
    assert everyone.total == pytest.approx(unfocused.total, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_focused_local_search_with_near_partners_on_a_wide_book(seed: int) -> None:
    # 150 candidates: past the focused search's partner cut (swaps only with clients at a moving client's best
    # candidates), which the small instances above never reach.
    clients, candidates = _wide_book(seed)
    config = CONFIGS[seed % len(CONFIGS)]
    p = solver._build(clients, candidates, config)
    assert p.n_cands > solver._FOCUS_NEAR
    table = solver._LoadTable(p)
    rng = random.Random(seed)
    order = [(c, int(p.c_count[c])) for c in rng.sample(range(p.n_classes), p.n_classes)]
    cc, jj = solver._place(p, table, np.zeros(p.n_cands, dtype=np.int64), order)
    start = solver._result(p, cc, jj, np.ones(cc.size, dtype=np.int64))
    focus = np.asarray([rng.randint(0, x) for x in start.x.tolist()], dtype=np.int64)
    found = solver._improve(p, table, start, math.inf, focus=focus)
    assert found.total <= start.total + 1e-9
    assert solver.objective(clients, candidates, _mapping(p, found), config) == pytest.approx(found.total, abs=1e-6)
    exact = solver.solve(clients, candidates, config)
    assert exact.status == "optimal" and exact.total_cost <= found.total + 1e-6
