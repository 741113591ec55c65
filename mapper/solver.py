"""Solver backends for :class:`mapper.ilp.LinearModel`: the only module that imports PuLP.

``cbc`` (PuLP's bundled CBC, the default) or ``highs`` (HiGHS through ``highspy``, run without its
presolve, which cuts off true optima of some of these models). With a time
limit the best incumbent is returned together with the relative gap to the best bound the solver
proved; a model with no feasible point returns ``status="infeasible"`` (the caller explains why).
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass

import pulp

__all__ = ["SolveResult", "solve", "SOLVERS"]

SOLVERS = ("cbc", "highs")


@dataclass(frozen=True)
class SolveResult:
    """``status``: ``optimal``, ``feasible`` (time limit hit with an incumbent), ``infeasible`` or
    ``no_solution``; ``values``: one number per model variable; ``gap``: relative optimality gap
    (0 when proven optimal, None when unknown); ``seconds``: wall time of the solve."""

    status: str
    values: tuple
    objective: float | None
    bound: float | None
    gap: float | None
    seconds: float
    solver: str


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


def solve(model, solver="cbc", time_limit=None, gap=1e-9, threads=1) -> SolveResult:
    """Solve ``model`` with ``solver`` (``cbc`` or ``highs``) within ``time_limit`` seconds."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    prob, xs = _to_pulp(model)
    start = time.perf_counter()
    bound = None
    with tempfile.TemporaryDirectory() as tmp:
        if solver == "cbc":
            log = os.path.join(tmp, "cbc.log")
            backend = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=gap, threads=threads,
                                        logPath=log, keepFiles=False)
            prob.solve(backend)
            _, bound = _cbc_log(log)
        else:
            # HiGHS's presolve cuts off the optimum of some of these models (seen with highspy 1.15 on
            # a 256^3 GEMM: "optimal" 18x above CBC's proven optimum, which HiGHS itself accepts as
            # feasible when the integers are fixed); solving without presolve is exact.
            backend = pulp.HiGHS(msg=False, timeLimit=time_limit, gapRel=gap, threads=threads, presolve="off")
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
    values = tuple((x.varValue if x.varValue is not None else 0.0) for x in xs)
    has_values = any(x.varValue is not None for x in xs)
    if status == "Infeasible":
        return SolveResult("infeasible", (), None, None, None, seconds, solver)
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
