"""Compute units: the cost of one GLB tile of an einsum (a *slice*) on the 2D array or the 1D array.

A slice is the work of one einsum in one pipeline step: a GLB tile whose per-rank extents are
known. Inside it, the ``glb``-level loops run tile operations (spatial x rf extents) one after the
other. Everything here is closed form over *classes* of tile operations: along each rank a GLB tile
holds ``q - 1`` full tile ops and one last (possibly partial) one, so a slice has at most
``2**ranks`` distinct tile-op shapes, each priced once and multiplied by its count.

* 2D-array GEMM tile ops cost :func:`hw.array.array_tile_cost` (fill + steps + drain, the cycles
  the RTL is proven to take), times the batch extent. Tile ops do not overlap.
* Elementwise tile ops (the 1D array, or non-GEMM einsums on the 2D array) take
  ``prod(min(rf, extent)) x cycles_per_point`` cycles: each lane does its points in turn, and a
  point costs the sum of the 1D-array op cycles of its operators (FuseMax: exp = 6 MACs + 1 add;
  a multiply followed by an add-reduction is one MAC).
* GLB traffic is counted per tile op: neither unit keeps operands or partial sums between tile
  ops (the RTL array streams all operands of a tile op in and drains its outputs), so every tile op
  reads the elements of each operand it touches and writes its output elements, reading the partial
  sum back on a revisit. The order of the ``glb`` loops therefore changes no count; the reuse a
  mapping gets at this level is the tile op's (its spatial and ``rf`` extents). The slice lasts
  ``max(compute, GLB bytes / GLB bandwidth)``; the excess is the *bank-conflict* stall.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

from dataflow.expr import Var
from mapper.mapping import (VECTOR_OP_OF_CATEGORY, _weight_format, access_extent, einsum_view, gemm_tile_dims,
                            iteration_ranks, point_ops, tensor_bits, vector_op_actions, vector_op_cycles)

__all__ = ["EinsumPlan", "SliceCost", "plan_einsum", "slice_cost"]


@dataclass(frozen=True)
class SliceCost:
    """Cost of one slice. ``cycles`` includes GLB-port stalls, ``compute_cycles`` does not.
    ``useful_cycles``: PE (or lane) cycles doing useful work, for utilization."""

    cycles: int
    compute_cycles: int
    tile_ops: int
    glb_read_bits: int
    glb_write_bits: int
    rf_reads: int
    rf_writes: int
    useful_cycles: int
    actions: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)
    points: int = 0


@dataclass(frozen=True, eq=False)
class EinsumPlan:
    """Everything about one einsum's mapping that does not change from slice to slice."""

    einsum: object
    em: object
    view: object
    unit: str
    ranks: tuple
    sizes: tuple
    op_extent: tuple          # spatial x rf per rank
    rf_extent: tuple
    glb_tile: tuple           # glb x spatial x rf per rank
    pe_params: object
    pe_points: int            # product of the pe_ranks' sizes
    cycles_per_point: int
    point_actions: dict
    map_ops: dict
    reduce_category: str | None
    inputs: tuple             # input accesses (tensor reads) of the expression
    glb_inputs: tuple         # the first access of each input tensor (the GLB reads it once per tile op)
    bits: dict                # tensor -> bits per element
    partitions: tuple         # (outer, inner, pad) where both ranks are iterated
    arch: object = None
    cascade: object = None

    def index(self, rank):
        return self.ranks.index(rank)


def plan_einsum(cascade, arch, mapping, name):
    """The :class:`EinsumPlan` of einsum ``name``."""
    e = cascade.einsum(name)
    em = mapping.einsums[name]
    view = einsum_view(cascade, e, em.unit, em.pe_ranks)
    ranks = iteration_ranks(e, em)
    sizes = tuple(cascade.shapes[r] for r in ranks)
    op_extent = tuple(em.tile_extent(r, "op") for r in ranks)
    rf_extent = tuple(em.factor("rf", r) for r in ranks)
    glb_tile = tuple(em.tile_extent(r, "glb") for r in ranks)
    map_ops, reduce_category = point_ops(cascade, e)
    pe_params = None
    cpp, actions = 0, {}
    if view.kind == "gemm":
        pe_params = arch.pe_params(_weight_format(cascade, e, view, arch))
    else:
        cats = dict(map_ops)
        if reduce_category:
            cats[reduce_category] = cats.get(reduce_category, 0) + 1
        if reduce_category == "add" and cats.get("mul", 0) >= 1:  # multiply + add-reduce = one MAC
            cats["mul"] -= 1
            cats["add"] -= 1
            cats["mac"] = 1
        bits = arch.vector.bits if arch.vector is not None else arch.pe.act_bits
        acc_bits = arch.pe.acc_bits
        for cat, count in cats.items():
            if count <= 0:
                continue
            op = cat if cat == "mac" else VECTOR_OP_OF_CATEGORY[cat]
            cpp += count * vector_op_cycles(arch, op)
            for action, n in vector_op_actions(arch, op, bits, acc_bits).items():
                actions[action] = actions.get(action, 0) + n * count
        cpp = max(cpp, 1)
    inputs = tuple(a for a in e.input_accesses)
    first = {}
    for a in inputs:
        if a.tensor != e.output.tensor:
            first.setdefault(a.tensor, a)
    glb_inputs = tuple(first.values())
    bits = {t: tensor_bits(cascade, t) for t in {a.tensor for a in inputs} | {e.output.tensor}}
    partitions = []
    for parent, (outer, inner) in cascade.partitions.items():
        if outer in ranks and inner in ranks:
            pad = cascade.shapes[outer] * cascade.shapes[inner] - cascade.shapes[parent]
            if pad:
                partitions.append((outer, inner, pad))
    pe_points = math.prod(cascade.shapes[r] for r in em.pe_ranks)
    return EinsumPlan(e, em, view, em.unit, ranks, sizes, op_extent, rf_extent, glb_tile,
                      pe_params, pe_points, cpp, actions, map_ops, reduce_category, inputs, glb_inputs, bits,
                      tuple(partitions), arch, cascade)


@lru_cache(maxsize=65536)
def _tile_cost(array, pe_params, m, n, k):
    from hw.array import array_tile_cost

    return array_tile_cost(array, pe_params, m, n, k)


def _options(extent, op):
    """(op extent, count) of the tile ops along a rank of a slice of ``extent``."""
    q = -(-extent // op)
    last = extent - (q - 1) * op
    out = []
    if q > 1:
        out.append((op, q - 1))
    out.append((last, 1))
    return out


def _padded(plan, ext, pad_offsets, ranks):
    """Padded points of a slice among ``ranks``: for each padded partition whose last outer index
    the slice holds (``pad_offsets[i]`` = the slice's offset along the inner rank, else None), the
    inner positions past the parent's size, times the extents of the other ranks."""
    total = 0
    for (outer, inner, pad), offset in zip(plan.partitions, pad_offsets):
        if offset is None or outer not in ranks or inner not in ranks:
            continue
        i_in = plan.index(inner)
        valid_end = plan.sizes[i_in] - pad            # inner positions < valid_end are real
        begin, end = offset, offset + ext[i_in]
        count = max(0, end - max(begin, valid_end))
        total += count * math.prod(x for j, x in enumerate(ext)
                                   if plan.ranks[j] in ranks and plan.ranks[j] not in (outer, inner))
    return total


def _useful_points(plan, ext, pad_offsets):
    return (math.prod(ext) - _padded(plan, ext, pad_offsets, set(plan.ranks))) * plan.pe_points


def _useful_outputs(plan, ext, pad_offsets):
    out_ranks = {v.upper() for v in plan.einsum.output_vars}
    n = math.prod(x for r, x in zip(plan.ranks, ext) if r in out_ranks)
    return n - _padded(plan, ext, pad_offsets, out_ranks)


def slice_cost(plan, ext, first_visit, pad_offsets=()):
    """Cost of a slice with per-rank GLB-tile extents ``ext`` (in ``plan.ranks`` order).

    ``first_visit``: whether this is the first slice to write its output tile (no partial sum to
    read). ``pad_offsets[i]``: for the i-th padded partition of ``plan.partitions``, the slice's
    offset along the inner rank if the slice holds the last outer index, else None (exact
    useful-op counts: the padding of ``M -> M1, M0`` is not useful work).
    """
    ext, pad_offsets = tuple(ext), tuple(pad_offsets) or (None,) * len(plan.partitions)
    arch = plan.arch
    if any(x <= 0 for x in ext):
        return SliceCost(0, 0, 0, 0, 0, 0, 0, 0, {}, {}, 0)
    options = [_options(x, a) for x, a in zip(ext, plan.op_extent)]
    compute = useful = tile_ops = 0
    actions = {}
    if plan.view.kind == "gemm":
        for combo in itertools.product(*options):
            count = math.prod(c for _, c in combo)
            op_ext = {r: x for r, (x, _) in zip(plan.ranks, combo)}
            dims = gemm_tile_dims(plan.view, plan.em, lambda r: op_ext[r])
            tc = _tile_cost(arch.array, plan.pe_params, dims.m, dims.n, dims.k)
            reps = count * dims.batch
            compute += reps * tc.cycles
            useful += reps * tc.pe_steps * tc.step_cycles
            tile_ops += reps
            for action, n in tc.actions.items():
                actions[action] = actions.get(action, 0) + n * reps
    else:
        for combo in itertools.product(*options):
            count = math.prod(c for _, c in combo)
            per_lane = math.prod(min(rf, x) for (x, _), rf in zip(combo, plan.rf_extent))
            compute += count * per_lane * plan.cycles_per_point
            tile_ops += count
    points = _useful_points(plan, ext, pad_offsets)
    outputs = _useful_outputs(plan, ext, pad_offsets)
    ops = {cat: n * points for cat, n in plan.map_ops.items()}
    if plan.reduce_category:
        ops[plan.reduce_category] = ops.get(plan.reduce_category, 0) + points - (outputs if first_visit else 0)
    rf_reads = rf_writes = 0
    if plan.view.kind != "gemm":
        useful = points * plan.cycles_per_point
        for action, n in plan.point_actions.items():
            actions[action] = actions.get(action, 0) + n * points
        rf_reads = points * len(plan.inputs)
        rf_writes = points
    # GLB traffic: the units keep nothing between tile ops, so every tile op reads its operands'
    # elements and writes its output elements (the glb loop order does not matter)
    trips = {r: -(-ext[plan.index(r)] // plan.op_extent[plan.index(r)]) for r in plan.ranks}
    extent_of = dict(zip(plan.ranks, ext))

    def fetches(access):   # once per op position along every rank that indexes none of its elements
        rel = {idx.rank for idx in access.indices if isinstance(idx, Var)}
        return math.prod(n for r, n in trips.items() if r not in rel)

    def elems(access):
        return access_extent(plan.cascade, access, lambda r: extent_of.get(r, plan.cascade.shapes[r]))

    read_bits = write_bits = 0
    for a in plan.glb_inputs:
        read_bits += elems(a) * fetches(a) * plan.bits[a.tensor]
    out = plan.einsum.output
    out_elems = elems(out)
    writes = out_elems * fetches(out)
    psum_reads = writes - out_elems + (0 if first_visit else out_elems)
    write_bits += writes * plan.bits[out.tensor]
    read_bits += psum_reads * plan.bits[out.tensor]
    glb_cycles = -(-(read_bits + write_bits) // (arch.memory.glb_banks * arch.memory.glb_port_bits))
    return SliceCost(max(compute, glb_cycles), compute, tile_ops, read_bits, write_bits, rf_reads, rf_writes,
                     useful, actions, ops, points)
