"""The mapping ILP: build -> (solve, in :mod:`mapper.solver`) -> decode.

CoSA-style (Huang et al., ISCA 2021): every rank's temporal remainder is split between the ``glb``
and ``dram`` loops by integer prime-factor multiplicities ``nd[e, r, p]`` (how many copies of prime
``p`` go to the DRAM loop), so GLB capacity is a constraint linear in ``log2(factor) * x``; the PE
count is bounded the same way in the config choice (``log2`` of the rows and columns used). What
is not a product is linearized exactly:

* an einsum's compute cycles and unit energy are per-config constants, so a one-hot ``y[e, c]``
  over the configs prices them exactly (the array's fill and drain are not multiplicative);
* a DRAM traffic term ``size x prod(dram trips)`` is picked by a one-hot ``z`` over its possible
  values, tied to the multiplicities prime by prime (values grow with every exponent, so the
  minimum picks the true one);
* GLB shares are powers of two (``glb / 2**a``): a one-hot per tensor makes both the per-tensor
  bound (log domain) and the per-group sum (linear) exact;
* a fused group's latency is the max of its array work, 1D work and DRAM time; a singleton's is
  ``max(compute, dram / bandwidth)``.

Each constraint family is one method and every constraint is named ``family[einsum,...]``. The
model is plain Python (:class:`LinearModel`); only :mod:`mapper.solver` knows PuLP.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .cost import dram_multiplier, memory_widths, _table
from .space import (
    CascadeChoice, EinsumChoice, divisors, fusable, group_edges, multiplicity, prime_factors,
)

__all__ = ["LinearModel", "MappingILP", "OBJECTIVES", "Violation"]

OBJECTIVES = ("latency", "energy", "edp")
_EPS = 1e-7


@dataclass(frozen=True)
class Violation:
    """A constraint (or bound / integrality) a point breaks: ``excess`` is by how much, ``relative``
    the excess over ``max(1, |rhs|, largest |term|)`` (what a solver's tolerance compares)."""

    name: str
    lhs: float
    sense: str
    rhs: float
    excess: float
    relative: float


@dataclass
class LinearModel:
    """A mixed-integer linear program: minimize ``objective`` subject to named constraints.

    ``reduced`` (optional) is an equivalent model over the same variables with a narrower
    coefficient range, for solvers whose tolerances the full range defeats (HiGHS, see
    docs/mapper.md): variables whose being nonzero forces the latency above ``cutoff`` are fixed to
    zero and dropped from every row, big-M's are recomputed from what is left, and rows that cannot
    bind the objective are dropped (their continuous variables ``implied`` are recomputed by
    :meth:`complete`). ``cutoff_exact``: the cutoff is a constraint of the model, so no point is
    lost; otherwise (a heuristic upper bound on the latency objective) the reduced optimum is the
    full one only when it does not exceed ``cutoff`` (the caller checks).
    """

    names: list = field(default_factory=list)
    kinds: list = field(default_factory=list)      # "bin" | "int" | "cont"
    lower: list = field(default_factory=list)
    upper: list = field(default_factory=list)
    constraints: list = field(default_factory=list)  # (name, {var: coef}, sense, rhs)
    objective: dict = field(default_factory=dict)
    _index: dict = field(default_factory=dict)
    reduced: "LinearModel | None" = None
    cutoff: float | None = None
    cutoff_exact: bool = True
    implied: tuple = ()

    def var(self, name, kind="bin", lower=0.0, upper=1.0) -> int:
        if name in self._index:
            raise ValueError(f"variable {name} defined twice")
        self._index[name] = len(self.names)
        self.names.append(name)
        self.kinds.append(kind)
        self.lower.append(lower)
        self.upper.append(upper)
        return self._index[name]

    def add(self, name, terms, sense, rhs):
        coefs = {}
        for v, c in (terms.items() if isinstance(terms, dict) else terms):
            if c:
                coefs[v] = coefs.get(v, 0.0) + c
        if any(n == name for n, *_ in self.constraints[-1:]):
            raise ValueError(f"constraint {name} defined twice")
        self.constraints.append((name, coefs, sense, float(rhs)))

    def minimize(self, terms):
        self.objective = {}
        for v, c in (terms.items() if isinstance(terms, dict) else terms):
            if c:
                self.objective[v] = self.objective.get(v, 0.0) + c

    def value(self, values) -> float:
        """The objective at ``values`` (one number per variable)."""
        return sum(c * values[v] for v, c in self.objective.items())

    def violations(self, values, tol=1e-9, atol=0.0) -> list:
        """The constraints, bounds and integralities ``values`` breaks by more than ``tol`` (relative,
        see :class:`Violation`) and ``atol`` (absolute), worst first: the tolerance report of a
        solver's answer."""
        out = []
        for name, coefs, sense, rhs in self.constraints:
            terms = [c * values[v] for v, c in coefs.items()]
            lhs = sum(terms)
            excess = {"<=": lhs - rhs, ">=": rhs - lhs}.get(sense, abs(lhs - rhs))
            scale = max([1.0, abs(rhs)] + [abs(t) for t in terms])
            if excess > max(tol * scale, atol):
                out.append(Violation(name, lhs, sense, rhs, excess, excess / scale))
        for i, (name, kind, lo, hi) in enumerate(zip(self.names, self.kinds, self.lower, self.upper)):
            x = values[i]
            if lo is not None and x < lo - tol * max(1.0, abs(lo)):
                out.append(Violation(f"lower[{name}]", x, ">=", lo, lo - x, (lo - x) / max(1.0, abs(lo))))
            if hi is not None and x > hi + tol * max(1.0, abs(hi)):
                out.append(Violation(f"upper[{name}]", x, "<=", hi, x - hi, (x - hi) / max(1.0, abs(hi))))
            if kind != "cont" and abs(x - round(x)) > tol:
                out.append(Violation(f"integer[{name}]", x, "==", round(x), abs(x - round(x)), abs(x - round(x))))
        return sorted(out, key=lambda v: -v.relative)

    def complete(self, values) -> tuple:
        """``values`` with every ``implied`` variable set to the least value its rows allow (each is
        continuous and relaxes every row it is in as it grows; see :attr:`reduced`)."""
        x = list(values)
        for j in self.implied:
            need = self.lower[j] if self.lower[j] is not None else 0.0
            for name, coefs, sense, rhs in self.constraints:
                a = coefs.get(j)
                if not a:
                    continue
                rest = sum(c * x[v] for v, c in coefs.items() if v != j)
                need = max(need, (rhs - rest) / a)
            x[j] = need
        return tuple(x)

    def coefficient_range(self) -> tuple:
        """``(smallest, largest)`` nonzero ``|coefficient|`` of the rows."""
        mags = [abs(c) for _, coefs, _, _ in self.constraints for c in coefs.values() if c]
        return (min(mags), max(mags)) if mags else (0.0, 0.0)

    @property
    def size(self) -> dict:
        return {"variables": len(self.names), "binaries": self.kinds.count("bin"),
                "integers": self.kinds.count("int"), "constraints": len(self.constraints)}


class MappingILP:
    """The ILP of a :class:`~mapper.space.CascadeSpace` for one objective.

    ``latency_cap`` / ``energy_cap`` bound the other objective (the ε-constraint steps of EDP).
    ``latency_bound`` is the cutoff of the model's :attr:`~LinearModel.reduced` form when minimizing
    latency: ``"baseline"`` (the baseline mapping's latency), a number, or None (no cutoff).
    """

    def __init__(self, space, objective="latency", latency_cap=None, energy_cap=None, latency_bound="baseline"):
        if objective not in ("latency", "energy"):
            raise ValueError(f"objective must be latency or energy, not {objective!r}")
        self.space = space
        self.objective = objective
        self.latency_cap = latency_cap
        self.energy_cap = energy_cap
        self.m = LinearModel()
        self.y, self.st, self.nd, self.keep = {}, {}, {}, {}
        self.fuse, self.opt, self.share = {}, {}, {}
        self.latency_terms, self.energy_terms = [], []
        self.single = {}      # einsum -> [(var, coef)], constant 1 as [] with const flag
        self.traffic_bytes = {}   # einsum -> [(var, bytes)] singleton DRAM bytes
        self.latency_bound = latency_bound
        self.latency_rows = []    # rows "latency var >= sum of a * var" (floors, droppable for energy)
        self.serial_rows = {}     # group -> (row index, latency var, serial var, members)
        self.yf = {}
        self._prices()

    # -- helpers ----------------------------------------------------------------------------------
    def _prices(self):
        arch = self.space.arch
        table = _table(arch.energy_table)
        widths = memory_widths(arch)
        width = arch.memory.glb_port_bits
        gr = table.price("glb_read", capacity_bytes=widths["glb_read"][0], width_bits=width)
        gw = table.price("glb_write", capacity_bytes=widths["glb_write"][0], width_bits=width)
        self.pj_glb_read_byte = gr * 8 / width
        self.pj_glb_write_byte = gw * 8 / width
        self.pj_dram_read_byte = table.price("dram_read_bit") * 8 + self.pj_glb_write_byte
        self.pj_dram_write_byte = table.price("dram_write_bit") * 8 + self.pj_glb_read_byte
        self.table = table

    def config_energy(self, es, cfg) -> float:
        unit = sum(self.table.energy(cfg.actions, memory_widths(self.space.arch, cfg.unit)).values())
        return (unit + cfg.glb_read_bits / 8 * self.pj_glb_read_byte
                + cfg.glb_write_bits / 8 * self.pj_glb_write_byte)

    def _single_terms(self, name):
        """``(terms, const)`` of the indicator that einsum ``name`` runs as its own group."""
        k = self.space.group_of(name)
        if k is None or k not in self.fuse:
            return [], 1.0
        return [(self.fuse[k], -1.0)], 1.0

    # -- build ------------------------------------------------------------------------------------
    def build(self) -> LinearModel:
        self._config_choice()
        self._fusion()
        self._stationarity()
        self._dram_split()
        self._onchip()
        self._buffer_shares()
        self._capacity()
        self._traffic()
        self._latency()
        self._energy()
        self._objective()
        self.m.reduced = self._reduced()
        return self.m

    def _config_choice(self):
        """one_config[e]: each einsum runs exactly one config; pe_rows/pe_cols[e]: the log2 of the
        rows and columns a config uses stays within the array's (CoSA's PE-count constraint)."""
        arch = self.space.arch
        for name, es in self.space.einsums.items():
            for ci, cfg in enumerate(es.configs):
                self.y[name, ci] = self.m.var(f"y[{name},{ci}]")
            self.m.add(f"one_config[{name}]", [(self.y[name, ci], 1) for ci in range(len(es.configs))], "==", 1)
            for dim, cap in (("rows", arch.array.rows), ("cols", arch.array.cols), ("lanes", (arch.vector.lanes if arch.vector else 1))):
                terms = []
                for ci, cfg in enumerate(es.configs):
                    used = math.prod(cfg.spatial.get(dim, {}).values())
                    if cfg.kind == "gemm" and dim == "rows" and arch.array.dataflow != "output-stationary":
                        used = math.ceil(used / arch.pe_params(es.weight_format).lanes)
                    if used > 1:
                        terms.append((self.y[name, ci], math.log2(used)))
                if terms:
                    self.m.add(f"pe_{dim}[{name}]", terms, "<=", math.log2(cap) + _EPS)

    def _fusion(self):
        """one_loop_option[g]: a fused group runs exactly one of its DRAM loop nests;
        fused_unpadded[e,c]: fused members tile the group's loop ranks without padding (so every
        member has the same GLB tile along them, as the contract requires)."""
        for k, g in enumerate(self.space.groups):
            self.fuse[k] = self.m.var(f"fuse[{k}]")
            for oi, _ in enumerate(g.options):
                self.opt[k, oi] = self.m.var(f"loops[{k},{oi}]")
            self.m.add(f"one_loop_option[{k}]", [(self.opt[k, oi], 1) for oi in range(len(g.options))]
                       + [(self.fuse[k], -1)], "==", 0)
            for n in g.einsums:
                es = self.space.einsums[n]
                for ci, cfg in enumerate(es.configs):
                    if not fusable(es, cfg, g.loop_ranks):
                        self.m.add(f"fused_unpadded[{n},{ci}]", [(self.y[n, ci], 1), (self.fuse[k], 1)], "<=", 1)

    def _stationarity(self):
        """one_order[e]: an einsum running alone picks one stationary tensor (its DRAM loop order)."""
        for name, es in self.space.einsums.items():
            terms, const = self._single_terms(name)
            for t in es.orders:
                self.st[name, t] = self.m.var(f"stationary[{name},{t}]")
            self.m.add(f"one_order[{name}]", [(self.st[name, t], 1) for t in es.orders]
                       + [(v, -c) for v, c in terms], "==", const)

    def _primes(self, name, r):
        es = self.space.einsums[name]
        ps = set()
        for cfg in es.configs:
            ps.update(p for p, _ in prime_factors(cfg.positions[r]))
        k = self.space.group_of(name)
        if k is not None and k in self.fuse:
            for o in self.space.groups[k].options:
                t = o.trips.get(r, 1)
                ps.update(p for p, _ in prime_factors(t))
        return sorted(ps)

    def _dram_split(self):
        """split[e,r,p]: the DRAM trips of rank r divide its positions (prime by prime);
        group_trip / group_no_trip[e,r,p]: in a fused group they equal the group's loop."""
        for name, es in self.space.einsums.items():
            k = self.space.group_of(name)
            fused = k is not None and k in self.fuse
            for r in es.ranks:
                for p in self._primes(name, r):
                    cap = max([multiplicity(cfg.positions[r], p) for cfg in es.configs] + [0])
                    big = max(cap, 1) + max([multiplicity(o.trips.get(r, 1), p) for o in
                                             (self.space.groups[k].options if fused else ())] + [0])
                    v = self.nd[name, r, p] = self.m.var(f"nd[{name},{r},{p}]", "int", 0, max(cap, 0))
                    self.m.add(f"split[{name},{r},{p}]", [(v, 1)] + [
                        (self.y[name, ci], -multiplicity(cfg.positions[r], p)) for ci, cfg in enumerate(es.configs)],
                        "<=", 0)
                    if not fused:
                        continue
                    g = self.space.groups[k]
                    if r in g.loop_ranks:
                        mult = [(self.opt[k, oi], -multiplicity(o.trips.get(r, 1), p)) for oi, o in enumerate(g.options)]
                        self.m.add(f"group_trip_lo[{name},{r},{p}]", [(v, 1)] + mult, ">=", 0)
                        self.m.add(f"group_trip_hi[{name},{r},{p}]", [(v, 1)] + mult + [(self.fuse[k], big)],
                                   "<=", big)
                    else:
                        self.m.add(f"group_no_trip[{name},{r},{p}]", [(v, 1), (self.fuse[k], big)], "<=", big)

    def _onchip(self):
        """keep[t]: an intermediate stays on chip between its producer and its last consumer."""
        for t in self.space.onchip_candidates:
            self.keep[t] = self.m.var(f"keep[{t}]")

    def _scopes(self):
        """Buffer scopes: each einsum alone (active when not fused) and each fused group."""
        out = []
        for name, es in self.space.einsums.items():
            terms, const = self._single_terms(name)
            out.append((("e", name), [u.tensor for u in es.tensors], terms, const, (name,)))
        for k, g in enumerate(self.space.groups):
            tensors = []
            for n in g.einsums:
                for u in self.space.einsums[n].tensors:
                    if u.tensor not in tensors:
                        tensors.append(u.tensor)
            out.append((("g", k), tensors, [(self.fuse[k], 1.0)], 0.0, g.einsums))
        return out

    def _buffer_shares(self):
        """one_share[s,t]: every tensor of an active scope gets one GLB share glb/2**a;
        budget[s]: the shares and the on-chip tensors live in the scope fit the buffer."""
        levels = self.space.options.share_levels
        glb = self.space.glb_bytes
        for scope, tensors, act_terms, act_const, members in self._scopes():
            sname = f"{scope[0]}:{scope[1]}"
            budget = []
            for t in tensors:
                for a in range(levels + 1):
                    self.share[scope, t, a] = self.m.var(f"share[{sname},{t},{a}]")
                    budget.append((self.share[scope, t, a], 2.0 ** -a))
                self.m.add(f"one_share[{sname},{t}]", [(self.share[scope, t, a], 1) for a in range(levels + 1)]
                           + [(v, -c) for v, c in act_terms], "==", act_const)
            kept = [(self.keep[x], self.space.footprint[x] / glb) for x in self.keep
                    if any(n in self.space.live[x] for n in members)]
            big = sum(c for _, c in kept)
            # relaxed by `big` when the scope is not active
            self.m.add(f"budget[{sname}]", budget + kept + [(v, big * c) for v, c in act_terms], "<=",
                       1 + big * (1 - act_const) + _EPS)

    def _capacity(self):
        """capacity[e,t]: log2 of the double-buffered GLB tile of tensor t is at most log2 of its share
        (tile extents in log2: the config's op extent x positions, minus the DRAM prime factors)."""
        glb = self.space.glb_bytes
        levels = self.space.options.share_levels
        for name, es in self.space.einsums.items():
            k = self.space.group_of(name)
            for u in es.tensors:
                terms = []
                for ci, cfg in enumerate(es.configs):
                    ext = math.prod(cfg.op_extent[r] * cfg.positions[r] for r in u.ranks)
                    if ext > 1:
                        terms.append((self.y[name, ci], math.log2(ext)))
                for r in u.ranks:
                    for p in self._primes(name, r):
                        terms.append((self.nd[name, r, p], -math.log2(p)))
                for a in range(1, levels + 1):
                    terms.append((self.share[("e", name), u.tensor, a], a))
                    if k is not None and k in self.fuse:
                        terms.append((self.share[("g", k), u.tensor, a], a))
                base = math.log2(2 * u.bits / 8 * u.fixed_elements)
                self.m.add(f"capacity[{name},{u.tensor}]", terms, "<=", math.log2(glb) - base + _EPS)

    def _traffic_values(self, name, ranks):
        """Possible values of the product of the DRAM trips of ``ranks`` (and their exponents)."""
        es = self.space.einsums[name]
        vals = {1}
        for r in ranks:
            ds = set()
            for cfg in es.configs:
                ds.update(divisors(cfg.positions[r]))
            vals = {a * b for a in vals for b in ds}
        return sorted(vals)

    def _active(self, name, r):
        """active[e,r]: 1 when rank r has more than one DRAM trip (a loop of one trip does not exist)."""
        key = (name, r)
        if key in self.active:
            return self.active[key]
        nds = [(v, p) for (n, rr, p), v in self.nd.items() if n == name and rr == r]
        if not nds:
            self.active[key] = None
            return None
        a = self.active[key] = self.m.var(f"active[{name},{r}]")
        big = sum(self.m.upper[v] for v, _ in nds) or 1
        self.m.add(f"active_hi[{name},{r}]", [(v, 1) for v, _ in nds] + [(a, -big)], "<=", 0)
        return a

    def _traffic(self):
        """pick_traffic / traffic_exp[e,u,t,p]: the DRAM bytes of tensor u when t is stationary, by a
        one-hot over the values of the product of the trips that refetch it; refetch[e,u,t,r] counts
        an irrelevant loop only when a relevant loop inside it has more than one trip."""
        space = self.space
        self.active = {}
        for name, es in space.einsums.items():
            self.traffic_bytes[name] = []
            for t, order in es.orders.items():
                st = self.st[name, t]
                for u in es.tensors:
                    last = max((i for i, r in enumerate(order) if r in u.deps), default=-1)
                    refetch = [(i, r) for i, r in enumerate(order) if i <= last and r not in u.ranks]
                    refetch = [(i, r) for i, r in refetch if any((name, r, p) in self.nd for p in self._primes(name, r))]
                    vals = self._traffic_values(name, [r for _, r in refetch])
                    size = u.elements(lambda r: es.sizes[r]) * u.bits / 8
                    keep = self.keep.get(u.tensor)
                    zs = []
                    for v in vals:
                        z = self.m.var(f"z[{name},{u.tensor},{t},{v}]")
                        zs.append((z, v))
                        if u.is_output:
                            self.traffic_bytes[name].append((z, size * (v - 1), size * v))
                        else:
                            self.traffic_bytes[name].append((z, size * v, 0.0))
                    pick = [(z, 1) for z, _ in zs] + [(st, -1)] + ([(keep, 1)] if keep is not None else [])
                    self.m.add(f"pick_traffic[{name},{u.tensor},{t}]", pick, ">=", 0)
                    self.m.add(f"one_traffic[{name},{u.tensor},{t}]", [(z, 1) for z, _ in zs], "<=", 1)
                    # o[i] = 1 when a relevant loop inside position i has more than one trip
                    outer_on = {}
                    for i, r in refetch:
                        if r in u.deps:     # a loop the tile depends on but that does not index it
                            outer_on[r] = None
                            continue
                        inner = [self._active(name, rr) for j, rr in enumerate(order) if j > i and rr in u.deps]
                        inner = [a for a in inner if a is not None]
                        if not inner:
                            continue
                        o = self.m.var(f"refetch[{name},{u.tensor},{t},{r}]")
                        for j, a in enumerate(inner):
                            self.m.add(f"refetch_on[{name},{u.tensor},{t},{r},{j}]", [(o, 1), (a, -1)], ">=", 0)
                        outer_on[r] = o
                    primes = sorted({p for v in vals for p, _ in prime_factors(v)})
                    for p in primes:
                        counted = []
                        for _, r in refetch:
                            if (name, r, p) not in self.nd or r not in outer_on:
                                continue
                            nd = self.nd[name, r, p]
                            if outer_on[r] is None:
                                counted.append((nd, -1))
                                continue
                            cap = self.m.upper[nd]
                            w = self.m.var(f"refetch_exp[{name},{u.tensor},{t},{r},{p}]", "cont", 0, cap)
                            self.m.add(f"refetch_lo[{name},{u.tensor},{t},{r},{p}]",
                                       [(w, 1), (nd, -1), (outer_on[r], -cap)], ">=", -cap)
                            counted.append((w, -1))
                        big = max(multiplicity(v, p) for v in vals)
                        terms = [(z, multiplicity(v, p)) for z, v in zs] + counted + [(st, -big)]
                        if keep is not None:
                            terms.append((keep, big))
                        self.m.add(f"traffic_exp[{name},{u.tensor},{t},{p}]", terms, ">=", -big)

    def _fused_bytes(self, k):
        """``[(var, read_bytes, write_bytes)]`` of the fused group ``k``'s DRAM traffic."""
        space = self.space
        g = space.groups[k]
        cascade = space.cascade
        producers = {e.output.tensor: e.name for e in cascade.einsums}
        consumers = {}
        for e in cascade.einsums:
            for a in e.input_accesses:
                if a.tensor != e.output.tensor:
                    consumers.setdefault(a.tensor, set()).add(e.name)
        members = set(g.einsums)
        out = []
        for name in g.einsums:
            es = space.einsums[name]
            for u in es.tensors:
                p = producers.get(u.tensor)
                if p in members and u.tensor not in cascade.outputs:
                    if p != name or consumers.get(u.tensor, set()) <= members:
                        continue
                size = u.elements(lambda r: es.sizes[r]) * u.bits / 8
                keep = self.keep.get(u.tensor)
                for oi, o in enumerate(g.options):
                    trips = {r: o.trips.get(r, 1) for r in es.ranks}
                    loops = [r for r, _ in o.loops if r in es.ranks]
                    order = loops + [r for r in es.ranks if r not in loops]
                    mult = dram_multiplier(u.ranks, trips, order, u.deps)
                    rb, wb = (size * (mult - 1), size * mult) if u.is_output else (size * mult, 0.0)
                    if rb == 0 and wb == 0:
                        continue
                    if keep is None:
                        out.append((self.opt[k, oi], rb, wb))
                    else:
                        q = self.m.var(f"q[{name},{u.tensor},{oi}]", "cont", 0, 1)
                        self.m.add(f"fused_offchip[{name},{u.tensor},{oi}]",
                                   [(q, 1), (self.opt[k, oi], -1), (keep, 1)], ">=", 0)
                        out.append((q, rb, wb))
        return out

    def _latency(self):
        """lat_compute / lat_dram[e]: an einsum alone takes max(compute, DRAM bytes / bandwidth);
        grp_array / grp_vector / grp_dram[g]: a fused group takes the max of its units' work and its
        DRAM time, or (grp_serial, grp_waits) the sum of its units' work when an array member
        consumes, in the same step, what a 1D-array member makes;
        DRAM time."""
        space = self.space
        bpc = space.arch.dram_bytes_per_cycle
        self.group_bytes = {}
        yf = {}
        for k, g in enumerate(space.groups):
            for n in g.einsums:
                configs = space.einsums[n].configs
                for ci in range(len(configs)):
                    v = yf[n, ci] = self.m.var(f"y_fused[{n},{ci}]", "cont", 0, 1)
                    self.m.add(f"fused_config[{n},{ci}]", [(v, 1), (self.y[n, ci], -1)], "<=", 0)
                self.m.add(f"fused_config_sum[{n}]", [(yf[n, ci], 1) for ci in range(len(configs))]
                           + [(self.fuse[k], -1)], "==", 0)
        self.yf = yf

        def add_latency_row(name, L, terms):
            self.latency_rows.append((len(self.m.constraints), L))
            self.m.add(name, [(L, 1)] + terms, ">=", 0)

        for name, es in space.einsums.items():
            L = self.m.var(f"latency[{name}]", "cont", 0, None)
            self.latency_terms.append((L, 1.0))
            compute = [(self.y[name, ci], cfg.compute_cycles) for ci, cfg in enumerate(es.configs)]
            compute += [(yf[name, ci], -cfg.compute_cycles) for ci, cfg in enumerate(es.configs) if (name, ci) in yf]
            add_latency_row(f"lat_compute[{name}]", L, [(v, -c) for v, c in compute])
            add_latency_row(f"lat_dram[{name}]", L,
                            [(v, -(rb + wb) / bpc) for v, rb, wb in self.traffic_bytes[name]])
        for k, g in enumerate(space.groups):
            L = self.m.var(f"latency_group[{k}]", "cont", 0, None)
            self.latency_terms.append((L, 1.0))
            for unit in ("array", "vector"):
                work = [(yf[n, ci], cfg.compute_cycles) for n in g.einsums
                        for ci, cfg in enumerate(space.einsums[n].configs) if cfg.unit == unit]
                add_latency_row(f"grp_{unit}[{k}]", L, [(v, -c) for v, c in work])
            # the array waiting for the 1D array inside a step serializes the pipeline
            edges = group_edges(space, g)
            if edges:
                serial = self.m.var(f"serial[{k}]")
                for d, e in edges:
                    vec = [(self.y[d, ci], 1) for ci, cfg in enumerate(space.einsums[d].configs) if cfg.unit == "vector"]
                    arr = [(self.y[e, ci], 1) for ci, cfg in enumerate(space.einsums[e].configs) if cfg.unit == "array"]
                    if vec and arr:
                        self.m.add(f"grp_waits[{k},{d},{e}]", [(serial, 1)] + [(v, -1) for v, _ in vec + arr], ">=", -1)
                work = [(yf[n, ci], cfg.compute_cycles) for n in g.einsums
                        for ci, cfg in enumerate(space.einsums[n].configs)]
                big = sum(max(cfg.compute_cycles for cfg in space.einsums[n].configs) for n in g.einsums)
                self.serial_rows[k] = (len(self.m.constraints), L, serial, g.einsums)
                self.m.add(f"grp_serial[{k}]", [(L, 1)] + [(v, -c) for v, c in work] + [(serial, -big)], ">=", -big)
            fb = self._fused_bytes(k)
            self.group_bytes[k] = fb
            add_latency_row(f"grp_dram[{k}]", L, [(v, -(rb + wb) / bpc) for v, rb, wb in fb])

    def _energy(self):
        """Energy terms: config constants (unit actions, GLB traffic of the unit) and DRAM bytes."""
        for name, es in self.space.einsums.items():
            for ci, cfg in enumerate(es.configs):
                self.energy_terms.append((self.y[name, ci], self.config_energy(es, cfg)))
            for v, rb, wb in self.traffic_bytes[name]:
                self.energy_terms.append((v, rb * self.pj_dram_read_byte + wb * self.pj_dram_write_byte))
        for k, fb in self.group_bytes.items():
            for v, rb, wb in fb:
                self.energy_terms.append((v, rb * self.pj_dram_read_byte + wb * self.pj_dram_write_byte))

    def _objective(self):
        """The objective, and the ε-constraint caps (latency_cap / energy_cap) of the EDP walk."""
        if self.latency_cap is not None:
            self.m.add("latency_cap", self.latency_terms, "<=", self.latency_cap)
        if self.energy_cap is not None:
            self.m.add("energy_cap", self.energy_terms, "<=", self.energy_cap)
        self.m.minimize(self.latency_terms if self.objective == "latency" else self.energy_terms)

    # -- reduced form (numerics) ---------------------------------------------------------------------
    def _baseline_latency(self):
        """The latency the ILP counts for the baseline mapping, or None (no baseline)."""
        from .cost import predict

        if self.space.default is None:
            return None
        try:
            return predict(self.space.cascade, self.space.arch, self.space.default, self.space).objective_cycles
        except Exception:  # a baseline the cost model cannot price gives no cutoff
            return None

    def _reduced(self):
        """The :attr:`LinearModel.reduced` form, or None when it would equal the model.

        Config compute cycles span 1e2 .. 1e11 (configs using a few PEs of a big einsum) next to
        binaries, and HiGHS's tolerances (1e-6 relative) then cut off feasible points and accept
        infeasible ones. Every binary ``v`` of a latency row ``L >= sum a v`` (and every ``y_fused``
        through its ``y``) has a floor: a point with ``v = 1`` has latency at least ``a``. With a
        cutoff U (the latency cap of an ε-constraint step: exact; or the baseline's latency when
        minimizing latency: exact when the reduced optimum is <= U), variables whose floor exceeds U
        are fixed to 0 and the ``grp_serial`` big-M shrinks to the work of the configs left. When
        minimizing energy without a latency cap the latency rows cannot bind, so they are dropped
        and their latency variables recomputed (:meth:`LinearModel.complete`).
        """
        m = self.m
        exact = True
        if self.latency_cap is not None:
            cutoff = float(self.latency_cap)
        elif self.objective == "latency":
            cutoff = self._baseline_latency() if self.latency_bound == "baseline" else self.latency_bound
            exact = False
        else:
            cutoff = None
        drop = set()
        if self.objective == "energy" and self.latency_cap is None:
            drop = {i for i, _ in self.latency_rows} | {row[0] for row in self.serial_rows.values()}
            m.implied = tuple(v for v, _ in self.latency_terms)
        floors = {}
        for i, _ in self.latency_rows:
            for v, c in m.constraints[i][1].items():
                if c < 0 and m.kinds[v] == "bin":
                    floors[v] = max(floors.get(v, 0.0), -c)
        for (n, ci), v in self.yf.items():
            floors[v] = floors.get(self.y[n, ci], 0.0)
        dead = set()
        if cutoff is not None and math.isfinite(cutoff):
            limit = cutoff * (1 + 1e-9) + 1e-9
            dead = {v for v, f in floors.items() if f > limit}
        m.cutoff, m.cutoff_exact = cutoff, exact
        if not dead and not drop:
            return None
        serial = {row[0]: row for row in self.serial_rows.values()}
        constraints = []
        for i, (name, coefs, sense, rhs) in enumerate(m.constraints):
            if i in drop:
                continue
            kept = {v: c for v, c in coefs.items() if v not in dead}
            if i in serial:
                _, _, s, members = serial[i]
                es = self.space.einsums
                big = float(sum(max([cfg.compute_cycles for ci, cfg in enumerate(es[n].configs)
                                     if self.y[n, ci] not in dead] + [0]) for n in members))
                kept.pop(s, None)
                if big:
                    kept[s] = -big
                rhs = -big
            if not kept and {"<=": 0 <= rhs, ">=": 0 >= rhs}.get(sense, rhs == 0):
                continue
            constraints.append((name, kept or coefs, sense, rhs))
        upper = list(m.upper)
        for v in dead:
            upper[v] = 0.0
        return LinearModel(names=m.names, kinds=m.kinds, lower=m.lower, upper=upper, constraints=constraints,
                           objective={v: c for v, c in m.objective.items() if v not in dead}, _index=m._index)

    # -- decode -----------------------------------------------------------------------------------
    def decode(self, values) -> CascadeChoice:
        """The :class:`CascadeChoice` of a solution (``values``: one number per variable)."""
        def on(v):
            return values[v] > 0.5

        space = self.space
        fused = tuple((k, oi) for (k, oi), v in self.opt.items() if on(v))
        fused_groups = {k for k, _ in fused}
        einsums = []
        for name, es in space.einsums.items():
            ci = next(ci for ci in range(len(es.configs)) if on(self.y[name, ci]))
            trips = {}
            for r in es.ranks:
                t = 1
                for p in self._primes(name, r):
                    t *= p ** int(round(values[self.nd[name, r, p]]))
                trips[r] = t
            k = space.group_of(name)
            if k is not None and k in fused_groups:
                stationary = None
            else:
                stationary = next(t for t in es.orders if on(self.st[name, t]))
            einsums.append(EinsumChoice(name, ci, tuple(sorted(trips.items())), stationary))
        onchip = frozenset(t for t, v in self.keep.items() if on(v))
        return CascadeChoice(tuple(einsums), fused, onchip)
