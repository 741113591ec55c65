"""The mapping space the ILP and the brute-force search share.

For every einsum the space lists *configs*: how one tile operation runs on a unit.

* On the 2D array a GEMM-like einsum (roles from :func:`mapper.mapping.einsum_view`) places one
  rank (or two flattened, the inner one whole) on the rows, the same on the columns, and a rank (or
  the whole reduction) in the PE's ``rf`` stream, as the dataflow allows (output-stationary: rows <- m, cols <- n, rf <- k; weight-
  stationary: rows <- k, cols <- n, rf <- m; input-stationary: rows <- k, cols <- m, rf <- n).
  Factors are divisors of the rank, or ``min(size, dim)`` (the rank is then padded). The PE kind is
  respected through ``pe_ranks`` (the bit-serial weight rank and the LUT bit planes stay inside one
  PE step) and the array's ``k`` limit of ``rows x lanes`` for stationary ``k``.
* An elementwise einsum (or any einsum on the 1D array) spreads output ranks over the lanes (or the
  rows and columns), one point after another per lane.

The temporal remainder ``T_r = ceil(size_r / op_extent_r)`` of every rank is split between the
``glb`` loops and the ``dram`` loops by its prime factors (CoSA); the ``dram`` loop order is one of
the einsum's *stationarity* orders (the ranks of one tensor outermost). Cascade-level choices are
the units, the on-chip intermediates and, for 1-pass attention, whether the loop body runs fused as
one 2D + 1D software pipeline (FuseMax) over a shared DRAM loop nest (:class:`GroupCandidate`).

Every number here is a pure function of the cascade and the architecture (no solver, no I/O).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

import numpy as np

from dataflow.analysis import footprints, iteration_points
from dataflow.errors import InfeasibleError
from dataflow.expr import End, Gather, Var
from hw.array import array_tile_cost
from mapper.mapping import (
    VECTOR_OP_OF_CATEGORY, vector_op_actions, vector_op_cycles, _DATAFLOW_PLACEMENT, _gemm_like, _tensor_refs,
    _weight_format, default_mapping, einsum_view, point_ops, tensor_bits,
)

__all__ = [
    "SpaceOptions", "TensorUse", "Config", "EinsumSpace", "LoopOption", "GroupCandidate",
    "CascadeSpace", "build_space", "prime_factors", "divisors",
]


@dataclass(frozen=True)
class SpaceOptions:
    """Knobs that bound the space (the ILP and the brute force see the same space).

    ``share_levels``: GLB allocations are ``glb / 2**a`` for ``a`` in ``0..share_levels``;
    ``multi_rank_spatial``: an array dimension may hold two ranks (the inner one whole);
    ``min_spatial_fraction``: spatial factors below this fraction of the dimension are dropped
    unless no larger one exists; ``max_configs``: per einsum, keep the configs with the fewest
    cycles beyond this many; ``fusion``: offer the FuseMax pipeline group; ``onchip``: offer keeping
    intermediates on chip.
    """

    share_levels: int = 6
    min_spatial_fraction: float = 0.0
    max_configs: int = 4000
    max_rf_options: int = 64
    fusion: bool = True
    onchip: bool = True
    include_default: bool = True
    multi_rank_spatial: bool = True


# --- small number theory ---------------------------------------------------------------------------

@lru_cache(maxsize=None)
def prime_factors(n: int) -> tuple[tuple[int, int], ...]:
    """``((p, multiplicity), ...)`` of ``n``, ascending."""
    out, p = [], 2
    while p * p <= n:
        k = 0
        while n % p == 0:
            n //= p
            k += 1
        if k:
            out.append((p, k))
        p += 1
    if n > 1:
        out.append((n, 1))
    return tuple(out)


@lru_cache(maxsize=None)
def divisors(n: int) -> tuple[int, ...]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return tuple(sorted(set(small + [n // d for d in small])))


def multiplicity(n: int, p: int) -> int:
    k = 0
    while n % p == 0:
        n //= p
        k += 1
    return k


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --- per-einsum space -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorUse:
    """One tensor of an einsum: the iteration ranks that index it and its element size.

    ``fixed_elements``: elements along dimensions no iteration rank tiles (pe ranks, gathered table
    dimensions); ``elements`` = the whole access, ``bits`` per element.
    """

    tensor: str
    ranks: tuple
    bits: int
    fixed_elements: int
    is_output: bool
    deps: tuple = ()        # ranks whose loops change this tile (ranks + those of gathered indices)

    def elements(self, extent_of) -> int:
        return self.fixed_elements * math.prod(extent_of(r) for r in self.ranks)


@dataclass(frozen=True)
class Config:
    """How one tile operation of an einsum runs: the unit, the spatial and ``rf`` factors, and the
    closed-form totals over the whole einsum (compute cycles, PE/lane actions, GLB element accesses).
    ``positions[r]`` = ``ceil(size_r / op_extent_r)`` is what the glb and dram loops split."""

    unit: str
    kind: str  # "gemm" | "elementwise"
    spatial: Mapping
    rf: Mapping
    op_extent: Mapping
    positions: Mapping
    compute_cycles: int
    actions: Mapping
    glb_read_bits: int  # bits read from the GLB by the unit (partial sums included)
    glb_write_bits: int # bits written to the GLB by the unit
    label: str = ""


@dataclass(frozen=True)
class EinsumSpace:
    name: str
    ranks: tuple            # tiled iteration ranks (pe_ranks excluded)
    sizes: Mapping
    pe_ranks: tuple
    reduced: frozenset
    tensors: tuple          # TensorUse, output first
    configs: tuple          # Config
    orders: Mapping         # stationary tensor -> dram order (outermost first)
    weight_format: str | None

    def tensor(self, name) -> TensorUse:
        return next(t for t in self.tensors if t.tensor == name)


@dataclass(frozen=True)
class LoopOption:
    """One DRAM loop nest of a fused group: ``(rank, trips)`` pairs, outermost first."""

    loops: tuple

    @property
    def trips(self) -> Mapping:
        return dict(self.loops)


@dataclass(frozen=True)
class GroupCandidate:
    """A set of einsums that may run fused (FuseMax's 2D + 1D pipeline over the iterative rank).

    ``internal``: tensors made and used only inside (they never leave the chip when fused);
    ``options``: the loop nests on offer; ``loop_ranks``: their ranks, outermost first.
    """

    einsums: tuple
    loop_ranks: tuple
    options: tuple
    internal: tuple


@dataclass(frozen=True)
class CascadeSpace:
    cascade: object
    arch: object
    options: SpaceOptions
    einsums: Mapping        # name -> EinsumSpace (topological order)
    groups: tuple           # GroupCandidate
    onchip_candidates: tuple
    live: Mapping           # tensor -> tuple of einsum names from producer to last consumer
    footprint: Mapping      # tensor -> whole-tensor bytes
    glb_bytes: int
    default: object = field(default=None, compare=False)

    @property
    def order(self) -> tuple:
        return tuple(self.einsums)

    def group_of(self, name):
        for i, g in enumerate(self.groups):
            if name in g.einsums:
                return i
        return None


def _pe_ranks(cascade, e, view0):
    """The default mapping's rule: reduced ranks only on the weight side stay inside the PE."""
    a_ranks = {v.upper() for a in _tensor_refs(e.expr) if a.tensor == view0.a_side for v in a.vars}
    pe = tuple(r for r in view0.ranks("k") if r not in a_ranks)
    return () if len(pe) == len(view0.ranks("k")) else pe


def _tensor_uses(cascade, e, tiled):
    uses = []
    seen = set()
    for i, acc in enumerate([e.output] + list(e.input_accesses)):
        if acc.tensor in seen or (i > 0 and acc.tensor == e.output.tensor):
            continue
        seen.add(acc.tensor)
        ranks, fixed = [], 1
        t = cascade.tensors[acc.tensor]
        for j, idx in enumerate(acc.indices):
            if isinstance(idx, Var):
                if idx.rank in tiled:
                    if idx.rank not in ranks:
                        ranks.append(idx.rank)
                else:
                    fixed *= cascade.shapes[idx.rank]
            elif isinstance(idx, Gather):
                dims = cascade.extents[acc.tensor]
                fixed *= dims[j] if len(acc.indices) == len(t.ranks) else max(dims)
        deps = list(ranks) + [v.upper() for v in acc.vars if v.upper() in tiled and v.upper() not in ranks]
        uses.append(TensorUse(acc.tensor, tuple(ranks), tensor_bits(cascade, acc.tensor), fixed, i == 0,
                              tuple(dict.fromkeys(deps))))
    return tuple(uses)


def _extent_choices(size, cap, min_fraction):
    """Spatial factors: divisors of ``size`` up to ``cap`` and ``min(size, cap)`` (padding)."""
    vals = {d for d in divisors(size) if d <= cap}
    vals.add(min(size, cap))
    if min_fraction > 0:
        big = {v for v in vals if v >= min_fraction * min(size, cap)}
        vals = big or vals
    return sorted(vals)


def _rank_runs(size, extent):
    """``[(count, valid_extent)]`` of the tile positions along a rank (the last one may be partial)."""
    full, part = divmod(size, extent)
    out = []
    if full:
        out.append((full, extent))
    if part:
        out.append((1, part))
    return out


def _gemm_config(cascade, arch, pe, space_sizes, ranks, roles, uses, rows, cols, rf, k_per_point=1):
    """Closed-form totals of one GEMM config (see the module docstring)."""
    op_extent = {r: 1 for r in ranks}
    for d in (rows, cols, rf):
        for r, f in d.items():
            op_extent[r] *= f
    positions = {r: ceil_div(space_sizes[r], op_extent[r]) for r in ranks}
    tiled = [r for r in ranks if op_extent[r] > 1]
    mult = math.prod(positions[r] for r in ranks if op_extent[r] == 1)
    cycles = 0
    actions: dict = {}
    tile_cache = {}
    for combo in itertools.product(*[_rank_runs(space_sizes[r], op_extent[r]) for r in tiled]):
        count = mult
        v = {r: 1 for r in ranks}
        for r, (c, ext) in zip(tiled, combo):
            count *= c
            v[r] = ext
        m = math.prod(v[r] for r in ranks if roles[r] == "m")
        n = math.prod(v[r] for r in ranks if roles[r] == "n")
        k = math.prod(v[r] for r in ranks if roles[r] == "k") * k_per_point
        batch = math.prod(v[r] for r in ranks if roles[r] == "batch")
        key = (m, n, k)
        if key not in tile_cache:
            tile_cache[key] = array_tile_cost(arch.array, pe, m, n, k)
        tc = tile_cache[key]
        cycles += count * batch * tc.cycles
        for a, c in tc.actions.items():
            actions[a] = actions.get(a, 0) + count * batch * c
    reads, writes = tile_op_accesses(uses, space_sizes, positions)
    return cycles, actions, reads, writes, op_extent, positions


def tile_op_accesses(uses, sizes, positions):
    """GLB element accesses of a unit that keeps nothing between tile ops (the RTL array streams
    every operand of every tile op and drains its outputs): every tile op reads each input's
    elements in the op and writes its output elements; revisits of an output read the partial sum
    back first. Closed form over the tile ops: along a rank a tensor depends on, the ops' extents add
    up to the rank's size; along any other rank it is read once per op position.
    Returns ``(read_bits, write_bits)``, psum reads included in the reads."""
    def per_op_total(u):
        return u.fixed_elements * math.prod(sizes[r] if r in u.ranks else positions[r] for r in positions)

    reads = sum(per_op_total(u) * u.bits for u in uses if not u.is_output)
    out = uses[0]
    writes = per_op_total(out)
    return reads + (writes - out.elements(lambda r: sizes[r])) * out.bits, writes * out.bits


def _vector_cpp(arch, cascade, e):
    """Cycles per point and actions per point of an elementwise einsum: the 1D-array op table
    (the contract's rule; a multiply followed by an add-reduction is one MAC)."""
    counts, red = point_ops(cascade, e)
    cats = dict(counts)
    if red:
        cats[red] = cats.get(red, 0) + 1
    if red == "add" and cats.get("mul", 0) >= 1:
        cats["mul"] -= 1
        cats["add"] -= 1
        cats["mac"] = 1
    bits = arch.vector.bits if arch.vector is not None else arch.pe.act_bits
    cycles, actions = 0, {}
    for cat, n in cats.items():
        if n <= 0 or cat == "convert":
            continue
        op = cat if cat == "mac" else VECTOR_OP_OF_CATEGORY.get(cat)
        if op is None:
            raise InfeasibleError(f"einsum {e.name}: no unit can run operator category {cat!r}")
        cycles += n * vector_op_cycles(arch, op)
        for a, c in vector_op_actions(arch, op, bits, arch.pe.acc_bits).items():
            actions[a] = actions.get(a, 0) + n * c
    return max(cycles, 1), actions


def _elementwise_configs(cascade, arch, e, unit, ranks, sizes, uses, opts):
    cpp, point_actions = _vector_cpp(arch, cascade, e)
    reduced = {v.upper() for v in e.reduced_vars}
    free = [r for r in ranks if r not in reduced] or list(ranks)
    dims = (("lanes", arch.vector.lanes),) if unit == "vector" else (("rows", arch.array.rows), ("cols", arch.array.cols))
    cands = []
    # one rank per dim (distinct ranks), factor = a divisor or min(size, dim)
    per_dim = []
    for _, cap in dims:
        choices = [(None, 1)]
        for r in free:
            for f in _extent_choices(sizes[r], cap, 0.0):
                if f > 1:
                    choices.append((r, f))
        per_dim.append(choices)
    for combo in itertools.product(*per_dim):
        used = [r for r, _ in combo if r is not None]
        if len(set(used)) != len(used):
            continue
        spatial = {d: {r: f} for (d, _), (r, f) in zip(dims, combo) if r is not None}
        ext = {r: 1 for r in ranks}
        for (r, f) in combo:
            if r is not None:
                ext[r] *= f
        per_lane = math.prod(ceil_div(sizes[r], ext[r]) for r in ranks)
        cands.append((per_lane, spatial, ext))
    cands.sort(key=lambda c: (c[0], -sum(len(s) for s in c[1].values())))
    best = cands[0][0]
    keep = [c for c in cands if c[0] <= best * 1.0001][:4]
    if len(keep) < 3:
        keep += [c for c in cands if c not in keep][:3 - len(keep)]
    # the best ones that leave the outer rank of a partition temporal (a fused pipeline iterates it)
    outer = {o for o, _ in cascade.partitions.values()}
    if outer & set(ranks):
        rest = [c for c in cands if not any(r in outer for d in c[1].values() for r in d)]
        keep += [c for c in rest if c not in keep][:2]
    useful = iteration_points(cascade, e)
    actions = {a: c * useful for a, c in point_actions.items()}
    actions["rf_read"] = useful * len(e.input_accesses)
    actions["rf_write"] = useful
    # a lane may run a whole reduced rank in one tile op (``rf``): its accumulator then stays in the
    # lane (GLB accesses are per tile op)
    fixed = {o for o, _ in cascade.partitions.values()} | ({e.recurrence_var.upper()} if e.recurrence_var else set())
    configs = []
    for per_lane, spatial, ext in keep:
        lanes_used = math.prod(f for d in spatial.values() for f in d.values())
        on_lanes = {r for d in spatial.values() for r in d}
        # a whole reduced rank per lane: its partial sum never leaves the lane (one register)
        rf_opts = [{}] + [{r: sizes[r]} for r in ranks if r in reduced and r not in on_lanes
                          and r not in fixed and sizes[r] > 1]
        for rf in rf_opts:
            op_extent = {r: ext[r] * rf.get(r, 1) for r in ranks}
            positions = {r: ceil_div(sizes[r], op_extent[r]) for r in ranks}
            reads, writes = tile_op_accesses(uses, sizes, positions)
            label = f"{unit}:{lanes_used} lanes" + (" rf:" + ",".join(f"{r}{f}" for r, f in rf.items()) if rf else "")
            configs.append(Config(unit, "elementwise",
                                  MappingProxyType({d: MappingProxyType(f) for d, f in spatial.items()}),
                                  MappingProxyType(rf), MappingProxyType(op_extent), MappingProxyType(positions),
                                  per_lane * cpp, MappingProxyType(actions), reads, writes, label=label))
    configs = _prune_dominated(configs, ranks)
    if len(configs) > opts.max_configs:
        configs = configs[:opts.max_configs]
    return configs


def _spatial_options(ranks, sizes, cap, opts):
    """What one array dimension of ``cap`` PEs can hold: nothing, one rank (a divisor, or
    ``min(size, cap)`` with padding), or two ranks flattened, the inner one whole and the outer one
    split to fit (``{outer: f, inner: size}``, ``f x size <= cap``): e.g. a batch rank times a short
    rank that cannot fill the dimension alone."""
    out = [{}] + [{r: f} for r in ranks for f in _extent_choices(sizes[r], cap, opts.min_spatial_fraction) if f > 1]
    if not opts.multi_rank_spatial:
        return out
    for inner in ranks:
        if not 1 < sizes[inner] < cap:
            continue
        room = cap // sizes[inner]
        for outer in ranks:
            if outer == inner or room < 2:
                continue
            for f in _extent_choices(sizes[outer], room, opts.min_spatial_fraction):
                if f > 1:
                    out.append({outer: f, inner: sizes[inner]})
    return out


def _gemm_configs(cascade, arch, e, ranks, sizes, uses, view, pe, opts, default_em):
    rows_roles, cols_roles, rf_roles = _DATAFLOW_PLACEMENT[arch.array.dataflow]
    roles = dict(view.roles)
    k_rows = "k" in rows_roles
    row_cap = arch.array.rows * (pe.lanes if k_rows else 1)
    rows_opts = _spatial_options([r for r in ranks if roles[r] in rows_roles], sizes, row_cap, opts)
    cols_opts = _spatial_options([r for r in ranks if roles[r] in cols_roles], sizes, arch.array.cols, opts)
    rf_ranks = [r for r in ranks if roles[r] in rf_roles]
    rf_opts = [{}]
    for r in rf_ranks:
        rf_opts += [{r: d} for d in divisors(sizes[r]) if d > 1]
    k_ranks = [r for r in rf_ranks if roles[r] == "k"]
    if len(k_ranks) > 1:  # the whole reduction inside the tile, the outermost k rank split
        outer, inner = k_ranks[0], k_ranks[1:]
        for d in divisors(sizes[outer]):
            rf_opts.append({**{r: sizes[r] for r in inner}, outer: d} if d > 1 else {r: sizes[r] for r in inner})
    if len(rf_opts) > opts.max_rf_options:  # keep the largest extents (they amortize fill and drain)
        rf_opts = [{}] + sorted(rf_opts[1:], key=lambda d: -math.prod(d.values()))[:opts.max_rf_options - 1]
    triples = []
    for rw in rows_opts:
        for cl in cols_opts:
            if set(rw) & set(cl):
                continue
            for rf in rf_opts:
                if set(rf) & (set(rw) | set(cl)):
                    continue
                triples.append((rw, cl, rf))
    if default_em is not None:
        d_rows = dict(default_em.spatial.get("rows", {}))
        d_cols = dict(default_em.spatial.get("cols", {}))
        d_rf = {r: f for r, f in default_em.tiles.get("rf", {}).items() if f > 1}
        if (d_rows, d_cols, d_rf) not in triples:
            triples.append((d_rows, d_cols, d_rf))
    configs = []
    for rw, cl, rf in triples:
        cycles, actions, reads, writes, op_extent, positions = _gemm_config(
            cascade, arch, pe, sizes, ranks, roles, uses, rw, cl, rf)
        spatial = {}
        if rw:
            spatial["rows"] = MappingProxyType(rw)
        if cl:
            spatial["cols"] = MappingProxyType(cl)
        label = " ".join(f"{d}:{','.join(f'{r}{f}' for r, f in x.items())}"
                         for d, x in (("rows", rw), ("cols", cl), ("rf", rf)) if x)
        configs.append(Config("array", "gemm", MappingProxyType(spatial), MappingProxyType(rf),
                              MappingProxyType(op_extent), MappingProxyType(positions), cycles,
                              MappingProxyType(actions), reads, writes, label))
    configs = _prune_dominated(configs, ranks)
    if len(configs) > opts.max_configs:
        configs = sorted(configs, key=lambda c: c.compute_cycles)[:opts.max_configs]
    return configs


def _prune_dominated(configs, ranks):
    """Drop a config when another reaches every GLB tile it can (same padded extents, op extents
    that divide its own) with no more cycles, GLB accesses or unit actions."""
    buckets = {}
    for c in sorted(configs, key=lambda c: (c.compute_cycles, c.glb_read_bits + c.glb_write_bits)):
        padded = tuple(c.op_extent[r] * c.positions[r] for r in ranks)
        buckets.setdefault(padded, []).append(c)
    out = []
    for group in buckets.values():
        n = len(group)
        ops = np.array([[c.op_extent[r] for r in ranks] for c in group], dtype=np.int64).reshape(n, len(ranks))
        acc = np.array([c.glb_read_bits + c.glb_write_bits for c in group], dtype=np.float64)
        cyc = np.array([c.compute_cycles for c in group], dtype=np.float64)
        kept = []      # indices into group
        for i, c in enumerate(group):
            if kept:
                k = np.asarray(kept)
                cand = k[(acc[k] <= acc[i]) & (cyc[k] <= cyc[i]) & ~(ops[i] % ops[k]).any(axis=1)]
                if any(_energy_le(group[j].actions, c.actions) for j in cand):
                    continue
            kept.append(i)
        out += [group[i] for i in kept]
    return sorted(out, key=lambda c: (c.compute_cycles, c.glb_read_bits + c.glb_write_bits))


def _energy_le(a, b):
    return all(a.get(k, 0) <= v for k, v in b.items()) and all(k in b or v == 0 for k, v in a.items())


def _orders(ranks, uses):
    """One DRAM loop order per stationary tensor: its ranks outermost (in iteration order)."""
    out = {}
    for u in uses:
        first = [r for r in ranks if r in u.deps]
        out[u.tensor] = tuple(first + [r for r in ranks if r not in u.deps])
    return out


def _einsum_space(cascade, arch, e, opts, default_em):
    gemm = _gemm_like(e)
    units = []
    if gemm or arch.vector is None:
        units.append("array")
    if arch.vector is not None:
        units.append("vector")
        if not gemm:
            units.append("array")
    pe_ranks = ()
    view = None
    if gemm:
        view0 = einsum_view(cascade, e, "array")
        pe_ranks = _pe_ranks(cascade, e, view0)
        view = einsum_view(cascade, e, "array", pe_ranks)
    all_ranks = tuple(v.upper() for v in e.iteration_vars)
    ranks = tuple(r for r in all_ranks if r not in pe_ranks)
    sizes = {r: cascade.shapes[r] for r in all_ranks}
    uses = _tensor_uses(cascade, e, set(ranks))
    configs = []
    weight_format = None
    for unit in units:
        if unit == "array" and view is not None and view.kind == "gemm":
            weight_format = _weight_format(cascade, e, view, arch)
            pe = arch.pe_params(weight_format)
            configs += _gemm_configs(cascade, arch, e, ranks, sizes, uses, view, pe, opts, default_em)
        else:
            if unit == "array" and gemm:
                continue
            configs += _elementwise_configs(cascade, arch, e, unit, ranks, sizes, uses, opts)
    # an elementwise einsum with no GEMM view may still be gemm-like on the vector unit; the array
    # only takes it as a GEMM (the contract's rule)
    ev = EinsumSpace(e.name, ranks, MappingProxyType(sizes), pe_ranks,
                     frozenset(v.upper() for v in e.reduced_vars), uses, tuple(configs),
                     MappingProxyType(_orders(ranks, uses)), weight_format)
    return ev


# --- cascade-level ----------------------------------------------------------------------------------

def _group_candidates(cascade, spaces, opts):
    """FuseMax's pipeline: the einsums that iterate the outer rank of a partition (the 1-pass loop
    body) plus the einsums that consume only its finished results."""
    if not opts.fusion or not cascade.partitions:
        return ()
    out = []
    for parent, (outer, inner) in cascade.partitions.items():
        body = [e for e in cascade.topological_einsums() if outer in {v.upper() for v in e.iteration_vars}]
        if len(body) < 2 or not any(e.recurrence_var for e in body):
            continue
        names = {e.name for e in body}
        # tail: einsums that read a body result at the end of the iterative rank (AV reads RNV[f, M1, p])
        made = {cascade.einsum(n).output.tensor for n in names}
        for e in cascade.topological_einsums():
            if e.name in names:
                continue
            if any(a.tensor in made and any(isinstance(i, End) and i.rank == outer for i in a.indices)
                   for a in e.input_accesses):
                names.add(e.name)
        members = [e for e in cascade.topological_einsums() if e.name in names]
        common = None
        for e in body:
            rs = {v.upper() for v in e.output_vars}
            common = rs if common is None else common & rs
        common = (common or set()) - {inner}
        order = [r for r in (v.upper() for v in body[0].iteration_vars) if r in common and r != outer]
        order = [r for r in order if r != outer] + ([outer] if outer in common else [])
        if outer not in order:
            continue
        made = {e.output.tensor: e.name for e in members}
        internal = []
        for t, p in made.items():
            consumers = [e.name for e in cascade.einsums if any(a.tensor == t for a in e.input_accesses)
                         and e.name != p]
            if consumers and all(c in names for c in consumers) and t not in cascade.outputs:
                internal.append(t)
        options = []
        choice_lists = []
        for r in order:
            if r == outer:
                choice_lists.append([cascade.shapes[r]])
            else:
                choice_lists.append(list(divisors(cascade.shapes[r])))
        for trips in itertools.product(*choice_lists):
            options.append(LoopOption(tuple((r, t) for r, t in zip(order, trips) if True)))
        out.append(GroupCandidate(tuple(e.name for e in members), tuple(order), tuple(options), tuple(internal)))
    return tuple(out)


def build_space(cascade, arch, options: SpaceOptions | None = None) -> CascadeSpace:
    """The mapping space of ``cascade`` on ``arch``; raises :class:`InfeasibleError` when even the
    smallest tile of some einsum cannot fit the global buffer."""
    opts = options or SpaceOptions()
    default = None
    if opts.include_default:
        try:
            default = default_mapping(cascade, arch)
        except Exception:  # the default may not fit; the space stands without it
            default = None
    spaces = {}
    for e in cascade.topological_einsums():
        d_em = default.einsums[e.name] if default is not None else None
        if d_em is not None and d_em.unit != "array":
            d_em = None
        spaces[e.name] = _einsum_space(cascade, arch, e, opts, d_em)
    groups = _group_candidates(cascade, spaces, opts)
    order = list(spaces)
    live = {}
    for t in cascade.intermediates:
        p = cascade.producers[t].name
        consumers = [e.name for e in cascade.einsums if e.name != p and any(a.tensor == t for a in e.input_accesses)]
        last = max(order.index(c) for c in consumers) if consumers else order.index(p)
        live[t] = tuple(order[order.index(p): last + 1])
    fp = footprints(cascade)
    glb = arch.memory.glb_bytes
    onchip = tuple(t for t in cascade.intermediates if opts.onchip and fp[t] <= glb) if opts.onchip else ()
    space = CascadeSpace(cascade, arch, opts, MappingProxyType(spaces), groups, onchip,
                         MappingProxyType(live), MappingProxyType(fp), glb, default)
    check_minimal_tiles(space)
    return space


def min_share(fraction: float, levels: int) -> float | None:
    """The smallest allocation ``2**-a`` (``a <= levels``) holding ``fraction`` of the GLB, or None."""
    if fraction > 1:
        return None
    a = levels
    while a > 0 and 2.0 ** -a < fraction:
        a -= 1
    return 2.0 ** -a if 2.0 ** -a >= fraction else None


def tile_bytes(use: TensorUse, extent_of) -> float:
    """Double-buffered bytes of one GLB tile of ``use`` (the contract's GLB check)."""
    return 2 * math.ceil(use.elements(extent_of) * use.bits / 8)


def check_minimal_tiles(space: CascadeSpace) -> None:
    """Raise :class:`InfeasibleError` naming the einsum and tensor when the smallest GLB tiles of
    some einsum cannot share the global buffer (checked before any solve)."""
    glb = space.glb_bytes
    levels = space.options.share_levels
    for name, es in space.einsums.items():
        if not es.configs:
            raise InfeasibleError(f"einsum {name}: no unit of {space.arch.name} can run it")
        best = None
        for c in es.configs:
            need = [(tile_bytes(u, lambda r: c.op_extent[r]), u) for u in es.tensors]
            shares = [min_share(b / glb, levels) for b, _ in need]
            total = math.inf if None in shares else sum(shares)
            key = (total, max(b for b, _ in need))
            if best is None or key < best[0]:
                best = (key, c, need)
        (total, _), c, need = best
        if total <= 1:
            continue
        b, u = max(need, key=lambda bu: bu[0])
        dims = "x".join(str(c.op_extent[r]) for r in u.ranks) or "1"
        fixed = f" x {u.fixed_elements} untiled" if u.fixed_elements > 1 else ""
        together = "" if math.isinf(total) else (f"; its {len(need)} smallest tiles together need "
                                                 f"{sum(x for x, _ in need):.0f} B")
        raise InfeasibleError(
            f"global buffer of {_kib(glb)} of {space.arch.name} cannot hold the smallest tiles of "
            f"{name}: tensor {u.tensor} needs {int(b)} B ({dims}{fixed} elements of {u.bits} bits, "
            f"double-buffered){together}")


def _kib(b):
    return f"{b // 1024} KiB" if b % 1024 == 0 else f"{b} B"


# --- points of the space ----------------------------------------------------------------------------

@dataclass(frozen=True)
class EinsumChoice:
    """One einsum's point: a config, the DRAM trip count per rank, and the stationary tensor whose
    ranks lead the DRAM loop order (``None`` inside a fused group: the group's loops give the order)."""

    name: str
    config: int
    trips: tuple
    stationary: str | None


@dataclass(frozen=True)
class CascadeChoice:
    """A point of the cascade space: every einsum's choice, the fused groups with their loop option
    (``(group index, option index)``) and the intermediates kept on chip."""

    einsums: tuple
    fused: tuple = ()
    onchip: frozenset = frozenset()

    def einsum(self, name) -> EinsumChoice:
        return next(c for c in self.einsums if c.name == name)


def group_edges(space: CascadeSpace, group) -> tuple:
    """``(producer, consumer)`` pairs of a group's members that pass a tensor within one step
    (a recurrence reading its own output is not an edge)."""
    members = list(group.einsums if hasattr(group, "einsums") else group)
    made = {space.cascade.einsum(n).output.tensor: n for n in members}
    out = []
    for n in members:
        for a in space.cascade.einsum(n).input_accesses:
            d = made.get(a.tensor)
            if d is not None and d != n and (d, n) not in out:
                out.append((d, n))
    return tuple(out)


def fusable(es: EinsumSpace, cfg: Config, loop_ranks) -> bool:
    """Whether ``cfg`` tiles the group loop ranks without padding (fused members must agree on
    the GLB tile along them)."""
    return all(cfg.op_extent[r] * cfg.positions[r] == es.sizes[r] for r in loop_ranks if r in es.ranks)


def choice_order(space: CascadeSpace, choice: EinsumChoice, fused_option=None) -> tuple:
    es = space.einsums[choice.name]
    if fused_option is not None:
        loops = [r for r, _ in fused_option.loops if r in es.ranks]
        return tuple(loops + [r for r in es.ranks if r not in loops])
    return es.orders[choice.stationary]


def schedule_of(space: CascadeSpace, choice: CascadeChoice):
    """``(groups, fused indices, {group index: LoopOption})``: einsum-name tuples in run order."""
    fused = dict(choice.fused)
    groups, fused_idx, options = [], [], {}
    placed = set()
    for name in space.order:
        if name in placed:
            continue
        k = space.group_of(name)
        if k is not None and k in fused:
            members = space.groups[k].einsums
            options[len(groups)] = space.groups[k].options[fused[k]]
            fused_idx.append(len(groups))
            groups.append(tuple(members))
            placed.update(members)
        else:
            groups.append((name,))
            placed.add(name)
    return groups, tuple(fused_idx), options


def fits(space: CascadeSpace, choice: CascadeChoice, terms, only=None) -> bool:
    """The space's GLB rule: per group, every tensor gets an allocation ``glb / 2**a`` holding its
    largest double-buffered tile; allocations plus the whole on-chip tensors live during the group
    fit the buffer."""
    groups, _, _ = schedule_of(space, choice)
    glb = space.glb_bytes
    for g in groups:
        if only is not None and tuple(g) != tuple(only):
            continue
        need = {}
        for name in g:
            for t, b in terms[name].model_tiles.items():
                need[t] = max(need.get(t, 0.0), b)
        total = 0.0
        for t, b in need.items():
            s = min_share(b / glb, space.options.share_levels)
            if s is None:
                return False
            total += s
        for x in choice.onchip:
            if any(n in space.live[x] for n in g):
                total += space.footprint[x] / glb
        if total > 1 + 1e-12:
            return False
    return True


def to_mapping(space: CascadeSpace, choice: CascadeChoice):
    """The :class:`mapper.mapping.Mapping` of a point of the space (validated by the caller)."""
    from mapper.mapping import EinsumMapping, Group, Mapping

    groups, fused, options = schedule_of(space, choice)
    option_of = {n: options[i] for i in fused for n in groups[i]}
    ems = {}
    for c in choice.einsums:
        es = space.einsums[c.name]
        cfg = es.configs[c.config]
        trips = dict(c.trips)
        dram = {r: trips.get(r, 1) for r in es.ranks if trips.get(r, 1) > 1}
        glb = {r: ceil_div(cfg.positions[r], trips.get(r, 1)) for r in es.ranks}
        glb = {r: f for r, f in glb.items() if f > 1}
        tiles = {}
        if dram:
            tiles["dram"] = dram
        if glb:
            tiles["glb"] = glb
        if cfg.rf:
            tiles["rf"] = dict(cfg.rf)
        order = {"dram": list(choice_order(space, c, option_of.get(c.name)))}
        ems[c.name] = EinsumMapping(c.name, cfg.unit, {d: dict(f) for d, f in cfg.spatial.items()}, tiles,
                                    order, es.pe_ranks if cfg.kind == "gemm" else ())
    schedule = []
    for i, g in enumerate(groups):
        if i in fused:
            schedule.append(Group(g, tuple((r, t) for r, t in options[i].loops)))
        else:
            schedule.append(Group(g))
    return Mapping({n: ems[n] for n in space.order}, tuple(schedule),
                   tuple(t for t in space.cascade.intermediates if t in choice.onchip),
                   cascade=space.cascade.name, arch=space.arch.name)
