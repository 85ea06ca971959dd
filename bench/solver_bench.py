"""Benchmark the exact handover solver against naive policies on a large synthetic book.

Run: ``python -m bench.solver_bench`` (or ``python bench/solver_bench.py``).
The instance is seeded and skewed (Zipf industries, few strategic clients,
heavy prospect tail, a small leaver's team that sits on many account teams,
risk in bands) so results are reproducible and resemble a real portfolio.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.transfer import solver
from app.transfer.solver import CandidateSpec, ClientSpec, SolverConfig

INDUSTRIES = [f"ind_{k:02d}" for k in range(15)]
REGIONS = ["emea_n", "emea_s", "amer_n", "amer_s", "apac", "mea"]
REGION_P = [0.34, 0.22, 0.2, 0.1, 0.09, 0.05]
LANGUAGES = ["en", "de", "fr", "es", "pt", "ja", "ar", "it"]
REGION_LANG = {"emea_n": "de", "emea_s": "fr", "amer_n": "en", "amer_s": "es", "apac": "ja", "mea": "ar"}
TIERS = ["strategic", "key", "standard", "prospect"]
TIER_P = [0.02, 0.08, 0.40, 0.50]
SENS_P = {
    "strategic": [0.3, 0.4, 0.3],
    "key": [0.5, 0.35, 0.15],
    "standard": [0.75, 0.2, 0.05],
    "prospect": [0.9, 0.09, 0.01],
}
RISK_BANDS = [0.5, 1.0, 1.5, 2.0, 3.0]
RISK_P = {
    "strategic": [0.0, 0.3, 0.3, 0.25, 0.15],
    "key": [0.05, 0.4, 0.3, 0.15, 0.1],
    "standard": [0.2, 0.5, 0.2, 0.07, 0.03],
    "prospect": [0.4, 0.45, 0.1, 0.04, 0.01],
}
TEAM_SIZE = 40  # leaver's own team: pool_rank 0, often already on the accounts


def _zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return np.asarray(w / w.sum())


def make_instance(n_clients: int, n_candidates: int, seed: int) -> tuple[list[ClientSpec], list[CandidateSpec]]:
    """Seeded, skewed synthetic portfolio; at the default size spare capacity is ~1.1x demand."""
    rng = np.random.default_rng(seed)
    ind_p = _zipf(len(INDUSTRIES), 1.1)

    candidates: list[CandidateSpec] = []
    for j in range(n_candidates):
        pool = 0 if j < TEAM_SIZE else (1 if j < 10 * TEAM_SIZE else 2)
        seniority = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1]))
        clearance = int(min(3, max(1, seniority - 1 + rng.choice([0, 1], p=[0.7, 0.3]))))
        capacity = float(np.round(rng.lognormal(math.log(90), 0.3)))
        if rng.random() < 0.03:
            current = capacity * float(rng.uniform(1.0, 1.2))  # already overloaded
        else:
            current = float(np.round(capacity * rng.beta(2, 3), 1))
        skills = set(rng.choice(INDUSTRIES, size=int(rng.integers(1, 5)), replace=False, p=ind_p))
        home = str(rng.choice(REGIONS, p=REGION_P))
        regions = {home}
        if rng.random() < 0.3:
            regions.add(str(rng.choice(REGIONS)))
        languages = {REGION_LANG[r] for r in regions}
        if rng.random() < 0.7:
            languages.add("en")
        if rng.random() < 0.2:
            languages.add(str(rng.choice(LANGUAGES)))
        candidates.append(
            CandidateSpec(
                id=10_000 + j,
                seniority=seniority,
                clearance=clearance,
                capacity=capacity,
                current_load=current,
                skills=frozenset(skills) | {"crm", "renewals"},
                regions=frozenset(regions),
                languages=frozenset(languages),
                pool_rank=pool,
            )
        )

    team_p = _zipf(TEAM_SIZE, 1.2)
    n = n_clients
    tiers = rng.choice(len(TIERS), size=n, p=TIER_P)
    industries = rng.choice(len(INDUSTRIES), size=n, p=ind_p)
    regions = rng.choice(len(REGIONS), size=n, p=REGION_P)
    other_lang = rng.choice(len(LANGUAGES), size=n, p=_zipf(len(LANGUAGES), 1.5))
    lang_roll, ind_roll, reg_roll, team_roll = rng.random((4, n))
    sens = np.empty(n, dtype=int)
    risk = np.empty(n)
    for k, tier in enumerate(TIERS):
        mask = tiers == k
        sens[mask] = rng.choice([1, 2, 3], size=int(mask.sum()), p=SENS_P[tier])
        risk[mask] = rng.choice(RISK_BANDS, size=int(mask.sum()), p=RISK_P[tier])
    team_share = np.asarray([0.6, 0.4, 0.08, 0.0])[tiers]
    team_size = rng.choice([1, 2], size=n, p=[0.7, 0.3])
    clients: list[ClientSpec] = []
    for i in range(n):
        region = None if reg_roll[i] < 0.02 else REGIONS[regions[i]]
        if lang_roll[i] < 0.05:
            language = None
        elif region is not None and lang_roll[i] < 0.85:
            language = REGION_LANG[region]
        else:
            language = LANGUAGES[other_lang[i]]
        team: frozenset[int] = frozenset()
        if team_roll[i] < team_share[i]:
            members = rng.choice(TEAM_SIZE, size=int(team_size[i]), replace=False, p=team_p)
            team = frozenset(10_000 + int(m) for m in members) | {1}  # 1 = the leaver
        clients.append(
            ClientSpec(
                id=i + 1,
                tier=TIERS[tiers[i]],
                industry=None if ind_roll[i] < 0.03 else INDUSTRIES[industries[i]],
                region=region,
                language=language,
                sensitivity=int(sens[i]),
                team_member_ids=team,
                risk_weight=float(risk[i]),
            )
        )
    return clients, candidates


def round_robin(
    clients: Sequence[ClientSpec], candidates: Sequence[CandidateSpec], config: SolverConfig
) -> dict[int, int | None]:
    """Next eligible candidate with room, cycling; ignores fit entirely."""
    ids = np.asarray([c.id for c in candidates])
    sen = np.asarray([c.seniority for c in candidates])
    clr = np.asarray([c.clearance for c in candidates])
    cap = np.asarray([c.capacity for c in candidates], dtype=float)
    load = np.asarray([c.current_load for c in candidates], dtype=float)
    pointer = 0
    mapping: dict[int, int | None] = {}
    for client in clients:
        points = config.load_points[client.tier]
        ok = (
            (sen >= config.min_seniority[client.tier])
            & (clr >= client.sensitivity)
            & (load + points <= cap + solver.CAPACITY_EPS)
        )
        ahead = np.flatnonzero(ok[pointer:])
        if ahead.size:
            j = pointer + int(ahead[0])
        else:
            behind = np.flatnonzero(ok[:pointer])
            if not behind.size:
                mapping[client.id] = None
                continue
            j = int(behind[0])
        load[j] += points
        mapping[client.id] = int(ids[j])
        pointer = (j + 1) % len(candidates)
    return mapping


def to_manager(clients: Sequence[ClientSpec], candidates: Sequence[CandidateSpec]) -> dict[int, int | None]:
    """Status quo: the leaver's manager (most senior team member) inherits the whole book."""
    manager = max((c for c in candidates if c.pool_rank == 0), key=lambda c: (c.seniority, -c.id))
    return {c.id: manager.id for c in clients}


@dataclass
class Metrics:
    seconds: float
    objective: float
    weighted_fit: float
    unassigned: int
    max_util: float
    gini_util: float
    violations: int
    ineligible: int
    top_risk_fit: float
    top_risk_unassigned: int


def _gini(values: np.ndarray) -> float:
    v = np.sort(values)
    n = v.size
    if n == 0 or v.sum() == 0:
        return 0.0
    cum = np.cumsum(v)
    return float((n + 1 - 2 * (cum.sum() / cum[-1])) / n)


def evaluate(
    clients: Sequence[ClientSpec],
    candidates: Sequence[CandidateSpec],
    mapping: Mapping[int, int | None],
    config: SolverConfig,
    seconds: float,
) -> Metrics:
    """Same yardstick for every policy (objective is inf when a hard rule is broken)."""
    by_id = {c.id: c for c in candidates}
    added: dict[int, float] = {}
    fit = 0.0
    unassigned = ineligible = 0
    client_fit: dict[int, float] = {}
    for client in clients:
        target = mapping.get(client.id)
        if target is None:
            unassigned += 1
            continue
        cand = by_id[target]
        if not solver.eligible(client, cand, config):
            ineligible += 1
        cost = solver.fit_cost(client, cand, config)["total"]
        client_fit[client.id] = cost
        fit += client.risk_weight * cost
        added[target] = added.get(target, 0.0) + config.load_points[client.tier]
    util = []
    recipient_util = [0.0]
    violations = 0
    for cand in candidates:
        after = cand.current_load + added.get(cand.id, 0.0)
        if cand.capacity > 0:
            util.append(after / cand.capacity)
            if cand.id in added:
                recipient_util.append(after / cand.capacity)
        if cand.id in added and after > cand.capacity + solver.CAPACITY_EPS:
            violations += 1
    ranked = sorted(clients, key=lambda c: (-c.risk_weight, -config.load_points[c.tier], c.id))[
        : max(1, len(clients) // 10)
    ]
    top = [client_fit[c.id] for c in ranked if c.id in client_fit]
    return Metrics(
        seconds=seconds,
        objective=solver.objective(clients, candidates, mapping, config),
        weighted_fit=fit,
        unassigned=unassigned,
        max_util=max(recipient_util),
        gini_util=_gini(np.asarray(util)),
        violations=violations,
        ineligible=ineligible,
        top_risk_fit=float(np.mean(top)) if top else math.nan,
        top_risk_unassigned=len(ranked) - len(top),
    )


def _timed(
    fn: Callable[[], dict[int, int | None]],
) -> tuple[dict[int, int | None], float]:
    start = time.perf_counter()
    mapping = fn()
    return mapping, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-greedy", action="store_true", help="greedy takes a few seconds")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="wall-clock budget for the exact solver (default: run to proven optimality)",
    )
    args = parser.parse_args(argv)
    config = SolverConfig(time_limit=args.time_limit)

    start = time.perf_counter()
    clients, candidates = make_instance(args.clients, args.candidates, args.seed)
    print(
        f"instance: {len(clients):,} clients x {len(candidates):,} candidates "
        f"(seed {args.seed}, generated in {time.perf_counter() - start:.1f}s)"
    )
    demand = sum(config.load_points[c.tier] for c in clients)
    spare = sum(max(0.0, c.capacity - c.current_load) for c in candidates)
    print(f"demand {demand:,.1f} load points; spare capacity {spare:,.1f} ({spare / demand:.2f}x)")

    start = time.perf_counter()
    solution = solver.solve(clients, candidates, config)
    solve_s = time.perf_counter() - start
    print(f"solve: {solve_s:.2f}s status={solution.status} total_cost={solution.total_cost:,.2f}")
    print("  " + ", ".join(f"{k}={v:,.6g}" for k, v in solution.stats.items()))
    exact = {a.client_id: a.successor_id for a in solution.assignments}

    label = "exact (MILP)" if solution.status == "optimal" else "MILP, time-cut"
    rows: list[tuple[str, Metrics]] = [(label, evaluate(clients, candidates, exact, config, solve_s))]
    if not args.skip_greedy:
        mapping, secs = _timed(lambda: solver.greedy(clients, candidates, config))
        rows.append(("greedy", evaluate(clients, candidates, mapping, config, secs)))
    mapping, secs = _timed(lambda: to_manager(clients, candidates))
    rows.append(("all to manager", evaluate(clients, candidates, mapping, config, secs)))
    mapping, secs = _timed(lambda: {c.id: None for c in clients})
    rows.append(("all to interim", evaluate(clients, candidates, mapping, config, secs)))
    mapping, secs = _timed(lambda: round_robin(clients, candidates, config))
    rows.append(("round robin", evaluate(clients, candidates, mapping, config, secs)))

    header = (
        f"{'policy':<16}{'time s':>8}{'objective':>16}{'risk*fit':>14}{'unassigned':>11}"
        f"{'max util':>10}{'gini':>7}{'cap viol':>9}{'inelig':>8}{'top10% fit':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, m in rows:
        print(
            f"{name:<16}{m.seconds:>8.2f}{m.objective:>16,.1f}{m.weighted_fit:>14,.1f}"
            f"{m.unassigned:>11,}{m.max_util:>10.2f}{m.gini_util:>7.3f}{m.violations:>9}"
            f"{m.ineligible:>8,}{m.top_risk_fit:>11.3f}"
        )
    print("max util = highest utilisation among candidates that received clients; gini over all candidates")
    print("top10% fit = mean unweighted fit cost of the 10% riskiest clients that got a successor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
