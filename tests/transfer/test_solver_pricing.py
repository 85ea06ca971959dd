"""The solver's column bookkeeping: distinct keys, pricing that skips known pairs, the capped fixing pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.transfer import solver
from app.transfer.solver import SolverConfig
from bench.solver_bench import make_instance


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.integers(min_value=-(2**40), max_value=2**40), max_size=60))
def test_unique_matches_numpy(values: list[int]) -> None:
    array = np.asarray(values, dtype=np.int64)
    distinct, inverse = solver._unique(array)
    expected, expected_inverse = np.unique(array, return_inverse=True)
    assert distinct.tolist() == expected.tolist()
    assert inverse.tolist() == expected_inverse.reshape(-1).tolist()
    assert distinct[inverse].tolist() == array.tolist()
    halves = np.array_split(array, 2)
    assert solver._distinct(*halves).tolist() == expected.tolist()
    assert solver._distinct(array).tolist() == expected.tolist()


@pytest.fixture(scope="module")
def problem() -> solver._Problem:
    clients, candidates = make_instance(600, 60, seed=3)
    return solver._build(clients, candidates, SolverConfig())


def _prices(p: solver._Problem) -> tuple[np.ndarray, np.ndarray]:
    """Start-of-search prices: every candidate at its first load slope, classes at the interim penalty."""
    first = np.searchsorted(p.seg_j, np.arange(p.n_cands))
    beta = np.full(p.n_cands, -np.inf)
    has = np.zeros(p.n_cands, dtype=np.bool_)
    has[p.seg_j] = True
    beta[has] = -p.seg_slope[first[has]]
    return np.full(p.n_classes, p.config.unassigned_penalty), beta


def test_pricing_never_returns_known_pairs_and_fills_per_class_slots_with_new_ones(problem: solver._Problem) -> None:
    p = problem
    alpha, beta = _prices(p)
    everything, negative, best = solver._price(p, alpha, beta, -1e-7, None)
    assert everything.size > 0 and negative < 0
    known = np.sort(everything[::2])
    found, negative_known, best_known = solver._price(p, alpha, beta, -1e-7, None, known)
    # Known pairs are left out of the list only: the sum over negative reduced costs and the prices stay whole.
    assert set(found.tolist()) == set(everything.tolist()) - set(known.tolist())
    assert negative_known == pytest.approx(negative)
    assert np.array_equal(best_known, best)
    capped, _, _ = solver._price(p, alpha, beta, -1e-7, 2, known)
    assert not set(capped.tolist()) & set(known.tolist())
    per_class = np.bincount(capped // p.n_cands, minlength=p.n_classes)
    wanted = np.bincount(found // p.n_cands, minlength=p.n_classes)
    assert np.array_equal(per_class, np.minimum(wanted, 2))


def test_a_limited_pass_stops_past_the_limit_and_lists_only_real_pairs(problem: solver._Problem) -> None:
    p = problem
    alpha, beta = _prices(p)
    everything, _, _ = solver._price(p, alpha, beta, 5.0, None)
    limited, _, _ = solver._price(p, alpha, beta, 5.0, None, limit=10)
    assert limited.size > 10
    assert set(limited.tolist()) <= set(everything.tolist())
    unlimited, _, _ = solver._price(p, alpha, beta, 5.0, None, limit=everything.size)
    assert np.array_equal(unlimited, everything)


def test_a_mass_exit_sized_book_is_priced_and_certified_consistently() -> None:
    # A scaled-down joint solve: the stopping rule of column generation and the rounding must leave a plan whose
    # exact objective is the reported one, never below the certified bound.
    clients, candidates = make_instance(1_500, 150, seed=11)
    config = SolverConfig()
    solution = solver.solve(clients, candidates, config)
    mapping = {a.client_id: a.successor_id for a in solution.assignments}
    assert solver.objective(clients, candidates, mapping, config) == pytest.approx(solution.total_cost, abs=1e-6)
    assert solution.stats["lower_bound"] <= solution.total_cost + 1e-6
    greedy = solver.objective(clients, candidates, solver.greedy(clients, candidates, config), config)
    assert solution.total_cost <= greedy + 1e-6


def test_a_plan_whose_proof_is_skipped_is_never_worse_than_greedy() -> None:
    clients, candidates = make_instance(1_500, 150, seed=11)  # its proof needs the MILP (6,158 pairs)
    config = SolverConfig(milp_max_columns=1)
    solution = solver.solve(clients, candidates, config)
    assert solution.status == "feasible" and solution.stats["milp_skipped"] == 1.0
    greedy = solver.objective(clients, candidates, solver.greedy(clients, candidates, config), config)
    assert solution.stats["greedy_cost"] == pytest.approx(greedy)
    assert solution.stats["lower_bound"] <= solution.total_cost + 1e-6 <= greedy + 2e-6
    mapping = {a.client_id: a.successor_id for a in solution.assignments}
    assert solver.objective(clients, candidates, mapping, config) == pytest.approx(solution.total_cost, abs=1e-6)
