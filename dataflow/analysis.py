"""Static analysis of a cascade: op counts, footprints, pass counts and I/O lower bounds.

* **Op counts** count each operator application over an einsum's iteration space, by action
  category (``mul``, ``add``, ``max``, ``exp``, ...) and by the format it computes in.
* **Passes** follow FuseMax (MICRO 2024): a *pass* over rank ``M`` is a traversal of all of M's
  elements; an einsum that traverses M after a reduction over *all* of M (a full reduction) starts
  a new pass. Reading an iterative tensor at its end (``RD[M1, p]``) is also a full reduction.
  A k-pass cascade must either keep a whole M-fiber on chip or read its inputs k times.
* **Attention I/O lower bound** (Saha & Ye): with a fast memory of S words, exact attention needs
  Ω(P·M·E·F / S) slow-memory accesses when S ≥ E·F, and never fewer than its compulsory traffic.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from .expr import Call, Const, End, Fixed, Ref, Var, walk
from .ir import Cascade, Einsum
from .operators import get_operator, get_reducer

__all__ = ["OpCount", "op_counts", "footprints", "pass_counts", "pass_count", "attention_io_lower_bound",
           "IOBound", "iteration_points", "compulsory_bytes"]


@dataclass(frozen=True)
class OpCount:
    einsum: str
    category: str
    format: str
    count: int


def iteration_points(cascade: Cascade, e: Einsum) -> int:
    """Points in the einsum's iteration space (valid points only, padding excluded)."""
    vars_ = e.iteration_vars
    n = math.prod(cascade.shapes[v.upper()] for v in vars_)
    # exclude padding of unevenly partitioned ranks
    for parent, (outer, inner) in cascade.partitions.items():
        if outer.lower() in vars_ and inner.lower() in vars_:
            n = n // (cascade.shapes[outer] * cascade.shapes[inner]) * cascade.shapes[parent]
    if e.until is not None and e.recurrence_var:
        n = n // cascade.shapes[e.recurrence_var.upper()] * e.until
    return n


def output_points(cascade: Cascade, e: Einsum) -> int:
    vars_ = e.output_vars
    n = math.prod(cascade.shapes[v.upper()] for v in vars_)
    for parent, (outer, inner) in cascade.partitions.items():
        if outer.lower() in vars_ and inner.lower() in vars_:
            n = n // (cascade.shapes[outer] * cascade.shapes[inner]) * cascade.shapes[parent]
    return n


def op_counts(cascade: Cascade) -> list[OpCount]:
    """Operator applications of every einsum, by action category and compute format."""
    out = []
    for e in cascade.einsums:
        fmt = cascade.tensors[e.output.tensor].format
        pts = iteration_points(cascade, e)
        counts: Counter = Counter()
        for n in walk(e.expr):
            if isinstance(n, Call):
                op = get_operator(n.op)
                if op.cost and not (op.category == "convert" and op.cost == 0):
                    counts[op.category] += op.cost * pts
        if e.reduced_vars:
            red = get_reducer(e.reduce or "add")
            counts[red.category] += pts - output_points(cascade, e)
        for cat, c in sorted(counts.items()):
            if c:
                out.append(OpCount(e.name, cat, fmt, int(c)))
    return out


def format_bits(fmt_name: str) -> int:
    from .formats import get_format

    return get_format(fmt_name).bits


def footprints(cascade: Cascade) -> dict[str, int]:
    """Bytes of every tensor at its format's width (rounded up to whole bytes per tensor)."""
    return {name: math.ceil(math.prod(cascade.extents[name]) * format_bits(t.format) / 8)
            for name, t in cascade.tensors.items()}


def compulsory_bytes(cascade: Cascade) -> int:
    """Bytes that must cross the chip boundary at least once: the inputs and the outputs."""
    fp = footprints(cascade)
    return sum(fp[t] for t in cascade.inputs) + sum(fp[t] for t in cascade.outputs)


def _covers(cascade: Cascade, ranks: set[str], rank: str) -> bool:
    """Whether an iteration space over ``ranks`` visits every coordinate of ``rank``."""
    if rank in ranks:
        return True
    children = cascade.partitions.get(rank)
    return bool(children) and all(_covers(cascade, ranks, c) for c in children)


def pass_counts(cascade: Cascade) -> dict[str, int]:
    """The number of passes over each root rank (FuseMax's pass analysis)."""
    roots = sorted({cascade.root_of(r) for r in cascade.shapes if cascade.parent_of(r) is None
                    and r not in {c for cs in cascade.partitions.values() for c in cs}})
    return {r: _passes_over(cascade, r) for r in roots if _touched(cascade, r)}


def _touched(cascade: Cascade, rank: str) -> bool:
    fam = cascade.family(rank)
    return any(v.upper() in fam for e in cascade.einsums for v in e.iteration_vars)


def pass_count(cascade: Cascade) -> int:
    """The largest number of passes over any rank."""
    counts = pass_counts(cascade)
    return max(counts.values(), default=0)


def _passes_over(cascade: Cascade, rank: str) -> int:
    fam = cascade.family(rank)
    # ready[tensor] = (pass, complete): the latest pass its value depends on, and whether it
    # needs that pass to have finished (it reduced all of the rank).
    ready: dict[str, tuple[int, bool]] = {}
    best = 0
    for e in cascade.topological_einsums():
        iter_ranks = {v.upper() for v in e.iteration_vars}
        covers = _covers(cascade, iter_ranks, rank)
        level, complete = 0, False
        for acc in e.input_accesses:
            if acc.tensor == e.output.tensor:
                continue
            k, c = ready.get(acc.tensor, (0, False))
            # reading an iterative tensor at a fixed coordinate of the rank needs all its steps
            if any(isinstance(i, (End, Fixed)) and _fixed_rank(cascade, acc, pos) in fam
                   for pos, i in enumerate(acc.indices)):
                c = c or k > 0
            if (k, c) > (level, complete):
                level, complete = k, c
        if covers:
            p = level + 1 if complete else max(level, 1)
            best = max(best, p)
            out_has = any(v.upper() in fam for v in e.output_vars)
            ready[e.output.tensor] = (p, not out_has)
        else:
            touches = bool(iter_ranks & fam)
            out_has = any(v.upper() in fam for v in e.output_vars)
            if touches and not out_has and level > 0:
                complete = True
            ready[e.output.tensor] = (level, complete)
    return best


def _fixed_rank(cascade: Cascade, acc, pos: int) -> str | None:
    idx = acc.indices[pos]
    if isinstance(idx, End):
        return idx.rank
    ranks = cascade.tensors[acc.tensor].ranks
    return ranks[pos] if len(ranks) == len(acc.indices) else None


@dataclass(frozen=True)
class IOBound:
    """Slow-memory words an attention must move: compulsory and the Saha-Ye term."""
    compulsory_words: int
    tiling_words: int
    onchip_words: int

    @property
    def words(self) -> int:
        return max(self.compulsory_words, self.tiling_words)


def attention_io_lower_bound(P: int, M: int, E: int, F: int, onchip_words: int) -> IOBound:
    """Saha & Ye: Ω(P·M·E·F / S) words for a fast memory of S ≥ E·F words (up to a constant).

    Below S = E·F the bound degrades to reading K and V once per query block that fits; we report
    P·M·(E+F)·... conservatively as the S = E·F value. The compulsory traffic (Q, K, V in, AV out)
    is always a lower bound.
    """
    for name, v in (("P", P), ("M", M), ("E", E), ("F", F), ("onchip_words", onchip_words)):
        if not isinstance(v, int) or v <= 0:
            from .errors import EinsynthError

            raise EinsynthError(f"attention_io_lower_bound: {name} must be a positive integer, not {v!r}")
    compulsory = P * E + M * E + M * F + P * F
    s = max(onchip_words, E * F)
    tiling = (P * M * E * F) // s
    return IOBound(compulsory, tiling, onchip_words)


def op_totals(cascade: Cascade) -> Mapping[str, int]:
    tot: Counter = Counter()
    for oc in op_counts(cascade):
        tot[oc.category] += oc.count
    return dict(tot)
