"""Solver backends for :class:`mapper.ilp.LinearModel`: the only module that imports PuLP.

``cbc`` (PuLP's bundled CBC, the default) or ``highs`` (HiGHS through ``highspy``). HiGHS solves
the model's reduced form (:attr:`mapper.ilp.LinearModel.reduced`): on the whole model, whose config
cycles reach 1e11 next to binaries, its 1e-6 tolerances made it call feasible points infeasible and
return "optimal" mappings 4-5x worse than CBC's optimum. Every answer is checked against the whole
model's rows; one that breaks a row, or a HiGHS "optimal" on huge coefficients, is reported as
``feasible`` with an unknown gap and a ``note``, never as optimal. With a time limit the best
incumbent is returned together with the relative gap to the best bound the solver proved; a model
with no feasible point returns ``status="infeasible"`` (the caller explains why).
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass, replace

import pulp

__all__ = ["SolveResult", "solve", "SOLVERS"]

SOLVERS = ("cbc", "highs")

# HiGHS runs without its presolve (highspy 1.15's presolve returned a provably suboptimal "optimal" on
# the whole 256^3 GEMM model; on the reduced models it is exact, but slower) and with an integrality
# tolerance of 1e-9 instead of 1e-6: with the default, its answers at an EDP step's latency cap sat up
# to 2e-4 cycles above the cap (binaries at 1e-7 on DRAM-time coefficients), more than the walk lowers
# the cap by, so the walk stalled on one point until its 40 solves ran out.
HIGHS_OPTIONS = {"presolve": "off", "mip_feasibility_tolerance": 1e-9}
# Against row coefficients above this, HiGHS (1.15, presolve off) has been seen to declare feasible
# points infeasible and to accept infeasible ones (its tolerances do not grow with the coefficients;
# docs/mapper.md): its "optimal" on such a model is reported as unproven.
HIGHS_MAX_COEFFICIENT = 1e9
# a solver's answer breaking a row of the whole model by more than this (relative to the row's
# largest term) and by more than CHECK_ABSOLUTE (cycles, bytes, log2 units: far below anything the
# decoded mapping could notice) is not trusted
CHECK_TOLERANCE = 1e-6
CHECK_ABSOLUTE = 1e-4


@dataclass(frozen=True)
class SolveResult:
    """``status``: ``optimal``, ``feasible`` (time limit hit with an incumbent, or an answer not
    proven: see ``note``), ``infeasible`` or ``no_solution``; ``values``: one number per model
    variable; ``gap``: relative optimality gap (0 when proven optimal, None when unknown);
    ``seconds``: wall time of the solve; ``note``: how the answer was obtained or why it is not
    trusted (a reduced model, a fallback to the whole model, broken rows)."""

    status: str
    values: tuple
    objective: float | None
    bound: float | None
    gap: float | None
    seconds: float
    solver: str
    note: str = ""


def _name(text, used):
    base = re.sub(r"[^A-Za-z0-9_]", "_", text)[:200]
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name


def _to_pulp(model):
    prob = pulp.LpProblem("einsynth_mapping", pulp.LpMinimize)
    used = set()
    cats = {"bin": pulp.LpBinary, "int": pulp.LpInteger, "cont": pulp.LpContinuous}
    xs = []
    for name, kind, lo, hi in zip(model.names, model.kinds, model.lower, model.upper):
        xs.append(pulp.LpVariable(_name(name, used), lowBound=lo, upBound=hi, cat=cats[kind]))
    cused = set()
    for name, coefs, sense, rhs in model.constraints:
        expr = pulp.LpAffineExpression([(xs[v], c) for v, c in coefs.items()])
        if sense == "<=":
            con = expr <= rhs
        elif sense == ">=":
            con = expr >= rhs
        else:
            con = expr == rhs
        prob += con, _name(name, cused)
    prob += pulp.LpAffineExpression([(xs[v], c) for v, c in model.objective.items()])
    return prob, xs


def _cbc_log(path):
    """``(objective, bound)`` from a CBC log, or Nones."""
    try:
        text = open(path).read()
    except OSError:
        return None, None
    obj = re.findall(r"Objective value:\s*([-+0-9.eE]+)", text)
    bound = re.findall(r"Lower bound:\s*([-+0-9.eE]+)", text)
    return (float(obj[-1]) if obj else None), (float(bound[-1]) if bound else None)


SMALL_MODEL = 1000   # variables below which CBC runs without preprocessing (0.4 -> 0.23 s on a 256^3 GEMM)


def _snap(x, kind):
    """An integer variable within the solvers' integrality tolerance (1e-6) of an integer is that
    integer (CBC without preprocessing returns binaries such as -3e-8)."""
    if kind != "cont" and abs(x - round(x)) <= 1e-6:
        return float(round(x))
    return x


def _run(model, solver, time_limit, gap, threads) -> SolveResult:
    """One solve of ``model`` as it stands."""
    prob, xs = _to_pulp(model)
    start = time.perf_counter()
    bound = None
    with tempfile.TemporaryDirectory() as tmp:
        if solver == "cbc":
            log = os.path.join(tmp, "cbc.log")
            # on small models CBC's preprocessing costs more than the search it saves
            options = ["preprocess off"] if len(model.names) < SMALL_MODEL else []
            backend = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=gap, threads=threads,
                                        logPath=log, keepFiles=False, options=options)
            prob.solve(backend)
            _, bound = _cbc_log(log)
        else:
            backend = pulp.HiGHS(msg=False, timeLimit=time_limit, gapRel=gap, threads=threads, **HIGHS_OPTIONS)
            prob.solve(backend)
            highs = getattr(prob, "solverModel", None)
            if highs is not None:
                try:
                    bound = float(highs.getInfo().mip_dual_bound)
                except Exception:  # an LP without integers has no MIP bound
                    bound = None
    seconds = time.perf_counter() - start
    status = pulp.LpStatus.get(prob.status, "Undefined")
    sol = getattr(prob, "sol_status", None)
    values = tuple(_snap(x.varValue if x.varValue is not None else 0.0, kind)
                   for x, kind in zip(xs, model.kinds))
    has_values = any(x.varValue is not None for x in xs)
    if status == "Infeasible":   # CBC stopped by the time limit can report "Infeasible" with no point
        timed_out = time_limit is not None and seconds >= 0.9 * time_limit
        return SolveResult("no_solution" if timed_out else "infeasible", (), None, None, None, seconds, solver)
    found = sol in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) or (sol is None and status == "Optimal")
    if not has_values or not found:
        return SolveResult("no_solution", (), None, None, None, seconds, solver)
    objective = pulp.value(prob.objective) or 0.0
    optimal = sol == pulp.LpSolutionOptimal or (status == "Optimal" and sol != pulp.LpSolutionIntegerFeasible)
    if optimal:
        gap_value = 0.0 if bound is None else max(0.0, (objective - bound) / max(abs(objective), 1e-12))
        if gap_value <= max(gap, 1e-6):
            gap_value = 0.0
        return SolveResult("optimal", values, objective, bound if bound is not None else objective,
                           gap_value, seconds, solver)
    gap_value = None if bound is None else max(0.0, (objective - bound) / max(abs(objective), 1e-12))
    return SolveResult("feasible", values, objective, bound, gap_value, seconds, solver)


def solve(model, solver="cbc", time_limit=None, gap=1e-9, threads=1) -> SolveResult:
    """Solve ``model`` with ``solver`` (``cbc`` or ``highs``) within ``time_limit`` seconds.

    Both solvers solve its ``reduced`` form when it has one (same optimum, narrower coefficients;
    see :class:`mapper.ilp.LinearModel`; CBC on the whole model once called a mapping 16% off the
    optimum "optimal") and falls back to the whole model
    when a heuristic cutoff may have cut the optimum. Either answer is checked against every row of
    the whole model: a point breaking one (beyond ``CHECK_TOLERANCE``), or a HiGHS "optimal" on rows
    with coefficients above ``HIGHS_MAX_COEFFICIENT``, comes back as ``feasible`` with an unknown gap
    and a ``note`` saying why -- never as a silent "optimal".
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    start = time.perf_counter()
    reduced = getattr(model, "reduced", None)
    notes = []
    full = reduced is None
    res = _run(reduced if reduced is not None else model, solver, time_limit, gap, threads)
    if reduced is not None:
        cutoff = model.cutoff
        if res.values:
            values = model.complete(res.values)
            res = replace(res, values=values, objective=model.value(values))
        over = res.values and cutoff is not None and res.objective > cutoff * (1 + 1e-9) + 1e-9
        if not model.cutoff_exact and (over or res.status in ("infeasible", "no_solution")):
            notes.append(f"reduced model at cutoff {cutoff:g} inconclusive ({res.status}"
                         + (f", {res.objective:g}" if res.values else "") + "): solved the whole model")
            left = None if time_limit is None else max(1.0, time_limit - (time.perf_counter() - start))
            res = _run(model, solver, left, gap, threads)
            full = True
        elif cutoff is not None:
            notes.append(f"reduced at latency cutoff {cutoff:g}")
    if res.values:
        bad = model.violations(res.values, CHECK_TOLERANCE, CHECK_ABSOLUTE)
        if bad:
            worst = bad[0]
            notes.append(f"{len(bad)} constraints broken, worst {worst.name}: {worst.lhs:.9g} {worst.sense} "
                         f"{worst.rhs:.9g} (relative {worst.relative:.2g})")
            res = replace(res, status="feasible", gap=None)
        elif solver == "highs" and full and res.status == "optimal":
            big = model.coefficient_range()[1]
            if big > HIGHS_MAX_COEFFICIENT:
                notes.append(f"HiGHS optimum not trusted: row coefficients up to {big:.3g}")
                res = replace(res, status="feasible", gap=None)
    return replace(res, seconds=time.perf_counter() - start, note="; ".join(notes))
