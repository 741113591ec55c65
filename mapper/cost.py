"""The mapper's analytical cost: closed-form cycles, accesses and energy of a mapping.

It prices the same views as the simulator: tile operations on the 2D array through
:func:`hw.array.array_tile_cost`, 1D-array (and elementwise) ops through the architecture's vector op
table, and every action with the architecture's :class:`hw.energy.EnergyTable`. The semantics are the
Mapping contract's (``mapper/mapping.py``), summarized in ``docs/mapper.md``:

* an einsum's compute is the sum of its tile operations (no overlap between tile ops);
* its DRAM traffic follows its DRAM loop nest: a tensor's GLB tile is fetched again for every
  iteration of the loops outside its innermost relevant loop; outputs whose reduction loops sit
  outside are written that many times and read back one time less;
* a singleton group takes ``max(compute, dram_bytes / dram_bytes_per_cycle)`` (double-buffered);
  a fused group overlaps its array work, its 1D-array work and its DRAM transfers (FuseMax);
* groups run one after another.

The ILP (:mod:`mapper.ilp`) encodes exactly this model on the space of :mod:`mapper.space`, and the
brute force (:mod:`mapper.brute`) enumerates the same space with :func:`combine`.
"""
from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from hw.energy import load_energy_table

__all__ = ["EinsumTerms", "EinsumCost", "CostBreakdown", "dram_multiplier", "einsum_terms",
           "combine", "predict", "energy_of", "memory_widths", "choice_terms", "choice_cost"]


@dataclass(frozen=True)
class EinsumTerms:
    """What one einsum costs on its own: compute cycles on its unit, actions, GLB element bytes
    moved by the unit, and per tensor the DRAM bytes (read, written) if that tensor is off chip."""

    name: str
    unit: str
    compute_cycles: int
    actions: Mapping
    glb_read_bytes: float
    glb_write_bytes: float
    traffic: Mapping        # tensor -> (read_bytes, write_bytes)
    tile_bytes: Mapping     # tensor -> double-buffered GLB tile bytes (whole bytes, as sim checks)
    model_tiles: Mapping = field(default_factory=dict)  # the same without rounding (the ILP's model)
    first_load: Mapping = field(default_factory=dict)   # input tensor -> bytes the first step loads
    last_store: float = 0.0                             # bytes of the output tile the last step stores
    whole: Mapping = field(default_factory=dict)        # tensor -> (read, write) in whole bytes per tile


@dataclass(frozen=True)
class EinsumCost:
    name: str
    unit: str
    compute_cycles: int
    dram_read_bytes: float
    dram_write_bytes: float
    glb_read_bytes: float
    glb_write_bytes: float
    energy_pj: float


@dataclass(frozen=True)
class CostBreakdown:
    """The predicted cost of a whole mapping.

    ``cycles``: the predicted latency (``objective_cycles`` plus each group's pipeline fill and
    drain, ``fill_cycles``: its first step's loads and last step's store); ``objective_cycles``:
    the latency the ILP minimizes; ``busy``: compute cycles per unit (``array``, ``vector``); ``utilization``:
    busy / cycles per unit; ``dram_bytes``: read + written; ``energy_pj``: per component (``array``,
    ``vector``, ``glb``, ``dram``) and ``total``; ``accesses``: memory action counts; ``groups``: the
    latency of each group in schedule order; ``stall_cycles``: cycles lost to DRAM over compute.
    """

    cycles: float
    busy: Mapping
    utilization: Mapping
    dram_bytes: float
    energy_pj: Mapping
    accesses: Mapping
    groups: tuple
    einsums: tuple
    stall_cycles: float
    energy_table: str = ""
    objective_cycles: float = 0.0
    objective_energy: float = 0.0
    fill_cycles: float = 0.0          # the groups' pipeline fill and drain in ``cycles``

    @property
    def energy(self) -> float:
        return self.energy_pj["total"]

    @property
    def edp(self) -> float:
        return self.cycles * self.energy_pj["total"]

    @property
    def objective_edp(self) -> float:
        return self.objective_cycles * self.objective_energy

    def objective(self, name: str) -> float:
        """The value of objective ``name`` as the ILP counts it (latency without fill and drain)."""
        if name == "latency":
            return self.objective_cycles
        if name == "energy":
            return self.objective_energy
        if name == "edp":
            return self.objective_edp
        raise ValueError(name)

    def to_dict(self):
        return {"cycles": self.cycles, "objective_cycles": self.objective_cycles, "busy": dict(self.busy), "utilization": dict(self.utilization),
                "dram_bytes": self.dram_bytes, "energy_pj": dict(self.energy_pj),
                "accesses": dict(self.accesses), "stall_cycles": self.stall_cycles,
                "energy_table": self.energy_table,
                "einsums": {e.name: {"unit": e.unit, "compute_cycles": e.compute_cycles,
                                     "dram_read_bytes": e.dram_read_bytes, "dram_write_bytes": e.dram_write_bytes,
                                     "energy_pj": e.energy_pj} for e in self.einsums}}


# --- per einsum --------------------------------------------------------------------------------------

def dram_multiplier(use_ranks, trips: Mapping, order, deps=None) -> int:
    """How often a tensor's tiles are fetched per pass over it: the product of the trips of the loops
    at or outside its innermost dependent loop that do not index its elements (loops of one trip do
    not exist). ``deps``: the ranks its tile depends on (``use_ranks`` plus gathered indices)."""
    deps = use_ranks if deps is None else deps
    active = [(r, trips.get(r, 1)) for r in order if trips.get(r, 1) > 1]
    last = -1
    for i, (r, _) in enumerate(active):
        if r in deps:
            last = i
    return math.prod(t for i, (r, t) in enumerate(active) if i <= last and r not in use_ranks)


def _whole_tile_bytes(u, sizes, glb_extent, trips):
    """Bytes of one pass over tensor ``u`` moved tile by tile in whole bytes (sub-byte formats)."""
    import itertools

    per_rank = []
    for r in u.ranks:
        t, g = trips.get(r, 1), glb_extent[r]
        per_rank.append([(t - 1, g), (1, sizes[r] - (t - 1) * g)] if t > 1 else [(1, min(sizes[r], g))])
    total = 0
    for combo in itertools.product(*per_rank):
        count = math.prod(c for c, _ in combo)
        total += count * math.ceil(u.fixed_elements * math.prod(x for _, x in combo) * u.bits / 8)
    return total


def einsum_terms(es, config, trips: Mapping, order) -> EinsumTerms:
    """The terms of einsum space ``es`` run with ``config``, DRAM trips ``trips`` and DRAM ``order``."""
    sizes = es.sizes
    glb_extent = {r: config.op_extent[r] * -(-config.positions[r] // trips.get(r, 1)) for r in es.ranks}
    traffic = {}
    tiles = {}
    model = {}
    whole = {}
    for u in es.tensors:
        full = u.elements(lambda r: sizes[r]) * u.bits / 8
        mult = dram_multiplier(u.ranks, trips, order, u.deps)
        rounded = _whole_tile_bytes(u, sizes, glb_extent, trips) if u.bits % 8 else full
        if u.is_output:
            traffic[u.tensor] = (full * (mult - 1), full * mult)
            whole[u.tensor] = (rounded * (mult - 1), rounded * mult)
        else:
            traffic[u.tensor] = (full * mult, 0.0)
            whole[u.tensor] = (rounded * mult, 0.0)
        tiles[u.tensor] = 2 * math.ceil(u.elements(lambda r: glb_extent[r]) * u.bits / 8)
        model[u.tensor] = 2 * u.elements(lambda r: glb_extent[r]) * u.bits / 8
    first_ext = {r: min(sizes[r], glb_extent[r]) for r in es.ranks}
    last_ext = {r: sizes[r] - (trips.get(r, 1) - 1) * glb_extent[r] if trips.get(r, 1) > 1 else first_ext[r]
                for r in es.ranks}
    first = {u.tensor: math.ceil(u.elements(lambda r: first_ext[r]) * u.bits / 8) for u in es.tensors[1:]}
    out = es.tensors[0]
    last = math.ceil(out.elements(lambda r: last_ext[r]) * out.bits / 8)
    return EinsumTerms(es.name, config.unit, config.compute_cycles, config.actions,
                       config.glb_read_bits / 8, config.glb_write_bits / 8,
                       MappingProxyType(traffic), MappingProxyType(tiles), MappingProxyType(model),
                       MappingProxyType(first), last, MappingProxyType(whole))


@lru_cache(maxsize=16)
def _table(name):
    return load_energy_table(name)


# --- energy ------------------------------------------------------------------------------------------

def memory_widths(arch, unit="array"):
    """``(capacity_bytes, width_bits)`` of the memory actions, as the energy table needs them
    (the register file is the 1D array's for ``unit="vector"``, a 2D PE's otherwise)."""
    bank = arch.memory.glb_bytes // arch.memory.glb_banks
    width = arch.memory.glb_port_bits
    if unit == "vector" and arch.vector is not None:
        rf = (arch.vector.rf_words * arch.vector.bits // 8, arch.vector.bits)
    else:
        rf = (arch.memory.rf_words_per_pe * arch.memory.word_bits // 8, arch.memory.word_bits)
    return {"glb_read": (bank, width), "glb_write": (bank, width), "rf_read": rf, "rf_write": rf}


def energy_of(arch, counts: Mapping) -> dict:
    """pJ per action of ``counts`` with ``arch``'s energy table."""
    table = _table(arch.energy_table)
    return table.energy(counts, memory_widths(arch))


# --- the cascade -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupCost:
    """One group of the schedule: its latency, stall cycles, per-unit busy cycles, DRAM and GLB
    bytes, unit actions, and energy in pJ per component."""

    latency: float            # the optimized model: max(compute, DRAM time) (overlapped units if fused)
    stall: float
    busy: Mapping
    dram_read: float
    dram_write: float
    glb_read: float
    glb_write: float
    actions: Mapping          # unit -> {action: count}
    einsums: tuple            # (name, terms, read bytes, write bytes)
    energy: Mapping
    fill: int = 0             # cycles of the first step's loads and the last step's store
    model_energy: float = 0.0 # the energy the ILP counts (DRAM bytes not rounded per tile)

    @property
    def cycles(self) -> float:
        """The predicted cycles: the model's latency plus the pipeline's fill and drain."""
        return self.latency + self.fill


def _edges(cascade, group):
    made = {cascade.einsum(n).output.tensor: n for n in group}
    return [(made[a.tensor], n) for n in group for a in cascade.einsum(n).input_accesses
            if a.tensor in made and made[a.tensor] != n]


def _consumers(cascade):
    out = {}
    for e in cascade.einsums:
        for a in e.input_accesses:
            if a.tensor != e.output.tensor:
                out.setdefault(a.tensor, set()).add(e.name)
    return out


_UNIT_PJ = {}


def _unit_energy(arch, table, t):
    """pJ of an einsum's unit actions (memoized per actions object: configs are shared)."""
    key = (id(t.actions), t.unit, table.name, arch.name)
    hit = _UNIT_PJ.get(key)
    if hit is not None and hit[0] is t.actions:
        return hit[1]
    pj = sum(table.energy(t.actions, memory_widths(arch, t.unit)).values())
    _UNIT_PJ[key] = (t.actions, pj)
    return pj


def group_cost(cascade, arch, terms: Mapping, group, group_of: Mapping, onchip=(), fused=False) -> GroupCost:
    """The cost of one group (einsum names) given where every einsum runs (``group_of``: name ->
    group index; this group's index is ``group_of[group[0]]``)."""
    onchip = set(onchip)
    bpc = arch.dram_bytes_per_cycle
    gi = group_of[group[0]]
    consumers = _consumers(cascade)
    producers = {e.output.tensor: e.name for e in cascade.einsums}
    outputs = set(cascade.outputs)
    is_fused = fused or len(group) > 1
    unit_work = {"array": 0, "vector": 0}
    acts = {"array": {}, "vector": {}}
    g_bytes = g_serial = 0.0
    dram_r = dram_w = glb_r = glb_w = 0.0
    rows = []
    first_load = {}
    last_store = 0.0
    whole_r = whole_w = 0.0
    for name in group:
        t = terms[name]
        rb = wb = 0.0
        for tensor, (r, w) in t.traffic.items():
            if tensor in onchip:
                continue
            p = producers.get(tensor)
            if p is not None and tensor not in outputs and is_fused and group_of.get(p) == gi:
                if p != name or all(group_of.get(c) == gi for c in consumers.get(tensor, ())):
                    continue
            rb += r
            wb += w
            whole_r += t.whole.get(tensor, (r, w))[0]
            whole_w += t.whole.get(tensor, (r, w))[1]
            if p == name:
                last_store += t.last_store
            elif tensor in t.first_load:
                first_load[tensor] = max(first_load.get(tensor, 0), t.first_load[tensor])
        unit_work[t.unit] += t.compute_cycles
        g_bytes += rb + wb
        g_serial += max(t.compute_cycles, (rb + wb) / bpc)
        dram_r += rb
        dram_w += wb
        glb_r += t.glb_read_bytes + wb
        glb_w += t.glb_write_bytes + rb
        for a, c in t.actions.items():
            acts[t.unit][a] = acts[t.unit].get(a, 0) + c
        rows.append((name, t, rb, wb))
    if is_fused:
        unit_of = {name: terms[name].unit for name in group}
        waits = any(unit_of[d] == "vector" and unit_of[e] == "array" for d, e in _edges(cascade, group))
        work = sum(unit_work.values()) if waits else max(unit_work.values())
        lat = max(work, g_bytes / bpc)
        stall = max(0.0, g_bytes / bpc - work)
    else:
        lat = g_serial
        stall = g_serial - sum(unit_work.values())
    table = _table(arch.energy_table)
    width = arch.memory.glb_port_bits
    unit_pj = {"array": 0.0, "vector": 0.0}
    for name, t, _, _ in rows:
        unit_pj[t.unit] += _unit_energy(arch, table, t)
    mem = table.energy({"glb_read": glb_r * 8 / width, "glb_write": glb_w * 8 / width,
                        "dram_read_bit": dram_r * 8, "dram_write_bit": dram_w * 8}, memory_widths(arch))
    energy = {"array": unit_pj["array"], "vector": unit_pj["vector"],
              "glb": mem.get("glb_read", 0.0) + mem.get("glb_write", 0.0),
              "dram": mem.get("dram_read_bit", 0.0) + mem.get("dram_write_bit", 0.0)}
    energy["total"] = sum(energy.values())
    model_total = energy["total"]
    glb_r += whole_w - dram_w         # the DMA moves whole bytes per tile (sub-byte formats)
    glb_w += whole_r - dram_r
    whole_pj = table.energy({"dram_read_bit": whole_r * 8, "dram_write_bit": whole_w * 8,
                             "glb_read": glb_r * 8 / width, "glb_write": glb_w * 8 / width}, memory_widths(arch))
    energy["dram"] = whole_pj.get("dram_read_bit", 0.0) + whole_pj.get("dram_write_bit", 0.0)
    energy["glb"] = whole_pj.get("glb_read", 0.0) + whole_pj.get("glb_write", 0.0)
    energy["total"] = sum(v for k, v in energy.items() if k != "total")
    loaded = sum(first_load.values())
    fill = (math.ceil(loaded / bpc) if loaded else 0) + (math.ceil(last_store / bpc) if last_store else 0)
    return GroupCost(lat, stall, MappingProxyType(unit_work), whole_r, whole_w, glb_r, glb_w,
                     MappingProxyType(acts), tuple(rows), MappingProxyType(energy), fill, model_total)


def combine(cascade, arch, terms: Mapping, groups, onchip=(), fused=()) -> CostBreakdown:
    """Cost of a cascade from its einsums' ``terms`` (name -> :class:`EinsumTerms`).

    ``groups``: tuples of einsum names in execution order; ``fused``: indices of the groups that
    run as one pipeline (their internal tensors stay on chip); ``onchip``: intermediates kept on chip
    across groups.
    """
    group_of = {n: i for i, g in enumerate(groups) for n in g}
    parts = [group_cost(cascade, arch, terms, g, group_of, onchip, i in fused) for i, g in enumerate(groups)]
    model = sum(p.latency for p in parts)
    total = sum(p.cycles for p in parts)
    busy = {u: sum(p.busy[u] for p in parts) for u in ("array", "vector")}
    energy = {k: sum(p.energy[k] for p in parts) for k in ("array", "vector", "glb", "dram", "total")}
    width = arch.memory.glb_port_bits
    accesses = {"glb_read": sum(p.glb_read for p in parts) * 8 / width,
                "glb_write": sum(p.glb_write for p in parts) * 8 / width,
                "dram_read_bit": sum(p.dram_read for p in parts) * 8,
                "dram_write_bit": sum(p.dram_write for p in parts) * 8}
    table = _table(arch.energy_table)
    einsum_costs = []
    for p in parts:
        for name, t, rb, wb in p.einsums:
            e_pj = sum(table.energy(t.actions, memory_widths(arch, t.unit)).values())
            einsum_costs.append(EinsumCost(name, t.unit, t.compute_cycles, rb, wb, t.glb_read_bytes,
                                           t.glb_write_bytes, e_pj))
    util = {u: (busy[u] / total if total else 0.0) for u in busy}
    dram = sum(p.dram_read + p.dram_write for p in parts)
    return CostBreakdown(total, MappingProxyType(busy), MappingProxyType(util), dram,
                         MappingProxyType(energy), MappingProxyType(accesses),
                         tuple(p.cycles for p in parts), tuple(einsum_costs),
                         sum(p.stall for p in parts), table.name, model, sum(p.model_energy for p in parts),
                         sum(p.fill for p in parts))


def choice_terms(space, choice) -> dict:
    """:class:`EinsumTerms` of every einsum of a :class:`~mapper.space.CascadeChoice`."""
    from .space import choice_order, schedule_of

    groups, fused, options = schedule_of(space, choice)
    option_of = {n: options[i] for i in fused for n in groups[i]}
    out = {}
    for c in choice.einsums:
        es = space.einsums[c.name]
        order = choice_order(space, c, option_of.get(c.name))
        out[c.name] = einsum_terms(es, es.configs[c.config], dict(c.trips), order)
    return out


def choice_cost(space, choice) -> CostBreakdown:
    """The cost of a point of the space (the brute force's and the decoder's yardstick)."""
    from .space import schedule_of

    terms = choice_terms(space, choice)
    groups, fused, _ = schedule_of(space, choice)
    return combine(space.cascade, space.arch, terms, groups, choice.onchip, fused)


def predict(cascade, arch, mapping, space=None) -> CostBreakdown:
    """The mapper's predicted cost of ``mapping`` (any valid :class:`mapper.mapping.Mapping`)."""
    terms = {}
    for e in cascade.topological_einsums():
        em = mapping.einsums[e.name]
        es = space.einsums[e.name] if space is not None else None
        if es is None or tuple(es.pe_ranks) != tuple(em.pe_ranks):
            es = _einsum_space_for(cascade, arch, e, em)
        config = _config_of(cascade, arch, e, es, em)
        trips = {r: em.factor("dram", r) for r in es.ranks}
        order = tuple(em.order.get("dram", ())) + tuple(r for r in es.ranks if r not in em.order.get("dram", ()))
        terms[e.name] = einsum_terms(es, config, trips, order)
    groups = [tuple(g.einsums) for g in mapping.groups(cascade)]
    fused = tuple(i for i, g in enumerate(groups) if len(g) > 1)
    return combine(cascade, arch, terms, groups, mapping.onchip, fused)


def _einsum_space_for(cascade, arch, e, em):
    """An :class:`EinsumSpace` skeleton (ranks, tensors) for an einsum mapped with ``em``'s pe_ranks."""
    from .space import EinsumSpace, _orders, _tensor_uses

    all_ranks = tuple(v.upper() for v in e.iteration_vars)
    ranks = tuple(r for r in all_ranks if r not in em.pe_ranks)
    uses = _tensor_uses(cascade, e, set(ranks))
    return EinsumSpace(e.name, ranks, MappingProxyType({r: cascade.shapes[r] for r in all_ranks}),
                       tuple(em.pe_ranks), frozenset(v.upper() for v in e.reduced_vars), uses, (),
                       MappingProxyType(_orders(ranks, uses)), None)


def _config_of(cascade, arch, e, es, em):
    """The :class:`Config` an einsum mapping ``em`` uses (computed, not looked up)."""
    from .space import Config, _gemm_config, _vector_cpp, ceil_div, tile_op_accesses
    from mapper.mapping import einsum_view, _weight_format

    sizes = es.sizes
    ranks = es.ranks
    view = einsum_view(cascade, e, em.unit, em.pe_ranks)
    rf = {r: f for r, f in em.tiles.get("rf", {}).items() if f > 1}
    spatial = {d: dict(f) for d, f in em.spatial.items() if f}
    if view.kind == "gemm":
        pe = arch.pe_params(_weight_format(cascade, e, view, arch))
        cycles, actions, reads, writes, op_extent, positions = _gemm_config(
            cascade, arch, pe, sizes, ranks, dict(view.roles), es.tensors, spatial.get("rows", {}),
            spatial.get("cols", {}), rf, em.k_per_point)
        return Config("array", "gemm", spatial, rf, op_extent, positions, cycles, actions, reads, writes)
    cpp, point_actions = _vector_cpp(arch, cascade, e)
    op_extent = {r: em.tile_extent(r, "op") for r in ranks}
    rf_ext = {r: em.factor("rf", r) for r in ranks}
    # tile ops per rank: ceil(size / op extent); each costs prod(min(rf, valid extent)) points per lane
    per_rank = []
    for r in ranks:
        full, part = divmod(sizes[r], op_extent[r])
        runs = ([(full, min(rf_ext[r], op_extent[r]))] if full else []) + ([(1, min(rf_ext[r], part))] if part else [])
        per_rank.append(runs)
    import itertools
    per_lane = 0
    for combo in itertools.product(*per_rank):
        per_lane += math.prod(c for c, _ in combo) * math.prod(x for _, x in combo)
    positions = {r: ceil_div(sizes[r], op_extent[r]) for r in ranks}
    from dataflow.analysis import iteration_points
    useful = iteration_points(cascade, e)
    actions = {a: c * useful for a, c in point_actions.items()}
    actions["rf_read"] = useful * len(e.input_accesses)
    actions["rf_write"] = useful
    reads, writes = tile_op_accesses(es.tensors, sizes, positions)
    return Config(em.unit, "elementwise", spatial, rf, op_extent, positions, per_lane * cpp, actions, reads, writes)
