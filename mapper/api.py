"""``map_cascade``: the ILP mapper's entry point (``einsynth map`` calls it).

Build the space (:mod:`mapper.space`), build the ILP (:mod:`mapper.ilp`), solve it
(:mod:`mapper.solver`), decode the solution, and price the decoded mapping with the mapper's
analytical cost (:mod:`mapper.cost`).

EDP is not linear (a product of two sums), so it is handled by the ε-constraint method: the latency
optimum and the energy optimum bound the Pareto front, then "minimize energy subject to latency <
the last point's latency" walks the front from the energy end; the EDP optimum lies on it, so the
walk is exact when it finishes (it stops at ``max_pareto_points`` or the time limit, and then reports
a gap against the bound ``min latency x min energy``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from dataflow.errors import EinsynthError, InfeasibleError

from .cost import CostBreakdown, choice_cost, choice_terms, group_cost, predict
from .ilp import MappingILP, OBJECTIVES
from .space import CascadeChoice, SpaceOptions, build_space, schedule_of, to_mapping

__all__ = ["MapResult", "map_cascade", "map_space"]


@dataclass(frozen=True)
class MapResult:
    """The mapper's answer: the ``mapping``, its ``predicted`` cost breakdown, the objective's value,
    the solver's relative ``gap`` (0 = proven optimal, None = unknown) and ``solve_seconds``."""

    mapping: object
    predicted: CostBreakdown
    objective_value: float
    gap: float | None
    solve_seconds: float
    objective: str = "latency"
    solver: str = "cbc"
    status: str = "optimal"
    choice: CascadeChoice | None = field(default=None, compare=False, repr=False)
    model_size: dict = field(default_factory=dict, compare=False)
    solves: int = 1


def _load(cascade, arch):
    from dataflow import Cascade, load_cascade
    from hw.spec import load_architecture

    if not isinstance(cascade, Cascade):
        cascade = load_cascade(cascade)
    return cascade, load_architecture(arch)


def map_cascade(cascade, arch, objective="latency", solver="cbc", time_limit=None,
                options: SpaceOptions | None = None) -> MapResult:
    """Map ``cascade`` (a Cascade or a workload name) onto ``arch`` (an Architecture, preset name or
    YAML path) minimizing ``objective`` (``latency``, ``energy`` or ``edp``).

    Raises :class:`~dataflow.errors.InfeasibleError` (saying which constraint conflicts) when no
    mapping fits the architecture.
    """
    if objective not in OBJECTIVES:
        raise EinsynthError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    from .solver import SOLVERS

    if solver not in SOLVERS:
        raise EinsynthError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
                                   or time_limit <= 0):
        raise EinsynthError(f"time_limit must be a positive number of seconds, not {time_limit!r}")
    cascade, arch = _load(cascade, arch)
    space = build_space(cascade, arch, options or default_options(cascade))
    return map_space(space, objective, solver, time_limit)


def default_options(cascade) -> SpaceOptions:
    """Space bounds that keep big cascades fast: the full space for small ones, and for large ones
    spatial factors of at least a quarter of the array dimension and the 200 fastest configs."""
    big = sum(1 for _ in cascade.einsums) > 4 or max(cascade.shapes.values()) > 512
    if big:
        return SpaceOptions(min_spatial_fraction=0.25, max_configs=200, max_rf_options=16)
    return SpaceOptions()


def _solve_one(space, objective, solver, time_limit, latency_cap=None):
    from .solver import solve  # the only module that loads PuLP, imported when a solve happens

    ilp = MappingILP(space, objective, latency_cap=latency_cap)
    model = ilp.build()
    res = solve(model, solver, time_limit)
    if res.status in ("infeasible", "no_solution"):
        return ilp, model, res, None
    try:
        choice = ilp.decode(res.values)
    except StopIteration:  # an incumbent that is not integral in every one-hot: treat as none
        return ilp, model, replace(res, status="no_solution"), None
    choice = _best_orders(space, choice, objective)
    return ilp, model, res, choice


def _best_orders(space, choice, objective):
    """Re-pick each singleton's stationary tensor for the decoded trips (never worse)."""
    groups, fused, _ = schedule_of(space, choice)
    group_of = {n: i for i, g in enumerate(groups) for n in g}
    einsums = list(choice.einsums)
    key = (lambda g: (g.latency, g.model_energy)) if objective == "latency" else (lambda g: (g.model_energy, g.latency))
    for i, c in enumerate(einsums):
        if c.stationary is None:
            continue
        best = None
        for t in space.einsums[c.name].orders:
            trial = replace(c, stationary=t)
            terms = choice_terms(space, CascadeChoice((trial,), choice.fused, choice.onchip))
            gc = group_cost(space.cascade, space.arch, terms, (c.name,), group_of, choice.onchip, False)
            if best is None or key(gc) < best[0]:
                best = (key(gc), trial)
        einsums[i] = best[1]
    return CascadeChoice(tuple(einsums), choice.fused, choice.onchip)


def _explain_infeasible(space):
    """An ILP with no point although every einsum's smallest tiles fit: name the conflict."""
    names = ", ".join(space.onchip_candidates) or "none"
    return InfeasibleError(f"no mapping of {space.cascade.name} fits {space.arch.name}: every einsum's smallest "
                           f"tiles fit the {space.glb_bytes} B global buffer alone, but not together with "
                           f"the live on-chip tensors (candidates: {names})")


def map_space(space, objective="latency", solver="cbc", time_limit=None, max_pareto_points=40) -> MapResult:
    """:func:`map_cascade` on an already built space (the tests share one space with the brute force)."""
    start = time.perf_counter()
    if objective in ("latency", "energy"):
        ilp, model, res, choice = _solve_one(space, objective, solver, time_limit)
        if choice is None and res.status == "no_solution" and space.default is not None:
            return _default_result(space, objective, solver, time.perf_counter() - start, model.size)
        if choice is None:
            raise _explain_infeasible(space)
        return _result(space, choice, objective, solver, res.status, res.gap,
                       time.perf_counter() - start, model.size, 1)
    # EDP: ε-constraint walk over the (latency, energy) Pareto front
    deadline = None if time_limit is None else start + time_limit

    def left():
        return None if deadline is None else max(0.1, deadline - time.perf_counter())

    _, model, r_lat, c_lat = _solve_one(space, "latency", solver, left())
    if c_lat is None and r_lat.status == "no_solution" and space.default is not None:
        return _default_result(space, objective, solver, time.perf_counter() - start, model.size)
    if c_lat is None:
        raise _explain_infeasible(space)
    _, _, r_en, c_en = _solve_one(space, "energy", solver, left())
    points = [c_lat] + ([c_en] if c_en is not None else [])
    costs = [choice_cost(space, c) for c in points]
    l_min = r_lat.bound if r_lat.bound is not None else costs[0].objective_cycles
    e_min = r_en.bound if (r_en is not None and r_en.bound is not None) else min(c.objective_energy for c in costs)
    cap = costs[-1].objective_cycles
    solves = 2
    complete = r_lat.status == "optimal" and r_en.status == "optimal"
    while solves < max_pareto_points:
        if deadline is not None and time.perf_counter() > deadline:
            complete = False
            break
        cap = cap * (1 - 1e-9) - 1e-3  # a step above solver tolerances, so no point repeats
        if cap < costs[0].objective_cycles * (1 - 1e-9):
            break
        _, _, r, c = _solve_one(space, "energy", solver, left(), latency_cap=cap)
        solves += 1
        if c is None:
            # the front is complete only if the solver proved nothing lies below the cap
            complete = complete and r.status == "infeasible"
            break
        complete = complete and r.status == "optimal"
        cc = choice_cost(space, c)
        points.append(c)
        costs.append(cc)
        cap = min(cc.objective_cycles, cap)
        # every point left has latency >= l_min and energy >= this step's minimum: stop once their
        # product cannot beat the best EDP found (exact)
        e_low = r.bound if r.bound is not None else cc.objective_energy
        if r.status == "optimal" and l_min * e_low >= min(x.objective_edp for x in costs) * (1 - 1e-9):
            break
    else:
        complete = False
    best = min(range(len(points)), key=lambda i: costs[i].objective_edp)
    gap = 0.0 if complete else max(0.0, 1 - (l_min * e_min) / costs[best].objective_edp)
    return _result(space, points[best], "edp", solver, "optimal" if complete else "feasible", gap,
                   time.perf_counter() - start, model.size, solves)


def _default_result(space, objective, solver, seconds, size):
    """The time limit ran out before the solver found any mapping: fall back to the baseline."""
    cost = predict(space.cascade, space.arch, space.default, space)
    return MapResult(space.default, cost, cost.objective(objective), None, seconds, objective, solver,
                     "time_limit_default", None, size, 1)


def _result(space, choice, objective, solver, status, gap, seconds, size, solves):
    cost = choice_cost(space, choice)
    mapping = to_mapping(space, choice)
    mapping.validate(space.cascade, space.arch)
    return MapResult(mapping, cost, cost.objective(objective), gap, seconds, objective, solver, status,
                     choice, size, solves)
