"""Problem data: specs, config, the reference objective and the vectorised classes x candidates.

See the package docstring (``app.transfer.solver``) for the method."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

Tier = Literal["strategic", "key", "standard", "prospect"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

LOAD_SEGMENTS: Final = 10
"""Utilisation segments of the convex load cost (10 % each)."""

CAPACITY_EPS: Final = 1e-9
"""Slack on ``load <= capacity`` so float round-off never rejects a fit."""

REASON_NO_ELIGIBLE: Final = "no_eligible_candidate"
REASON_NO_CAPACITY: Final = "no_capacity"
REASON_PENALTY: Final = "cost_above_penalty"

_MAX_UNIT_DENOMINATOR: Final = 1000
_CHUNK_ELEMENTS: Final = 4_000_000
_SUPERADDITIVE_MAX_CELLS: Final = 4_000_000
_CG_MAX_ROUNDS: Final = 200
_CG_PER_CLASS: Final = 8
_CG_GAP: Final = 1e-7
_INIT_MIN_COLUMNS: Final = 4
_INIT_PARTITION: Final = 32


def _unique(values: IntArray) -> tuple[IntArray, IntArray]:
    """Sorted distinct values and, for each input, the index of its value among them.

    A sort and a mask: numpy 2.x's hash-based ``np.unique`` took 15 s for the 7.8M keys of a 22,600 x 2,000 book
    where this takes 0.8 s.
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.ones(ordered.size, dtype=np.bool_)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(values.size, dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


def _distinct(*parts: IntArray) -> IntArray:
    """Sorted distinct values of the given arrays together (see ``_unique``)."""
    ordered = np.sort(np.concatenate(parts)) if len(parts) > 1 else np.sort(parts[0])
    first = np.ones(ordered.size, dtype=np.bool_)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return np.asarray(ordered[first], dtype=np.int64)


def _default_load_points() -> dict[str, float]:
    return {"strategic": 5.0, "key": 3.0, "standard": 1.0, "prospect": 0.5}


def _default_min_seniority() -> dict[str, int]:
    return {"strategic": 3, "key": 2, "standard": 1, "prospect": 1}


def _finite_non_negative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _unit_scale(points: Any) -> int:
    """Integer load units keep capacity rows exact; refuse loads we cannot scale."""
    scale = 1
    for value in points:
        frac = Fraction(float(value)).limit_denominator(_MAX_UNIT_DENOMINATOR)
        if abs(float(frac) - float(value)) > 1e-12 * max(1.0, float(value)):
            raise ValueError(f"load point {value!r} is not a multiple of 1/q for q <= {_MAX_UNIT_DENOMINATOR}")
        scale = math.lcm(scale, frac.denominator)
    if scale > 10**6:
        raise ValueError("load points need too fine a unit")
    return scale


@dataclass(frozen=True)
class ClientSpec:
    """A client to hand over; validated on creation so bad rows fail early."""

    id: int
    tier: str
    industry: str | None
    region: str | None
    language: str | None
    sensitivity: int
    team_member_ids: frozenset[int] = frozenset()
    risk_weight: float = 1.0

    def __post_init__(self) -> None:
        _finite_non_negative(f"client {self.id} risk_weight", self.risk_weight)
        if self.sensitivity < 1:
            raise ValueError(f"client {self.id} sensitivity must be >= 1")


@dataclass(frozen=True)
class CandidateSpec:
    """A possible successor; validated on creation so bad rows fail early."""

    id: int
    seniority: int
    clearance: int
    capacity: float
    current_load: float
    skills: frozenset[str]
    regions: frozenset[str]
    languages: frozenset[str]
    pool_rank: int = 0

    def __post_init__(self) -> None:
        _finite_non_negative(f"candidate {self.id} capacity", self.capacity)
        _finite_non_negative(f"candidate {self.id} current_load", self.current_load)
        if self.pool_rank < 0:
            raise ValueError(f"candidate {self.id} pool_rank must be >= 0")


@dataclass(frozen=True)
class SolverConfig:
    """Weights and rules; rejected on creation if NaN/negative to keep the MILP sound."""

    load_points: Mapping[str, float] = field(default_factory=_default_load_points)
    min_seniority: Mapping[str, int] = field(default_factory=_default_min_seniority)
    weight_skill: float = 3.0
    weight_region: float = 2.0
    weight_language: float = 4.0
    weight_continuity: float = 3.0
    weight_pool: float = 0.5
    weight_load: float = 2.0
    unassigned_penalty: float = 1000.0
    time_limit: float | None = None
    milp_max_columns: int = 400_000
    """Past this many pairs left after reduced-cost fixing, the proof MILP is skipped (memory): plan is feasible."""

    def __post_init__(self) -> None:
        for name in (
            "weight_skill",
            "weight_region",
            "weight_language",
            "weight_continuity",
            "weight_pool",
            "weight_load",
            "unassigned_penalty",
        ):
            _finite_non_negative(name, getattr(self, name))
        for tier, points in self.load_points.items():
            if not isinstance(points, (int, float)) or not math.isfinite(points) or points <= 0:
                raise ValueError(f"load_points[{tier!r}] must be finite and > 0")
        missing = set(self.load_points) - set(self.min_seniority)
        if missing:
            raise ValueError(f"min_seniority missing tiers: {sorted(missing)}")
        if self.time_limit is not None and not (self.time_limit > 0):
            raise ValueError("time_limit must be > 0 or None")
        if self.milp_max_columns < 1:
            raise ValueError("milp_max_columns must be >= 1")
        _unit_scale(self.load_points.values())


DEFAULT_CONFIG: Final = SolverConfig()


@dataclass(frozen=True)
class CostBreakdown:
    """Per-factor costs, so a reviewer can see why a successor was chosen."""

    skill: float
    region: float
    language: float
    continuity: float
    pool: float
    load: float
    total: float
    risk_weight: float

    def as_dict(self) -> dict[str, float]:
        return {
            "skill": self.skill,
            "region": self.region,
            "language": self.language,
            "continuity": self.continuity,
            "pool": self.pool,
            "load": self.load,
            "total": self.total,
            "risk_weight": self.risk_weight,
        }


@dataclass(frozen=True)
class Assignment:
    """One client's outcome; ``breakdown['total']`` is the fit cost before risk weighting."""

    client_id: int
    successor_id: int | None
    cost: float
    breakdown: dict[str, float]
    runner_up_id: int | None
    runner_up_breakdown: dict[str, float] | None
    needs_attention: bool
    reason: str | None


@dataclass(frozen=True)
class Solution:
    """Whole reassignment.

    ``status`` is "optimal" unless ``time_limit`` cut the search ("feasible");
    ``stats`` carries the certified ``lower_bound``/``gap`` and phase timings
    so operators can see how good and how expensive a plan was.
    """

    assignments: list[Assignment]
    total_cost: float
    loads_after: dict[int, float]
    status: str
    stats: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- #
# Scalar definitions (the reference semantics the solver must reproduce)
# --------------------------------------------------------------------------- #


def eligible(client: ClientSpec, candidate: CandidateSpec, config: SolverConfig) -> bool:
    """Hard rules that no weight may override; capacity is the solver's job."""
    return candidate.seniority >= config.min_seniority[client.tier] and candidate.clearance >= client.sensitivity


def fit_cost(client: ClientSpec, candidate: CandidateSpec, config: SolverConfig) -> dict[str, float]:
    """Unweighted fit; missing client attributes (None) cannot mismatch."""
    skill = config.weight_skill if client.industry is not None and client.industry not in candidate.skills else 0.0
    region = config.weight_region if client.region is not None and client.region not in candidate.regions else 0.0
    language = (
        config.weight_language if client.language is not None and client.language not in candidate.languages else 0.0
    )
    continuity = 0.0 if candidate.id in client.team_member_ids else config.weight_continuity
    pool = config.weight_pool * candidate.pool_rank
    return {
        "skill": skill,
        "region": region,
        "language": language,
        "continuity": continuity,
        "pool": pool,
        "total": skill + region + language + continuity + pool,
    }


def _segment_slopes(config: SolverConfig) -> FloatArray:
    return config.weight_load * np.arange(1, LOAD_SEGMENTS + 1, dtype=np.float64) / LOAD_SEGMENTS


def load_cost(load: float, capacity: float, config: SolverConfig) -> float:
    """Convex so that balancing is exact in the MILP; past capacity the last slope continues."""
    if capacity <= 0 or load <= 0:
        return 0.0
    slopes = _segment_slopes(config)
    width = capacity / LOAD_SEGMENTS
    total = 0.0
    for k in range(LOAD_SEGMENTS):
        lower = k * width
        if load <= lower:
            break
        upper = math.inf if k == LOAD_SEGMENTS - 1 else (k + 1) * width
        total += float(slopes[k]) * (min(load, upper) - lower)
    return total


def _fits(load: float, capacity: float) -> bool:
    return load <= capacity + CAPACITY_EPS


def objective(
    clients: Sequence[ClientSpec],
    candidates: Sequence[CandidateSpec],
    mapping: Mapping[int, int | None],
    config: SolverConfig = DEFAULT_CONFIG,
) -> float:
    """Exact objective of any mapping (missing client = interim); inf if infeasible."""
    by_id = {c.id: c for c in candidates}
    added: dict[int, float] = {}
    total = 0.0
    for client in clients:
        successor = mapping.get(client.id)
        if successor is None:
            total += config.unassigned_penalty
            continue
        candidate = by_id.get(successor)
        if candidate is None:
            raise ValueError(f"unknown candidate id {successor}")
        if not eligible(client, candidate, config):
            return math.inf
        total += client.risk_weight * fit_cost(client, candidate, config)["total"]
        added[successor] = added.get(successor, 0.0) + config.load_points[client.tier]
    for cand_id, extra in added.items():
        candidate = by_id[cand_id]
        after = candidate.current_load + extra
        if not _fits(after, candidate.capacity):
            return math.inf
        total += load_cost(after, candidate.capacity, config) - load_cost(
            candidate.current_load, candidate.capacity, config
        )
    return total


# --------------------------------------------------------------------------- #
# Vectorised problem data
# --------------------------------------------------------------------------- #


def _validate(clients: Sequence[ClientSpec], candidates: Sequence[CandidateSpec], config: SolverConfig) -> None:
    if len({c.id for c in clients}) != len(clients):
        raise ValueError("duplicate client ids")
    if len({c.id for c in candidates}) != len(candidates):
        raise ValueError("duplicate candidate ids")
    for client in clients:
        if client.tier not in config.load_points:
            raise ValueError(f"client {client.id} has unknown tier {client.tier!r}")


@dataclass
class _Problem:
    """Classes x candidates in array form; candidates are kept sorted by id for tie-breaks."""

    config: SolverConfig
    clients: Sequence[ClientSpec]
    cands: list[CandidateSpec]
    scale: int
    cand_ids: IntArray
    seniority: IntArray
    clearance: IntArray
    capacity: FloatArray
    current: FloatArray
    rem_units: IntArray
    const_cost: FloatArray
    skill_mis: FloatArray
    region_mis: FloatArray
    lang_mis: FloatArray
    # groups: classes minus the account team
    g_ind: IntArray
    g_reg: IntArray
    g_lang: IntArray
    g_minsen: IntArray
    g_sens: IntArray
    g_size: IntArray
    g_points: FloatArray
    g_risk: FloatArray
    # classes, sorted by group
    c_group: IntArray
    c_count: IntArray
    c_members: list[list[int]]
    c_start: IntArray  # first class of each group, plus a sentinel
    team_c: IntArray  # sorted team pairs (class, candidate)
    team_j: IntArray
    team_keys: IntArray
    seg_j: IntArray
    seg_width: FloatArray
    seg_slope: FloatArray
    first_cost: FloatArray  # (distinct size, candidate): the load cost of one client of that size, 0 if it cannot fit
    g_first: IntArray  # each group's row of first_cost

    @property
    def n_classes(self) -> int:
        return len(self.c_count)

    @property
    def n_cands(self) -> int:
        return len(self.cand_ids)


def _vocab_mismatch(
    values: list[str | None],
    cand_sets: list[frozenset[str]],
    weight: float,
) -> tuple[dict[str | None, int], FloatArray]:
    names = sorted({v for v in values if v is not None})
    index: dict[str | None, int] = {name: i for i, name in enumerate(names)}
    index[None] = len(names)
    mis = np.full((len(names) + 1, len(cand_sets)), weight, dtype=np.float64)
    mis[len(names), :] = 0.0
    for j, tags in enumerate(cand_sets):
        for tag in tags:
            i = index.get(tag)
            if i is not None and tag is not None:
                mis[i, j] = 0.0
    return index, mis


def _segments(
    current: FloatArray, capacity: FloatArray, rem_units: IntArray, scale: int, config: SolverConfig
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Convex load cost interpolated at integer load units.

    Loads only ever take integer unit values, so interpolating between them is
    exact for every integer solution, and with integer breakpoints the LP has no
    incentive to stop a candidate's load mid-unit (a tighter relaxation).
    """
    # Vectorised over candidates: a Python loop here cost a second per plan with 2,000 candidates.
    live = np.nonzero(rem_units > 0)[0]
    if live.size == 0:
        empty = np.zeros(0, dtype=np.float64)
        return np.zeros(0, dtype=np.int64), empty, empty
    r = rem_units[live].astype(np.float64)
    cap = capacity[live]
    cuts = cap[:, None] * scale * np.arange(1, LOAD_SEGMENTS)[None, :] / LOAD_SEGMENTS - current[live, None] * scale
    inside = (cuts > 0) & (cuts < r[:, None])
    # Points outside (0, r) collapse onto r, so they add only zero-width pieces, dropped below.
    lo = np.where(inside, np.floor(cuts), r[:, None])
    hi = np.where(inside, np.ceil(cuts), r[:, None])
    points = np.sort(np.concatenate([np.zeros((live.size, 1)), r[:, None], lo, hi], axis=1), axis=1)
    loads = current[live, None] + points / scale
    cost = _load_cost_vec(loads, np.broadcast_to(cap[:, None], loads.shape), config)
    width = np.diff(points, axis=1)
    keep = width > 0
    slope = np.divide(np.diff(cost, axis=1), width, out=np.zeros_like(width), where=keep)
    seg_j = np.broadcast_to(live[:, None], width.shape)[keep].astype(np.int64)
    return seg_j, width[keep], slope[keep]


def _build(clients: Sequence[ClientSpec], candidates: Sequence[CandidateSpec], config: SolverConfig) -> _Problem:
    _validate(clients, candidates, config)
    scale = _unit_scale(config.load_points.values())
    cands = sorted(candidates, key=lambda c: c.id)
    n_j = len(cands)
    cand_index = {c.id: j for j, c in enumerate(cands)}
    capacity = np.asarray([c.capacity for c in cands], dtype=np.float64)
    current = np.asarray([c.current_load for c in cands], dtype=np.float64)
    rem_units = np.maximum(np.floor((capacity - current + CAPACITY_EPS) * scale), 0.0).astype(np.int64)
    pool = np.asarray([c.pool_rank for c in cands], dtype=np.float64)

    ind_index, skill_mis = _vocab_mismatch(
        [c.industry for c in clients], [c.skills for c in cands], config.weight_skill
    )
    reg_index, region_mis = _vocab_mismatch(
        [c.region for c in clients], [c.regions for c in cands], config.weight_region
    )
    lang_index, lang_mis = _vocab_mismatch(
        [c.language for c in clients], [c.languages for c in cands], config.weight_language
    )

    group_of: dict[tuple[str, int, int, int, int, float], int] = {}
    class_of: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    for i, client in enumerate(clients):
        gkey = (
            client.tier,
            ind_index[client.industry],
            reg_index[client.region],
            lang_index[client.language],
            client.sensitivity,
            float(client.risk_weight),
        )
        g = group_of.setdefault(gkey, len(group_of))
        team: tuple[int, ...] = ()
        if client.team_member_ids:
            team = tuple(sorted(cand_index[m] for m in client.team_member_ids if m in cand_index))
        class_of.setdefault((g, team), []).append(i)

    gkeys = list(group_of)
    ckeys = sorted(class_of)
    c_group = np.asarray([k[0] for k in ckeys], dtype=np.int64)
    team_c: list[int] = []
    team_j: list[int] = []
    for c, (_, team) in enumerate(ckeys):
        for j in team:
            team_c.append(c)
            team_j.append(j)
    tc = np.asarray(team_c, dtype=np.int64)
    tj = np.asarray(team_j, dtype=np.int64)
    seg_j, seg_width, seg_slope = _segments(current, capacity, rem_units, scale, config)
    g_size = np.asarray([round(config.load_points[k[0]] * scale) for k in gkeys], dtype=np.int64)
    sizes, g_first = _unique(g_size)
    after = current[None, :] + sizes[:, None] / scale
    cap = np.broadcast_to(capacity[None, :], after.shape)
    now = np.broadcast_to(current[None, :], after.shape)
    first_cost = _load_cost_vec(after, cap, config) - _load_cost_vec(now, cap, config)
    first_cost[sizes[:, None] > rem_units[None, :]] = 0.0
    return _Problem(
        config=config,
        clients=clients,
        cands=cands,
        scale=scale,
        cand_ids=np.asarray([c.id for c in cands], dtype=np.int64),
        seniority=np.asarray([c.seniority for c in cands], dtype=np.int64),
        clearance=np.asarray([c.clearance for c in cands], dtype=np.int64),
        capacity=capacity,
        current=current,
        rem_units=rem_units,
        const_cost=config.weight_continuity + config.weight_pool * pool,
        skill_mis=skill_mis,
        region_mis=region_mis,
        lang_mis=lang_mis,
        g_ind=np.asarray([k[1] for k in gkeys], dtype=np.int64),
        g_reg=np.asarray([k[2] for k in gkeys], dtype=np.int64),
        g_lang=np.asarray([k[3] for k in gkeys], dtype=np.int64),
        g_minsen=np.asarray([config.min_seniority[k[0]] for k in gkeys], dtype=np.int64),
        g_sens=np.asarray([k[4] for k in gkeys], dtype=np.int64),
        g_size=g_size,
        g_points=np.asarray([config.load_points[k[0]] for k in gkeys], dtype=np.float64),
        g_risk=np.asarray([k[5] for k in gkeys], dtype=np.float64),
        c_group=c_group,
        c_count=np.asarray([len(class_of[k]) for k in ckeys], dtype=np.int64),
        c_members=[class_of[k] for k in ckeys],
        c_start=np.searchsorted(c_group, np.arange(len(gkeys) + 1)).astype(np.int64),
        team_c=tc,
        team_j=tj,
        team_keys=tc * max(n_j, 1) + tj,
        seg_j=seg_j,
        seg_width=seg_width,
        seg_slope=seg_slope,
        first_cost=first_cost,
        g_first=g_first,
    )


def _group_costs(p: _Problem, g0: int, g1: int, weighted: bool) -> FloatArray:
    """Fit cost of groups g0:g1 against every candidate; inf where a client can never go."""
    base = (
        p.skill_mis[p.g_ind[g0:g1]] + p.region_mis[p.g_reg[g0:g1]] + p.lang_mis[p.g_lang[g0:g1]] + p.const_cost[None, :]
    )
    if weighted:
        base *= p.g_risk[g0:g1, None]
    feasible = (
        (p.seniority[None, :] >= p.g_minsen[g0:g1, None])
        & (p.clearance[None, :] >= p.g_sens[g0:g1, None])
        & (p.rem_units[None, :] >= p.g_size[g0:g1, None])
    )
    base[~feasible] = np.inf
    return base


def _group_chunks(p: _Problem) -> list[tuple[int, int]]:
    """Group ranges whose class x candidate block stays within memory budget."""
    per_chunk = max(1, _CHUNK_ELEMENTS // max(p.n_cands, 1))
    chunks: list[tuple[int, int]] = []
    n_groups = len(p.g_ind)
    g0 = 0
    while g0 < n_groups:
        g1 = g0 + 1
        while g1 < n_groups and p.c_start[g1 + 1] - p.c_start[g0] <= per_chunk:
            g1 += 1
        chunks.append((g0, g1))
        g0 = g1
    return chunks


def _team_range(p: _Problem, c0: int, c1: int) -> tuple[int, int]:
    lo, hi = np.searchsorted(p.team_c, [c0, c1])
    return int(lo), int(hi)


def _class_block(p: _Problem, g0: int, g1: int, weighted: bool) -> tuple[int, int, FloatArray]:
    """Costs for all classes of groups g0:g1, team discounts applied."""
    gcost = _group_costs(p, g0, g1, weighted)
    c0, c1 = int(p.c_start[g0]), int(p.c_start[g1])
    block = gcost[p.c_group[c0:c1] - g0]
    t0, t1 = _team_range(p, c0, c1)
    if t1 > t0:
        rows = p.team_c[t0:t1] - c0
        cols = p.team_j[t0:t1]
        discount = p.config.weight_continuity * (p.g_risk[p.c_group[p.team_c[t0:t1]]] if weighted else 1.0)
        block[rows, cols] -= discount
    return c0, c1, block


def _pair_ub(p: _Problem, cc: IntArray, jj: IntArray) -> IntArray:
    size = p.g_size[p.c_group[cc]]
    return np.asarray(np.minimum(p.c_count[cc], p.rem_units[jj] // size), dtype=np.int64)


def _pair_cost(p: _Problem, cc: IntArray, jj: IntArray, weighted: bool) -> FloatArray:
    g = p.c_group[cc]
    cost = p.skill_mis[p.g_ind[g], jj] + p.region_mis[p.g_reg[g], jj] + p.lang_mis[p.g_lang[g], jj] + p.const_cost[jj]
    on_team = np.isin(cc * p.n_cands + jj, p.team_keys)
    cost = cost - p.config.weight_continuity * on_team
    if weighted:
        cost = cost * p.g_risk[g]
    return np.asarray(cost, dtype=np.float64)


def _first_cost(p: _Problem, cc: IntArray, jj: IntArray) -> FloatArray:
    """Load cost of one client of each pair's class alone at the pair's candidate."""
    return np.asarray(p.first_cost[p.g_first[p.c_group[cc]], jj], dtype=np.float64)


def _load_cost_vec(loads: FloatArray, capacity: FloatArray, config: SolverConfig) -> FloatArray:
    """Vectorised load_cost over candidates (same formula, same extension past capacity)."""
    slopes = _segment_slopes(config)
    width = capacity / LOAD_SEGMENTS
    total = np.zeros_like(loads)
    for k in range(LOAD_SEGMENTS):
        lower = k * width
        amount = loads - lower
        if k < LOAD_SEGMENTS - 1:
            amount = np.minimum(amount, width)
        total += slopes[k] * np.maximum(amount, 0.0)
    return np.where(capacity > 0, total, 0.0)


def _class_row(p: _Problem, c: int) -> FloatArray:
    """Weighted fit cost of one class against every candidate (inf where never allowed)."""
    g = int(p.c_group[c])
    row: FloatArray = _group_costs(p, g, g + 1, weighted=True)[0].copy()
    t0, t1 = _team_range(p, c, c + 1)
    if t1 > t0:
        row[p.team_j[t0:t1]] -= p.config.weight_continuity * p.g_risk[g]
    return row
