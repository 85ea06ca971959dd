"""Incumbents: greedy placement, rounding of the LP and a local search, priced exactly.

See the package docstring (``app.transfer.solver``) for the method."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import numpy as np

from app.transfer.solver.core import (
    FloatArray,
    IntArray,
    _class_block,
    _class_row,
    _group_chunks,
    _load_cost_vec,
    _pair_cost,
    _Problem,
    _unique,
)
from app.transfer.solver.lp import (
    _Model,
)


@dataclass
class _Result:
    cc: IntArray
    jj: IntArray
    x: IntArray
    unassigned: IntArray
    total: float
    added_units: IntArray


def _result(p: _Problem, cc: IntArray, jj: IntArray, x: IntArray) -> _Result:
    """Check an integer class-level solution and price it with the exact objective."""
    n_c, n_j = p.n_classes, p.n_cands
    keep = x > 0
    keys, inverse = _unique(cc[keep] * n_j + jj[keep])
    counts = np.bincount(inverse, weights=x[keep], minlength=keys.size).astype(np.int64)
    cc, jj = keys // n_j, keys % n_j
    unassigned = p.c_count - np.bincount(cc, weights=counts, minlength=n_c).astype(np.int64)
    sizes = p.g_size[p.c_group[cc]]
    added = np.bincount(jj, weights=counts * sizes, minlength=n_j).astype(np.int64)
    if np.any(unassigned < 0) or np.any(added > p.rem_units):
        raise RuntimeError("internal error: solution breaks a class count or a capacity")
    fit = float(np.dot(counts, _pair_cost(p, cc, jj, weighted=True)))
    after = p.current + added / p.scale
    load = float(np.sum(_load_cost_vec(after, p.capacity, p.config) - _load_cost_vec(p.current, p.capacity, p.config)))
    total = fit + load + p.config.unassigned_penalty * float(unassigned.sum())
    return _Result(cc, jj, counts, unassigned, total, added)


class _LoadTable:
    """Load cost at every integer load unit, so heuristics price a move in O(1)."""

    _MAX_CELLS: Final = 20_000_000

    def __init__(self, p: _Problem) -> None:
        self.p = p
        width = int(p.rem_units.max(initial=0)) + 2
        self.table: FloatArray | None = None
        if width * p.n_cands <= self._MAX_CELLS:
            # Row j: the cumulative cost of its load units (a loop over candidates cost 0.1 s at 2,000 of them).
            units = p.seg_width.astype(np.int64)
            owner = np.repeat(p.seg_j, units)
            first = np.searchsorted(owner, np.arange(p.n_cands))
            per_unit = np.zeros((p.n_cands, width))
            per_unit[owner, np.arange(owner.size) - first[owner] + 1] = np.repeat(p.seg_slope, units)
            table = np.cumsum(per_unit, axis=1)
            table[np.arange(width)[None, :] > p.rem_units[:, None]] = np.inf
            self.table = table
        self.rows = np.arange(p.n_cands)

    def marginal(self, loads: IntArray, size: int) -> FloatArray:
        """Cost of adding ``size`` units to each candidate; inf where it does not fit."""
        p = self.p
        if self.table is not None:
            last = self.table.shape[1] - 1
            ahead = self.table[self.rows, np.minimum(loads + size, last)]
            return np.asarray(ahead - self.table[self.rows, loads], dtype=np.float64)
        now = p.current + loads / p.scale
        cost = _load_cost_vec(now + size / p.scale, p.capacity, p.config) - _load_cost_vec(now, p.capacity, p.config)
        return np.where(loads + size <= p.rem_units, cost, np.inf)


def _place(
    p: _Problem,
    table: _LoadTable,
    loads: IntArray,
    order: list[tuple[int, int]],
) -> tuple[IntArray, IntArray]:
    """Greedy placement of (class, how many) in the given order, cheapest total cost first."""
    out_c: list[int] = []
    out_j: list[int] = []
    penalty = p.config.unassigned_penalty
    for c, how_many in order:
        row = _class_row(p, c)
        if not np.isfinite(row).any():
            continue
        size = int(p.g_size[p.c_group[c]])
        for _ in range(how_many):
            total = row + table.marginal(loads, size)
            j = int(np.argmin(total))
            if not total[j] < penalty:
                break
            loads[j] += size
            out_c.append(c)
            out_j.append(j)
    return np.asarray(out_c, dtype=np.int64), np.asarray(out_j, dtype=np.int64)


def _priority(p: _Problem, classes: IntArray) -> IntArray:
    """Big and risky clients first: they are the hardest to fit later."""
    g = p.c_group[classes]
    return classes[np.lexsort((classes, -p.g_risk[g], -p.g_size[g]))]


def _greedy_order(p: _Problem) -> list[tuple[int, int]]:
    """Riskiest clients first (then largest, then input order): the baseline's rule."""
    classes = np.arange(p.n_classes)
    g = p.c_group[classes]
    first = np.asarray([members[0] for members in p.c_members], dtype=np.int64)
    order = classes[np.lexsort((first, -p.g_size[g], -p.g_risk[g]))]
    return [(int(c), int(p.c_count[c])) for c in order]


def _complete(p: _Problem, table: _LoadTable, cc: IntArray, jj: IntArray, x: IntArray) -> _Result:
    """An integer partial solution plus a greedy placement (riskiest first) of the clients it leaves out."""
    sizes = p.g_size[p.c_group[cc]]
    loads = np.bincount(jj, weights=x * sizes, minlength=p.n_cands).astype(np.int64)
    left = p.c_count - np.bincount(cc, weights=x, minlength=p.n_classes).astype(np.int64)
    todo = _priority(p, np.nonzero(left > 0)[0])
    extra_c, extra_j = _place(p, table, loads, [(int(c), int(left[c])) for c in todo])
    return _result(
        p,
        np.concatenate([cc, extra_c]),
        np.concatenate([jj, extra_j]),
        np.concatenate([x, np.ones(extra_c.size, dtype=np.int64)]),
    )


def _round(
    p: _Problem,
    model: _Model,
    values: FloatArray,
    table: _LoadTable,
    deadline: float,
    stats: dict[str, float] | None = None,
) -> _Result:
    """Incumbent from the LP: its rounded-down part plus a greedy placement of the rest, then a local search.

    A MILP over the fractional neighbourhood (everything else fixed) used to repair the rounding: on the full-scale
    company's 100-170-client books it took 1-5 s, more than the proof it was meant to shorten; the local search
    (`_improve`) takes milliseconds and, with the superadditivity rows, starts from a rounding within ~1 of the LP.
    """
    n_x = len(model.cc)
    floor = np.floor(values[:n_x] + 1e-9).astype(np.int64)
    best = _complete(p, table, model.cc, model.jj, floor)
    n_c, n_j = p.n_classes, p.n_cands
    if n_c * n_j <= _IMPROVE_MAX_CELLS and int(p.c_count.sum()) <= _IMPROVE_MAX_ITEMS:
        return _improve(p, table, best, deadline, stats=stats)
    # A joint plan: only the clients the greedy completion placed (the LP's fractional part) move, each against
    # every other client for swaps; the rest stays as the LP put it.
    keys = model.cc * n_j + model.jj  # sorted and distinct (the master's keys)
    at = np.minimum(np.searchsorted(keys, best.cc * n_j + best.jj), max(keys.size - 1, 0))
    rounded = np.where(keys.size > 0, np.where(keys[at] == best.cc * n_j + best.jj, floor[at], 0), 0)
    return _improve(p, table, best, deadline, focus=np.maximum(best.x - rounded, 0), stats=stats)


_IMPROVE_MAX_CELLS: Final = 4_000_000
_IMPROVE_MAX_ITEMS: Final = 3_000
_IMPROVE_PASSES: Final = 50
_FOCUS_NEAR: Final = 64
_FOCUS_MAX_CELLS: Final = 24_000_000
_FOCUS_MAX_WORK: Final = 200_000_000
"""Focused local search (a joint plan's): at most this many cells, and moving clients x clients per pass; each
moving client's swap partners are the clients at its ``_FOCUS_NEAR`` best-fitting candidates (on the 500-leaver
plan: 231.08 above the bound in 5 passes, 2.2 s at load 9; with every client as partner 229.94 in 12.2 s; 256
candidates 229.94 in 3.9 s; 16 candidates 244.05)."""


def _improve(
    p: _Problem,
    table: _LoadTable,
    start: _Result,
    deadline: float,
    focus: IntArray | None = None,
    stats: dict[str, float] | None = None,
) -> _Result:
    """Best-improvement local search from ``start``: move one client (to another candidate, to or from interim)
    or swap two clients of different candidates, with the exact objective, until no move improves.

    Every client moves on books whose class x candidate cost matrix and client list are small (a single
    leaver's). With ``focus`` (per pair of ``start``, how many of its clients may move) only those and the interim
    clients move, each also tried in a swap against every placed client: the joint plans of a mass exit, where a
    full pass would be quadratic in 22,626 clients.
    """
    n_c, n_j = p.n_classes, p.n_cands
    n_items = int(p.c_count.sum())
    if table.table is None:
        return start
    if focus is None:
        if n_c * n_j > _IMPROVE_MAX_CELLS or n_items > _IMPROVE_MAX_ITEMS:
            return start
    elif n_c * n_j > _FOCUS_MAX_CELLS or int(focus.sum()) * n_items > _FOCUS_MAX_WORK or not focus.any():
        return start
    f = table.table
    width = f.shape[1]
    cost = np.empty((n_c, n_j))
    for g0, g1 in _group_chunks(p):
        c0, c1, block = _class_block(p, g0, g1, weighted=True)
        cost[c0:c1] = block
    penalty = p.config.unassigned_penalty
    item_c = np.concatenate([np.repeat(start.cc, start.x), np.repeat(np.arange(n_c), start.unassigned)])
    item_j = np.concatenate([np.repeat(start.jj, start.x), np.full(int(start.unassigned.sum()), -1)])
    size = p.g_size[p.c_group[item_c]]
    active = np.ones(item_c.size, dtype=np.bool_)
    if focus is not None:
        # The first focus[k] clients of pair k (interchangeable within it) and every interim client move.
        rank = np.arange(int(start.x.sum())) - np.repeat(np.cumsum(start.x) - start.x, start.x)
        active[: rank.size] = rank < np.repeat(focus, start.x)
    loads = start.added_units.copy()
    rows = np.arange(n_j)
    improved = False
    if stats is not None:
        stats["improve_moving"] = float(active.sum())
    for sweep in range(_IMPROVE_PASSES):
        if stats is not None:
            stats["improve_passes"] = float(sweep + 1)
        if time.perf_counter() > deadline:
            break
        moved = False
        for i in np.nonzero(active)[0].tolist():
            c, j, s = int(item_c[i]), int(item_j[i]), int(size[i])
            here = cost[c, j] + f[j, loads[j]] - f[j, loads[j] - s] if j >= 0 else penalty
            gain = cost[c] + f[rows, np.minimum(loads + s, width - 1)] - f[rows, loads]
            if j >= 0:
                gain[j] = here
            k = int(np.argmin(gain))
            target, value = (k, float(gain[k])) if gain[k] < penalty else (-1, penalty)
            if value < here - 1e-9 and target != j:
                if j >= 0:
                    loads[j] -= s
                if target >= 0:
                    loads[target] += s
                item_j[i] = target
                moved = True
        # Swaps of two assigned clients of different classes at different candidates.
        placed = np.nonzero(item_j >= 0)[0]
        pc, pj, ps = item_c[placed], item_j[placed], size[placed]
        near = focus is not None and n_j > _FOCUS_NEAR
        for a in np.nonzero(active[placed])[0].tolist():
            ca, ja, sa = int(pc[a]), int(pj[a]), int(ps[a])
            if near:
                # Partners only at the candidates that fit this client best: a swap sends it there.
                best_j = np.zeros(n_j, dtype=np.bool_)
                best_j[np.argpartition(cost[ca], _FOCUS_NEAR)[:_FOCUS_NEAR]] = True
                sub = np.nonzero(best_j[pj])[0]
                qc, qj, qs = pc[sub], pj[sub], ps[sub]
            else:
                sub, qc, qj, qs = None, pc, pj, ps
            la, lb = loads[ja], loads[qj]
            new_a = la - sa + qs
            new_b = lb - qs + sa
            ok = (qj != ja) & (qc != ca) & (new_a < width) & (new_b < width) & (new_a >= 0) & (new_b >= 0)
            if not ok.any():
                continue
            new_a = np.where(ok, new_a, 0)
            new_b = np.where(ok, new_b, 0)
            delta = (
                cost[ca, qj]
                + cost[qc, ja]
                - cost[ca, ja]
                - cost[qc, qj]
                + f[ja, new_a]
                - f[ja, la]
                + f[qj, new_b]
                - f[qj, lb]
            )
            delta = np.where(ok, delta, np.inf)
            k = int(np.argmin(delta))
            if delta[k] < -1e-9:
                b = k if sub is None else int(sub[k])
                jb, sb = int(pj[b]), int(ps[b])
                loads[ja] += sb - sa
                loads[jb] += sa - sb
                pj[a], pj[b] = jb, ja
                item_j[placed[a]], item_j[placed[b]] = jb, ja
                moved = True
        if not moved:
            break
        improved = True
    if not improved:
        return start
    keep = item_j >= 0
    found = _result(p, item_c[keep], item_j[keep], np.ones(int(keep.sum()), dtype=np.int64))
    return found if found.total < start.total else start
