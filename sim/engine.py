"""The simulation engine: each schedule group runs as a software pipeline of steps.

A group's DRAM-level loops (``Group.loops``) enumerate its *steps*. In step ``i`` every member
einsum that runs processes one GLB tile (a slice, priced by :mod:`sim.units`). The resources are the
DRAM channel, the 2D array and the 1D array (the GLB ports are folded into each slice's duration).
Per step, in this order:

* ``L_i``: the DRAM channel loads the step's new input tiles (and partial sums). With double
  buffering it may start once ``L_{i-1}`` and ``S_{i-2}`` are done and step ``i-2``'s compute has
  freed the buffer;
* the member slices, in the cascade's topological order, each on its unit, in order per unit; a
  slice starts when its unit is free, its freshly loaded inputs are in (``L_i``), its producers in
  the same step are done, and (if it writes DRAM) the store of step ``i-2`` has freed its buffer;
* ``S_{i-1}``: the DRAM channel writes back the output tiles step ``i-1`` completed, after ``L_i``.

Every start time is a max of earlier finish times plus a duration, so a step is a max-plus linear
map of the state (finish times of the last load, store, compute and each unit). The steps of a
loop nest repeat in a few classes (which loop advanced, and whether each index is the first,
second, a middle or the last one), so the whole pipeline is a product of few distinct matrices,
computed by memoized recursion over the loop nest and repeated squaring: the simulator is exact for
this machine model and its run time grows with the logarithm of the number of tiles.

Stalls are attributed by re-running the same product with infinite DRAM bandwidth (the difference
is the ``dram_bandwidth`` stall) and then with infinite GLB bandwidth (``bank_conflict``); what is
left above the busiest unit's busy time is ``dependency`` stall (waiting for another unit, or the
pipeline's fill and drain). Groups run one after another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.units import plan_einsum, slice_cost

__all__ = ["GroupResult", "simulate_group", "UNIT_NAMES"]

UNIT_NAMES = ("array", "vector")
NEG = -np.inf
_STATE = 5 + len(UNIT_NAMES)     # const, load, store, compute, compute of the previous step, units
_C0, _L, _S, _C, _CP = 0, 1, 2, 3, 4
_VARIANTS = 3                   # real, infinite DRAM bandwidth, infinite DRAM and GLB bandwidth


def _identity_forms():
    eye = np.full((_STATE, _STATE), NEG)
    np.fill_diagonal(eye, 0.0)
    return [np.repeat(eye[k][None, :], _VARIANTS, axis=0) for k in range(_STATE)]


_IDENTITY_FORMS = _identity_forms()


def _mp_mul(a, b):
    """Batched max-plus product of ``[V, n, n]`` matrices."""
    return np.max(a[:, :, :, None] + b[:, None, :, :], axis=2)


def _mp_pow(a, k):
    result = None
    base = a
    while k:
        if k & 1:
            result = base if result is None else _mp_mul(result, base)
        k >>= 1
        if k:
            base = _mp_mul(base, base)
    return result


def _add_totals(into, other, times=1):
    """``into += other * times`` for flat dicts keyed by tuples."""
    for key, value in other.items():
        into[key] = into.get(key, 0) + value * times


def _nest(flat):
    """Flat tuple keys -> nested dicts (``("busy", "array")`` -> ``{"busy": {"array": ...}}``)."""
    out = {}
    for key, value in flat.items():
        d = out
        for part in key[:-1]:
            d = d.setdefault(part, {})
        d[key[-1]] = value
    return out


@dataclass
class GroupResult:
    """Cycles of one group (real and the two counterfactuals) and its additive totals."""

    index: int
    einsums: tuple
    cycles: int
    cycles_no_dram_stall: int
    cycles_no_glb_stall: int
    totals: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class _Member:
    name: str
    plan: object
    unit: int
    iterated: tuple          # loop indices the member iterates
    run_at: dict             # loop index -> "first" | "last" for loops it does not iterate
    dram_inputs: tuple       # (access, relevant loop indices)
    out_dram: bool
    out_loops: tuple         # loop indices relevant to the output
    deps: tuple              # names of members it reads in the same step
    loop_of_rank: dict       # rank -> loop index


class _Group:
    def __init__(self, ctx, index, group):
        self.ctx = ctx
        self.index = index
        cascade = ctx.cascade
        self.loops = group.loops
        self.trips = [t for _, t in group.loops]
        loop_of = {r: j for j, (r, _) in enumerate(group.loops)}
        order = [e.name for e in cascade.topological_einsums() if e.name in group.einsums]
        members = []
        in_group = set(group.einsums)
        for name in order:
            plan = ctx.plans[name]
            e = plan.einsum
            iterated = tuple(j for j, (r, _) in enumerate(group.loops) if r in plan.ranks)
            run_at = {}
            for j, (r, _) in enumerate(group.loops):
                if j in iterated:
                    continue
                reads_rank = any(r in cascade.tensors[a.tensor].ranks for a in e.input_accesses
                                 if a.tensor != e.output.tensor)
                run_at[j] = "last" if reads_rank else "first"
            dram_inputs = []
            for a in e.input_accesses:
                if a.tensor == e.output.tensor:
                    continue
                if ctx.source[a.tensor] == "dram" or (ctx.group_of_tensor.get(a.tensor, -1) != index
                                                      and ctx.source[a.tensor] != "onchip"):
                    rel = tuple(loop_of[v.upper()] for v in a.vars if v.upper() in loop_of)
                    dram_inputs.append((a, rel))
            out_rel = tuple(loop_of[v.upper()] for v in e.output.vars if v.upper() in loop_of)
            deps = tuple(sorted({cascade.producers[a.tensor].name for a in e.input_accesses
                                 if a.tensor in cascade.producers and a.tensor != e.output.tensor
                                 and cascade.producers[a.tensor].name in in_group}))
            members.append(_Member(name, plan, UNIT_NAMES.index(plan.unit), iterated, run_at,
                                   tuple(dram_inputs), ctx.out_dram[e.output.tensor], out_rel, deps,
                                   {r: loop_of[r] for r in plan.ranks if r in loop_of}))
        self.members = members
        # loops over the inner rank of a padded partition run index by index (exact useful-op
        # counts need each inner tile's offset); the number of classes grows with their trips only
        self.exact = {loop_of[inner] for m in members for _, inner, _ in m.plan.partitions if inner in loop_of}
        self.memo = {}
        self.slice_memo = {}
        self.leaf_totals = {}

    # -- positions: "F" first, "S" second, "M" middle, "L" last, "O" only; an int on exact loops --
    def _first(self, j, p):
        return p == 0 if isinstance(p, int) else p in ("F", "O")

    def _last(self, j, p):
        return p == self.trips[j] - 1 if isinstance(p, int) else p in ("L", "O")

    def _last_label(self, j):
        if j in self.exact:
            return self.trips[j] - 1
        return "L" if self.trips[j] >= 2 else "O"

    # -- per-step quantities --------------------------------------------------------------------
    def _runs(self, m, pos):
        for j, when in m.run_at.items():
            if when == "first" and not self._first(j, pos[j]):
                return False
            if when == "last" and not self._last(j, pos[j]):
                return False
        return True

    def _extents(self, m, pos):
        plan = m.plan
        out = []
        for r, size, tile in zip(plan.ranks, plan.sizes, plan.glb_tile):
            j = m.loop_of_rank.get(r)
            if j is None:
                out.append(min(size, tile))
            elif self._last(j, pos[j]):
                out.append(size - (self.trips[j] - 1) * tile)
            else:
                out.append(tile)
        return tuple(out)

    def _slice(self, m, pos):
        ext = self._extents(m, pos)
        out_ranks = {v.upper() for v in m.plan.einsum.output_vars}
        first = all(self._first(j, pos[j]) for j in m.iterated if self.loops[j][0] not in out_ranks)
        offsets = []
        for outer, inner, _ in m.plan.partitions:
            holds_last = self._last(m.loop_of_rank[outer], pos[m.loop_of_rank[outer]]) \
                if outer in m.loop_of_rank else True
            j_in = m.loop_of_rank.get(inner)
            offset = 0 if j_in is None else pos[j_in] * m.plan.glb_tile[m.plan.index(inner)]
            offsets.append(offset if holds_last else None)
        key = (m.name, ext, first, tuple(offsets))
        s = self.slice_memo.get(key)
        if s is None:
            s = slice_cost(m.plan, ext, first, offsets)
            self.slice_memo[key] = s
        return s, ext, first

    def _bytes(self, m, access, ext):
        from mapper.mapping import access_extent

        extent_of = dict(zip(m.plan.ranks, ext))
        n = access_extent(self.ctx.cascade, access, lambda r: extent_of.get(r, self.ctx.cascade.shapes[r]))
        return math.ceil(n * m.plan.bits[access.tensor] / 8)

    def _prev(self, c, pos):
        prev = list(pos)
        p = pos[c]
        if isinstance(p, int):
            prev[c] = p - 1
        else:
            prev[c] = "F" if p == "S" or (p == "L" and self.trips[c] == 2) else "M"
        for j in range(c + 1, len(pos)):
            prev[j] = self._last_label(j)
        return tuple(prev)

    def _changed(self, m, c, rel):
        """Whether a tile indexed by loops ``rel`` differs from the previous step's (carry at ``c``;
        a loop inside ``c`` changes only if it has more than one iteration). A member that does not
        run every step reloads every time it runs."""
        return c < 0 or bool(m.run_at) or any(j == c or (j > c and self.trips[j] > 1) for j in rel)

    def bundle(self, c, pos):
        """The max-plus matrices ([V, n, n]) and totals of one step (c = -2: the terminal store)."""
        ctx = self.ctx
        totals = {("steps",): 1 if c > -2 else 0}
        load_bytes = {}
        compute = []
        if c > -2:
            for m in self.members:
                if not self._runs(m, pos):
                    continue
                s, ext, first = self._slice(m, pos)
                loads = False
                for a, rel in m.dram_inputs:
                    if self._changed(m, c, rel):
                        b = self._bytes(m, a, ext)
                        if b:
                            load_bytes[a.tensor] = max(load_bytes.get(a.tensor, 0), b)
                            loads = True
                if m.out_dram and not first and self._changed(m, c, m.out_loops):
                    b = self._bytes(m, m.plan.einsum.output, ext)
                    load_bytes["psum:" + m.name] = b
                    loads = True
                compute.append((m, s, loads))
                u = UNIT_NAMES[m.unit]
                for key, value in ((("busy", u), s.cycles), (("busy_compute", u), s.compute_cycles),
                                   (("useful_cycles", u), s.useful_cycles),
                                   (("glb_read_bits",), s.glb_read_bits),
                                   (("glb_write_bits",), s.glb_write_bits),
                                   (("rf_reads", u), s.rf_reads), (("rf_writes", u), s.rf_writes),
                                   (("tile_ops", m.name), s.tile_ops), (("einsum_cycles", m.name), s.cycles)):
                    totals[key] = totals.get(key, 0) + value
                for a, n in s.actions.items():
                    totals[("actions", u, a)] = totals.get(("actions", u, a), 0) + n
                for cat, n in s.ops.items():
                    totals[("ops", m.name, cat)] = totals.get(("ops", m.name, cat), 0) + n
        store_bytes = 0
        if c != -1:
            ppos = tuple(self._last_label(j) for j in range(len(self.trips))) if c == -2 else self._prev(c, pos)
            for m in self.members:
                if not m.out_dram or not self._runs(m, ppos):
                    continue
                if c == -2 or self._changed(m, c, m.out_loops):
                    _, ext, _ = self._slice(m, ppos)
                    store_bytes += self._bytes(m, m.plan.einsum.output, ext)
        loaded = sum(load_bytes.values())
        bpc = ctx.arch.dram_bytes_per_cycle
        d_load = math.ceil(loaded / bpc) if loaded else 0
        d_store = math.ceil(store_bytes / bpc) if store_bytes else 0
        for key, value in ((("dram_read_bytes",), loaded), (("dram_write_bytes",), store_bytes),
                           (("dram_busy",), d_load + d_store)):
            totals[key] = totals.get(key, 0) + value
        return self._matrix(c, compute, d_load, d_store), totals

    def _matrix(self, c, compute, d_load, d_store):
        """The step's max-plus matrices for the three variants at once: ``[V, n, n]``.

        A linear form is a ``[V, n]`` array (offset from each old state entry, -inf if none)."""
        old = _IDENTITY_FORMS
        dl = np.array([[d_load], [0.0], [0.0]])
        ds = np.array([[d_store], [0.0], [0.0]])
        if c == -2:
            new = list(old)
            new[_S] = np.maximum(np.maximum(old[_L], old[_S]), old[_C]) + ds
            return np.stack(new, axis=2)
        load_fin = np.maximum(np.maximum(old[_L], old[_S]), old[_CP]) + dl
        unit_t = [old[5 + u] for u in range(len(UNIT_NAMES))]
        fin = {}
        comp = old[_C]
        for m, s, loads in compute:
            start = unit_t[m.unit]
            if loads:
                start = np.maximum(start, load_fin)
            if m.out_dram:
                start = np.maximum(start, old[_S])
            for d in m.deps:
                if d in fin:
                    start = np.maximum(start, fin[d])
            f = start + np.array([[s.cycles], [s.cycles], [s.compute_cycles]], dtype=float)
            fin[m.name] = f
            unit_t[m.unit] = f
            comp = np.maximum(comp, f)
        if not compute:
            comp = np.maximum(comp, load_fin)
        store_fin = np.maximum(load_fin, old[_C]) + ds
        new = [old[_C0], load_fin, store_fin, comp, old[_C]] + unit_t
        return np.stack(new, axis=2)

    # -- the loop nest --------------------------------------------------------------------------
    def seq(self, j, c, pre):
        key = (j, c, pre)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        if j == len(self.trips):
            mat, totals = self.bundle(c, pre)
            self.leaf_totals[key] = totals
            result = (mat, {key: 1})
        else:
            n = self.trips[j]
            if j in self.exact:
                parts = [(self.seq(j + 1, c if t == 0 else j, pre + (t,)), 1) for t in range(n)]
            elif n == 1:
                parts = [(self.seq(j + 1, c, pre + ("O",)), 1)]
            else:
                parts = [(self.seq(j + 1, c, pre + ("F",)), 1)]
                if n >= 3:
                    parts.append((self.seq(j + 1, j, pre + ("S",)), 1))
                if n >= 4:
                    parts.append((self.seq(j + 1, j, pre + ("M",)), n - 3))
                parts.append((self.seq(j + 1, j, pre + ("L",)), 1))
            mat, counts = None, {}
            for (m, t), k in parts:
                p = _mp_pow(m, k) if k > 1 else m
                mat = p if mat is None else _mp_mul(mat, p)
                for leaf, n_leaf in t.items():
                    counts[leaf] = counts.get(leaf, 0) + n_leaf * k
            result = (mat, counts)
        self.memo[key] = result
        return result

    def run(self):
        mat, counts = self.seq(0, -1, ())
        totals = {}
        for leaf, n_leaf in counts.items():
            _add_totals(totals, self.leaf_totals[leaf], n_leaf)
        term, t2 = self.bundle(-2, ())
        mat = _mp_mul(mat, term)
        _add_totals(totals, t2)
        x0 = np.full(_STATE, NEG)
        x0[:] = 0.0
        finals = np.max(x0[None, :, None] + mat, axis=1)       # [V, n]
        cycles = [int(round(float(np.max(f)))) for f in finals]
        return GroupResult(self.index, tuple(m.name for m in self.members), cycles[0], cycles[1], cycles[2],
                           _nest(totals))


def simulate_group(ctx, index, group):
    """Simulate schedule group ``index`` (a :class:`mapper.mapping.Group` with its loops)."""
    return _Group(ctx, index, group).run()


@dataclass
class SimContext:
    """What the engine needs about the whole cascade: plans, and where each tensor lives."""

    cascade: object
    arch: object
    mapping: object
    plans: dict
    source: dict            # tensor -> "dram" (cascade input) | "onchip" | "produced"
    out_dram: dict          # tensor -> whether its producer writes it to DRAM
    group_of_tensor: dict   # tensor -> index of the group that produces it


def make_context(cascade, arch, mapping, groups):
    plans = {e.name: plan_einsum(cascade, arch, mapping, e.name) for e in cascade.einsums}
    group_of = {n: i for i, g in enumerate(groups) for n in g.einsums}
    group_of_tensor = {e.output.tensor: group_of[e.name] for e in cascade.einsums}
    source = {}
    for t in cascade.tensors:
        if t not in cascade.producers:
            source[t] = "dram"
        elif t in mapping.onchip:
            source[t] = "onchip"
        else:
            source[t] = "produced"
    out_dram = {}
    for e in cascade.einsums:
        t = e.output.tensor
        later = any(group_of[c.name] != group_of[e.name] for c in cascade.einsums
                    if c.name != e.name and any(a.tensor == t for a in c.input_accesses))
        out_dram[t] = t in cascade.outputs or (later and t not in mapping.onchip)
    return SimContext(cascade, arch, mapping, plans, source, out_dram, group_of_tensor)
