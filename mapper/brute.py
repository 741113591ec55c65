"""Exhaustive search over the mapping space of :mod:`mapper.space` with the cost of :mod:`mapper.cost`.

It proves the ILP optimal on small problems. Every point of the space is visited: every cascade-level
choice (fused groups and their loop options, on-chip intermediates) and, inside it, every einsum's
config, DRAM trips and stationarity. Groups are independent given the cascade-level choice (the cost
is a sum over groups and the buffer rule is per group), so each group's points are enumerated on
their own and the best combination is assembled exactly: by the minimum for latency or energy, by
merging (latency, energy) Pareto fronts for EDP. The result is re-priced as a whole with
:func:`mapper.cost.choice_cost`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from dataflow.errors import InfeasibleError

from .cost import choice_cost, einsum_terms, group_cost
from .space import CascadeChoice, EinsumChoice, choice_order, divisors, fits, fusable, schedule_of

__all__ = ["BruteResult", "brute_force", "count_points"]


@dataclass(frozen=True)
class BruteResult:
    choice: CascadeChoice
    cost: object
    objective_value: float
    points: int


def _trip_options(es, cfg):
    ranks = es.ranks
    return [dict(zip(ranks, combo)) for combo in itertools.product(*[divisors(cfg.positions[r]) for r in ranks])]


def _singleton_points(space, name):
    es = space.einsums[name]
    for ci, cfg in enumerate(es.configs):
        for trips in _trip_options(es, cfg):
            for t in es.orders:
                yield EinsumChoice(name, ci, tuple(sorted(trips.items())), t)


def _fused_points(space, k, option):
    g = space.groups[k]
    per = []
    trips = option.trips
    for name in g.einsums:
        es = space.einsums[name]
        pts = []
        for ci, cfg in enumerate(es.configs):
            tr = {r: trips.get(r, 1) for r in es.ranks}
            if all(cfg.positions[r] % tr[r] == 0 for r in es.ranks) and fusable(es, cfg, g.loop_ranks):
                pts.append(EinsumChoice(name, ci, tuple(sorted(tr.items())), None))
        per.append(pts)
    return itertools.product(*per)


def count_points(space) -> int:
    """How many einsum-level points the search visits (for the tests' report)."""
    n = 0
    for name in space.order:
        n += sum(1 for _ in _singleton_points(space, name))
    return n


def _pareto(points):
    """Keep the (latency, energy, payload) points no other point beats in both."""
    points = sorted(points, key=lambda p: (p[0], p[1]))
    out, best_e = [], float("inf")
    for p in points:
        if not out or p[1] < best_e - 1e-9 * max(1.0, abs(best_e)):
            out.append(p)
            best_e = p[1]
    return out


def _group_front(space, g, gi, options, fused, fused_idx, onchip, group_of, objective):
    """Every point of one group: ``([(latency, energy, choices)], points visited)`` reduced to the
    best point (latency, energy) or the Pareto front (EDP)."""
    cascade, arch = space.cascade, space.arch
    pts = []
    visited = 0
    if gi in fused_idx:
        combos = _fused_points(space, space.group_of(g[0]), options[gi])
    else:
        combos = ([p] for p in _singleton_points(space, g[0]))
    for combo in combos:
        visited += 1
        terms = {}
        for c in combo:
            es = space.einsums[c.name]
            order = choice_order(space, c, options.get(gi))
            terms[c.name] = einsum_terms(es, es.configs[c.config], dict(c.trips), order)
        if not fits(space, CascadeChoice(tuple(combo), fused, onchip), terms, only=g):
            continue
        gc = group_cost(cascade, arch, terms, g, group_of, onchip, gi in fused_idx)
        pts.append((gc.latency, gc.model_energy, tuple(combo)))
    if pts:
        if objective == "latency":
            pts = [min(pts, key=lambda p: (p[0], p[1]))]
        elif objective == "energy":
            pts = [min(pts, key=lambda p: (p[1], p[0]))]
        else:
            pts = _pareto(pts)
    return pts, visited


def brute_force(space, objective: str = "latency") -> BruteResult:
    """The optimum of ``objective`` (``latency``, ``energy`` or ``edp``) over the whole space."""
    cascade, arch = space.cascade, space.arch
    fused_lists = [[None] + list(range(len(g.options))) for g in space.groups]
    onchip_sets = [frozenset(s) for n in range(len(space.onchip_candidates) + 1)
                   for s in itertools.combinations(space.onchip_candidates, n)]
    best = None
    visited = 0
    cache = {}
    for fused_combo in itertools.product(*fused_lists) if fused_lists else [()]:
        fused = tuple((k, o) for k, o in enumerate(fused_combo) if o is not None)
        for onchip in onchip_sets:
            probe = CascadeChoice((), fused, onchip)
            groups, fused_idx, options = schedule_of(space, probe)
            group_of = {n: i for i, g in enumerate(groups) for n in g}
            fronts = []
            feasible = True
            for gi, g in enumerate(groups):
                relevant = frozenset(x for x in onchip if any(n in space.live[x] for n in g)
                                     or any(x == u.tensor for n in g for u in space.einsums[n].tensors))
                key = (tuple(g), options.get(gi), relevant, objective)
                pts = cache.get(key)
                if pts is None:
                    pts, n_points = _group_front(space, g, gi, options, fused, fused_idx, relevant, group_of,
                                                 objective)
                    visited += n_points
                    cache[key] = pts
                if not pts:
                    feasible = False
                    break
                fronts.append(pts)
            if not feasible:
                continue
            acc = [(0.0, 0.0, ())]
            for front in fronts:
                merged = [(a[0] + b[0], a[1] + b[1], a[2] + b[2]) for a in acc for b in front]
                acc = _pareto(merged) if objective == "edp" else merged
            for lat, en, combo in acc:
                value = {"latency": lat, "energy": en, "edp": lat * en}[objective]
                if best is None or value < best[0] - 1e-9 * abs(value):
                    order = {n: i for i, n in enumerate(space.order)}
                    einsums = tuple(sorted(combo, key=lambda c: order[c.name]))
                    best = (value, CascadeChoice(einsums, fused, onchip))
    if best is None:
        raise InfeasibleError(f"no point of the mapping space of {cascade.name} fits {arch.name}")
    cost = choice_cost(space, best[1])
    return BruteResult(best[1], cost, cost.objective(objective), visited)
