"""Exact successor assignment for the clients of a departing account manager.

Why a whole-portfolio optimisation: assigning clients one at a time lets the
first clients grab the best successors and strands later (often riskier) ones
with poor fits or no capacity.  We minimise, under hard constraints,

    sum over assigned clients   risk_weight * fit_cost(client, successor)
  + sum over candidates         load_cost(load after) - load_cost(current load)
  + unassigned_penalty * number of clients left to the interim owner

Hard constraints: seniority >= the tier minimum, clearance >= sensitivity and
``current_load + added load <= capacity`` for every candidate.

``load_cost`` is convex piecewise linear in utilisation: ``LOAD_SEGMENTS``
segments of 10 % of capacity; a load point placed in segment ``k`` (0-based)
costs ``weight_load * (k + 1) / LOAD_SEGMENTS``.  Existing load is not charged.

Method (exact, not a heuristic)
-------------------------------
Clients differ in load size (5, 3, 1, 0.5 points), so min-cost flow would split
them.  Instead:

1. *Client classes.*  Clients with identical (tier, industry, region, language,
   sensitivity, team members among the candidates, risk weight) are
   interchangeable: they have the same cost and eligibility everywhere.  A
   class becomes one integer variable ``x[class, candidate]`` (how many of its
   clients go there) plus ``u[class]`` (how many go to interim).
2. *Integer load units.*  Load points are scaled by the smallest ``q`` that makes
   every tier load an integer (``q = 2`` by default), so capacities become
   integers ``floor((capacity - current_load) * q)``.
3. *Convex load cost* via bounded continuous segment variables per candidate,
   with breakpoints at integer load units (the cost is interpolated between
   integer loads, which is exact because loads only take integer unit values,
   and it keeps the LP from stopping a candidate mid-unit).  Convexity makes
   any optimum fill segments in order, so the linear model is exact.
   *Superadditivity rows* tighten it: a convex load cost with ``f(0) = 0``
   has ``f(a + b) >= f(a) + f(b)``, so for every modelled candidate
   ``sum x[class, j] * f_j(size) <= load cost of j`` holds for every integer
   plan.  The LP without them spreads fractions of 5- and 3-point clients
   over the cheap first load units of many idle candidates; on the full-scale
   company's 100-170-client books that was a 3-7 LP-to-integer gap on ~1,000,
   with the rows 0.2-0.5 (their multipliers ``gamma >= 0`` enter every reduced
   cost as ``+ gamma[j] * f_j(size)`` and the Lagrangian bound's segment terms
   as ``slope * (1 - gamma[j])``).
4. *Pricing and reduced-cost fixing* keep the MILP small.  Even with classes,
   ``classes x candidates`` may be tens of millions of pairs.  We
   (a) solve the LP relaxation by column generation: the LP on a subset of
   pairs, then a vectorised pass over *all* pairs adds those with negative
   reduced cost ``d = cost - alpha[class] - size * beta[candidate]`` until
   none is left;
   (b) compute a Lagrangian lower bound ``L`` from the duals ourselves, over
   every pair (valid for any multipliers, so HiGHS tolerances cannot make it
   optimistic);
   (c) build an incumbent ``z``: round the LP down, place the clients left
   over greedily, then a local search (move one client, swap two) with the
   exact objective: every client moves on single-leaver-sized books; on
   larger ones (a joint plan) only the clients the greedy placed (the LP's
   fractional part), each tried in a move and in a swap with every client;
   (d) any solution using a pair ``(class, candidate)`` costs at least
   ``L + d``, so only pairs with ``d <= z - L`` can beat ``z``.  One MILP
   (HiGHS, ``mip_rel_gap=0``) over exactly those pairs gives the optimum over
   *all* pairs, not over a heuristic shortlist.  It runs with ``z`` (plus a
   1e-9 relative tolerance) as HiGHS's objective cutoff and without HiGHS's
   primal heuristics: it only has to prove, and its sub-MIP heuristics took
   most of its time (a 54-client book: 7 s with them, 1 s without).
5. Class counts are expanded back to clients deterministically (input order,
   cheapest successor first); clients within a class are interchangeable.

Cost scales with the number of *classes* (not clients) times candidates, and
the final MILP is the expensive step.  Continuous, per-client risk weights
make every client its own class; bucket them upstream (risk bands) for large
books.  Measured with bench/solver_bench.py on the shared 2-core dev box
(load average ~4): 5,000 clients x 200 candidates (2,145 classes) solve to
proven optimality in 11-18 s, most of it the final HiGHS MILP proving a
~0.3 LP-to-integer gap.  The 100,000 x 2,000 stress book (15,307 classes)
does *not* prove optimality in seconds: the column-generation LP alone takes
minutes.  Use ``time_limit`` there.  Measured on that book (one run, load ~4):
column generation converges after 8 rounds in ~120 s (restricted masters of
190k-320k columns, 3-23 s each with dual simplex); LP optimum 530,605.94, the
rounded incumbent 530,688.3 (greedy 537,929.1).  The LP is massively
degenerate: ~700,000 pairs have reduced cost exactly 0 at the optimal duals,
and 1,607 of the 2,000 candidate prices equal minus the slope of their last
load unit.  So reduced-cost fixing cannot shrink the proof MILP below ~700k
pairs unless an incumbent meets the LP bound; that, not the LP, is what
stands between this method and a proof at this scale.

The joint solve of a 500-leaver mass exit is ~22,600 clients x 2,000
candidates (``make_instance(22_600, 2_000, seed)``, ~5,850 classes).  There,
column generation stops after 5-7 rounds (restricted masters of 40k-90k
columns, 0.2-2.4 s each with HiGHS's default dual simplex) in 8-15 s on the
shared box; the rounded-down LP plus greedy placement lands within ~35
(0.035 %) of the LP bound (greedy: ~700 above it).  Millions of pairs have a
reduced cost inside that gap, so the proof MILP is skipped and the plan comes
back ``feasible`` with that certified gap, in ~9-18 s overall.  Tried and
dropped: interior point for the masters (3.5-5.4 s per master instead of
1.5-2.2 s with or without crossover; at 100k x 2,000, 47-52 s instead of 27 s
for the final 427k-column master), dropping columns with large reduced cost
from the master (no faster), seeding the first master with the
best pairs at last-unit prices (larger masters, slower rounds), 4 or 16
columns per class and round instead of 8, and a MILP over the leftover
clients of the rounding (2 s for a gap of 28 instead of 35).  The 100,000 x
2,000 book, run to the end with the same rules: 7 rounds, ~92 s of column
generation (its last masters, ~300k columns, take 14-23 s each), cost
530,674.0 (greedy 537,929.1) within 68 (0.013 %) of the bound 530,605.9, ~98 s
in all; a 30 s budget cuts it in its fourth master and certifies only the
last-unit-price bound (gap ~13 %).  The company's own 500-leaver plan
(bench/plan_speed.py: 22,626 clients x 2,000 candidates, 5,276 classes) is
harder than that synthetic book: column generation converges in 4 rounds in
7-22 s depending on the box's load (masters of 60k-100k columns).  The LP
leaves 770 clients fractional (1,567 fractional pairs); rounded down and
placed greedily they end 380 (0.238 %) above the bound 159,712.14.  The
focused local search (5 passes over those 770 clients, each swapped only with
the clients at its 64 best-fitting candidates: ~2 s at load 9) brings that to
231.08 (0.145 %); the proof skipped (2.9M pairs inside the gap), so the 0.1 %
goal is still missed.  The superadditivity rows would lift
the bound by 0.57 only (159,712.71), so the rest is the incumbent and the
integrality gap.  Tried there and dropped: every client at a candidate the LP
splits also moving (13,983 clients, a worse local optimum, 234.5, in 10x the
time), every client moving (204.1 in ~10 s), and a reduced-cost threshold of
half the gap for a first proof MILP on single books (fewer pairs, but 0.9-2.3x
slower proofs as often as faster ones: HiGHS's branching, not the pair count,
sets the time).

Single leavers, measured with bench/plan_speed.py (every one of the 2,233
employees owning clients in the full-scale synthetic company, each planned
alone against its 2,499 candidates exactly as ``compute_plan`` builds the
instance; 3 sweeps on the shared 2-core box): p50 0.18 s, p95 0.59 s, max
11.3 s, all 2,233 proved optimal (HiGHS ``mip_rel_gap=0`` with its default
1e-6 absolute gap, or our bound meeting the incumbent within 1e-9 relative).
Books of 100-255 clients: p50 0.62 s, p95 2.1 s; before these changes the
same books took 5-30 s (several ended ``feasible`` at the 30 s limit).  What
is left is HiGHS closing the last 0.2-0.5 of the gap by branching (a 113-client
book: 246 nodes, 6-15 s); tried on it without gain: presolve off, symmetry
detection off, primal simplex, and a Lagrangian bound with each candidate's
exact integer knapsack (dynamic programming over its load units) at the LP's
multipliers (it closed 0.2-2.2 of a 1.3-7 gap without the superadditivity
rows, less than the rows do; its optimum, a Dantzig-Wolfe master over
candidate patterns, came within 0.1 of the integer optimum on a small book but
took 38 column-generation rounds and 11 s).

``SolverConfig.time_limit`` (default ``None``: run to proven optimality) is a
wall-clock budget checked between phases (a pricing pass, a greedy placement
or the final expansion is not interrupted, so very large books overrun it).
When it runs out, the best assignment found so far is returned with
``Solution.status == "feasible"`` (never ``"optimal"``), and
``Solution.stats["lower_bound"]`` / ``["gap"]`` certify how far from optimal it
can be at most.  Any plan not proven optimal (the budget ran out, or the
proof MILP was skipped as too wide) is the better of the best assignment found
and the riskiest-first greedy placement used by ``greedy()``, so it is never
worse than that baseline.
"""

from __future__ import annotations

from app.transfer.solver.core import (
    _CG_GAP as _CG_GAP,
)
from app.transfer.solver.core import (
    _CG_MAX_ROUNDS as _CG_MAX_ROUNDS,
)
from app.transfer.solver.core import (
    _CG_PER_CLASS as _CG_PER_CLASS,
)
from app.transfer.solver.core import (
    _CHUNK_ELEMENTS as _CHUNK_ELEMENTS,
)
from app.transfer.solver.core import (
    _INIT_MIN_COLUMNS as _INIT_MIN_COLUMNS,
)
from app.transfer.solver.core import (
    _INIT_PARTITION as _INIT_PARTITION,
)
from app.transfer.solver.core import (
    _MAX_UNIT_DENOMINATOR as _MAX_UNIT_DENOMINATOR,
)
from app.transfer.solver.core import (
    _SUPERADDITIVE_MAX_CELLS as _SUPERADDITIVE_MAX_CELLS,
)
from app.transfer.solver.core import (
    CAPACITY_EPS as CAPACITY_EPS,
)
from app.transfer.solver.core import (
    DEFAULT_CONFIG as DEFAULT_CONFIG,
)
from app.transfer.solver.core import (
    LOAD_SEGMENTS as LOAD_SEGMENTS,
)
from app.transfer.solver.core import (
    REASON_NO_CAPACITY as REASON_NO_CAPACITY,
)
from app.transfer.solver.core import (
    REASON_NO_ELIGIBLE as REASON_NO_ELIGIBLE,
)
from app.transfer.solver.core import (
    REASON_PENALTY as REASON_PENALTY,
)
from app.transfer.solver.core import (
    Assignment as Assignment,
)
from app.transfer.solver.core import (
    BoolArray as BoolArray,
)
from app.transfer.solver.core import (
    CandidateSpec as CandidateSpec,
)
from app.transfer.solver.core import (
    ClientSpec as ClientSpec,
)
from app.transfer.solver.core import (
    CostBreakdown as CostBreakdown,
)
from app.transfer.solver.core import (
    FloatArray as FloatArray,
)
from app.transfer.solver.core import (
    IntArray as IntArray,
)
from app.transfer.solver.core import (
    Solution as Solution,
)
from app.transfer.solver.core import (
    SolverConfig as SolverConfig,
)
from app.transfer.solver.core import (
    Tier as Tier,
)
from app.transfer.solver.core import (
    _build as _build,
)
from app.transfer.solver.core import (
    _class_block as _class_block,
)
from app.transfer.solver.core import (
    _class_row as _class_row,
)
from app.transfer.solver.core import (
    _default_load_points as _default_load_points,
)
from app.transfer.solver.core import (
    _default_min_seniority as _default_min_seniority,
)
from app.transfer.solver.core import (
    _distinct as _distinct,
)
from app.transfer.solver.core import (
    _finite_non_negative as _finite_non_negative,
)
from app.transfer.solver.core import (
    _first_cost as _first_cost,
)
from app.transfer.solver.core import (
    _fits as _fits,
)
from app.transfer.solver.core import (
    _group_chunks as _group_chunks,
)
from app.transfer.solver.core import (
    _group_costs as _group_costs,
)
from app.transfer.solver.core import (
    _load_cost_vec as _load_cost_vec,
)
from app.transfer.solver.core import (
    _pair_cost as _pair_cost,
)
from app.transfer.solver.core import (
    _pair_ub as _pair_ub,
)
from app.transfer.solver.core import (
    _Problem as _Problem,
)
from app.transfer.solver.core import (
    _segment_slopes as _segment_slopes,
)
from app.transfer.solver.core import (
    _segments as _segments,
)
from app.transfer.solver.core import (
    _team_range as _team_range,
)
from app.transfer.solver.core import (
    _unique as _unique,
)
from app.transfer.solver.core import (
    _unit_scale as _unit_scale,
)
from app.transfer.solver.core import (
    _validate as _validate,
)
from app.transfer.solver.core import (
    _vocab_mismatch as _vocab_mismatch,
)
from app.transfer.solver.core import (
    eligible as eligible,
)
from app.transfer.solver.core import (
    fit_cost as fit_cost,
)
from app.transfer.solver.core import (
    load_cost as load_cost,
)
from app.transfer.solver.core import (
    objective as objective,
)
from app.transfer.solver.heuristics import (
    _FOCUS_MAX_CELLS as _FOCUS_MAX_CELLS,
)
from app.transfer.solver.heuristics import (
    _FOCUS_MAX_WORK as _FOCUS_MAX_WORK,
)
from app.transfer.solver.heuristics import (
    _FOCUS_NEAR as _FOCUS_NEAR,
)
from app.transfer.solver.heuristics import (
    _IMPROVE_MAX_CELLS as _IMPROVE_MAX_CELLS,
)
from app.transfer.solver.heuristics import (
    _IMPROVE_MAX_ITEMS as _IMPROVE_MAX_ITEMS,
)
from app.transfer.solver.heuristics import (
    _IMPROVE_PASSES as _IMPROVE_PASSES,
)
from app.transfer.solver.heuristics import (
    _complete as _complete,
)
from app.transfer.solver.heuristics import (
    _greedy_order as _greedy_order,
)
from app.transfer.solver.heuristics import (
    _improve as _improve,
)
from app.transfer.solver.heuristics import (
    _LoadTable as _LoadTable,
)
from app.transfer.solver.heuristics import (
    _place as _place,
)
from app.transfer.solver.heuristics import (
    _priority as _priority,
)
from app.transfer.solver.heuristics import (
    _Result as _Result,
)
from app.transfer.solver.heuristics import (
    _result as _result,
)
from app.transfer.solver.heuristics import (
    _round as _round,
)
from app.transfer.solver.lp import (
    _NO_HEURISTICS as _NO_HEURISTICS,
)
from app.transfer.solver.lp import (
    _candidate_prices as _candidate_prices,
)
from app.transfer.solver.lp import (
    _full_price_bound as _full_price_bound,
)
from app.transfer.solver.lp import (
    _initial_columns as _initial_columns,
)
from app.transfer.solver.lp import (
    _lagrangian_bound as _lagrangian_bound,
)
from app.transfer.solver.lp import (
    _Model as _Model,
)
from app.transfer.solver.lp import (
    _model as _model,
)
from app.transfer.solver.lp import (
    _price as _price,
)
from app.transfer.solver.lp import (
    _solve_lp as _solve_lp,
)
from app.transfer.solver.lp import (
    _solve_milp as _solve_milp,
)
from app.transfer.solver.search import (
    _assemble as _assemble,
)
from app.transfer.solver.search import (
    _optimise as _optimise,
)
from app.transfer.solver.search import (
    _runner_up_table as _runner_up_table,
)
from app.transfer.solver.search import (
    _search as _search,
)
from app.transfer.solver.search import (
    greedy as greedy,
)
from app.transfer.solver.search import (
    solve as solve,
)
