"""The closed-form engine equals a plain step-by-step simulation of the same machine model.

The reference below walks every step of every group's loop nest in Python, finds what each step
loads and stores from the tile coordinates themselves (not from the engine's step classes), and
runs the pipeline recurrences with scalars. The engine must agree exactly on the cycles (for the
real run and both counterfactuals), the DRAM bytes and every unit's busy cycles.
"""
import itertools
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import load_cascade
from dataflow.errors import MappingError
from mapper.mapping import access_extent
from sim.engine import UNIT_NAMES, make_context, simulate_group
from sim.units import slice_cost


def _tile_bytes(ctx, plan, access, ext):
    extent_of = dict(zip(plan.ranks, ext))
    n = access_extent(ctx.cascade, access, lambda r: extent_of.get(r, ctx.cascade.shapes[r]))
    return math.ceil(n * plan.bits[access.tensor] / 8)


def reference_group(ctx, index, group):
    """Step-by-step simulation of one group: returns (cycles per variant, dram bytes, busy)."""
    cascade = ctx.cascade
    ranks = [r for r, _ in group.loops]
    trips = [t for _, t in group.loops]
    members = [e.name for e in cascade.topological_einsums() if e.name in group.einsums]
    info = {}
    for name in members:
        plan = ctx.plans[name]
        e = plan.einsum
        run_at = {}
        for j, r in enumerate(ranks):
            if r not in plan.ranks:
                reads = any(r in cascade.tensors[a.tensor].ranks for a in e.input_accesses
                            if a.tensor != e.output.tensor)
                run_at[j] = "last" if reads else "first"
        dram_inputs = [a for a in e.input_accesses if a.tensor != e.output.tensor
                       and (ctx.source[a.tensor] == "dram"
                            or (ctx.group_of_tensor.get(a.tensor) != index and ctx.source[a.tensor] != "onchip"))]
        deps = {cascade.producers[a.tensor].name for a in e.input_accesses
                if a.tensor in cascade.producers and a.tensor != e.output.tensor
                and cascade.producers[a.tensor].name in members}
        info[name] = (plan, run_at, dram_inputs, ctx.out_dram[e.output.tensor], deps)

    def runs(name, t):
        _, run_at, *_ = info[name]
        return all(t[j] == (0 if w == "first" else trips[j] - 1) for j, w in run_at.items())

    def extents(plan, t):
        out = []
        for r, size, tile in zip(plan.ranks, plan.sizes, plan.glb_tile):
            if r in ranks:
                j = ranks.index(r)
                out.append(tile if t[j] < trips[j] - 1 else size - (trips[j] - 1) * tile)
            else:
                out.append(min(size, tile))
        return tuple(out)

    def coords(access, t):
        vs = {v.upper() for v in access.vars}
        return tuple(t[j] for j, r in enumerate(ranks) if r in vs)

    def first_visit(plan, t):
        out = {v.upper() for v in plan.einsum.output_vars}
        return all(t[j] == 0 for j, r in enumerate(ranks) if r in plan.ranks and r not in out)

    def pad_offsets(plan, t):
        out = []
        for o, i, _ in plan.partitions:
            last = t[ranks.index(o)] == trips[ranks.index(o)] - 1 if o in ranks else True
            offset = t[ranks.index(i)] * plan.glb_tile[plan.index(i)] if i in ranks else 0
            out.append(offset if last else None)
        return tuple(out)

    bpc = ctx.arch.dram_bytes_per_cycle
    steps = list(itertools.product(*[range(n) for n in trips]))
    ends = []
    dram_read = dram_write = 0
    busy = {u: 0 for u in UNIT_NAMES}
    for variant in range(3):
        tL = tS = tC = tCp = 0
        unit_t = {u: 0 for u in UNIT_NAMES}
        for i, t in enumerate(steps + [None]):
            prev = steps[i - 1] if i > 0 else None
            loads, compute = {}, []
            if t is not None:
                for name in members:
                    if not runs(name, t):
                        continue
                    plan, run_at, dram_inputs, out_dram, deps = info[name]
                    ext = extents(plan, t)
                    first = first_visit(plan, t)
                    s = slice_cost(plan, ext, first, pad_offsets(plan, t))
                    loaded = False
                    for a in dram_inputs:
                        if prev is None or run_at or coords(a, t) != coords(a, prev):
                            b = _tile_bytes(ctx, plan, a, ext)
                            if b:
                                loads[a.tensor] = max(loads.get(a.tensor, 0), b)
                                loaded = True
                    out = plan.einsum.output
                    if out_dram and not first and (run_at or coords(out, t) != coords(out, prev)):
                        loads["psum:" + name] = _tile_bytes(ctx, plan, out, ext)
                        loaded = True
                    compute.append((name, s, loaded))
            store = 0
            if prev is not None:
                for name in members:
                    plan, run_at, _, out_dram, _ = info[name]
                    out = plan.einsum.output
                    if out_dram and runs(name, prev) and (t is None or run_at or coords(out, t) != coords(out, prev)):
                        store += _tile_bytes(ctx, plan, out, extents(plan, prev))
            d_load = math.ceil(sum(loads.values()) / bpc) if variant == 0 and loads else 0
            d_store = math.ceil(store / bpc) if variant == 0 and store else 0
            if variant == 0:
                dram_read += sum(loads.values())
                dram_write += store
            if t is None:
                tS = max(tL, tS, tC) + d_store
                break
            load_fin = max(tL, tS, tCp) + d_load
            fin = {}
            comp = tC
            for name, s, loaded in compute:
                plan, _, _, out_dram, deps = info[name]
                start = unit_t[plan.unit]
                if loaded:
                    start = max(start, load_fin)
                if out_dram:
                    start = max(start, tS)
                for d in deps:
                    if d in fin:
                        start = max(start, fin[d])
                f = start + (s.compute_cycles if variant == 2 else s.cycles)
                fin[name] = unit_t[plan.unit] = f
                comp = max(comp, f)
                if variant == 0:
                    busy[plan.unit] += s.cycles
            if not compute:
                comp = max(comp, load_fin)
            store_fin = max(load_fin, tC) + d_store
            tL, tS, tCp, tC = load_fin, store_fin, tC, comp
        ends.append(max(tL, tS, tC, tCp, *unit_t.values()))
    return ends, dram_read, dram_write, busy


MAX_REFERENCE_STEPS = 3000


def _check(cascade, arch, mapping):
    mapping.validate(cascade, arch)
    groups = mapping.groups(cascade)
    ctx = make_context(cascade, arch, mapping, groups)
    for i, g in enumerate(groups):
        if math.prod(t for _, t in g.loops) > MAX_REFERENCE_STEPS:
            continue                     # the Python reference would be slow; the engine is not
        got = simulate_group(ctx, i, g)
        ends, rd, wr, busy = reference_group(ctx, i, g)
        assert (got.cycles, got.cycles_no_dram_stall, got.cycles_no_glb_stall) == tuple(ends), g
        assert got.totals.get("dram_read_bytes", 0) == rd
        assert got.totals.get("dram_write_bytes", 0) == wr
        for u in UNIT_NAMES:
            assert got.totals.get("busy", {}).get(u, 0) == busy[u]


_FAST = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(data=st.data(), m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 90),
       dataflow=st.sampled_from(["output-stationary", "weight-stationary", "input-stationary"]),
       dram_gbps=st.sampled_from([1.0, 16.0, 1000.0]))
def test_gemm_engine_matches_step_by_step(make_arch, random_mapping, data, m, n, k, dataflow, dram_gbps):
    arch = make_arch(rows=8, cols=8, dataflow=dataflow, dram_gbps=dram_gbps, glb_banks=2)
    cascade = load_cascade("gemm", M=m, N=n, K=k)
    mapping = random_mapping(data, cascade, arch)
    try:
        mapping.validate(cascade, arch)
    except MappingError:
        return
    _check(cascade, arch, mapping)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(["softmax", "layernorm", "attention-3pass", "mpgemm-dequant",
                                              "attention-1pass"]))
def test_cascade_engine_matches_step_by_step(make_arch, random_mapping, data, name):
    shapes = {"softmax": {"M": 40, "P": 12}, "layernorm": {"E": 24, "P": 10},
              "attention-1pass": {"P": 6, "M": 21, "E": 4, "F": 4, "M0": 8},
              "attention-3pass": {"P": 12, "M": 20, "E": 8, "F": 8},
              "mpgemm-dequant": {"M": 6, "N": 10, "K": 64, "KI": 16}}[name]
    cascade = load_cascade(name, **shapes)
    arch = make_arch(rows=4, cols=4, vector_lanes=8, dram_gbps=4.0, glb_banks=1)
    mapping = random_mapping(data, cascade, arch)
    try:
        mapping.validate(cascade, arch)
    except MappingError:
        return
    _check(cascade, arch, mapping)


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(P=st.integers(5, 40), M=st.integers(8, 40), M0=st.sampled_from([4, 8, 16]), p_tile=st.integers(2, 8),
       dram_gbps=st.sampled_from([2.0, 64.0]))
def test_fused_attention_engine_matches_step_by_step(make_arch, fused_attention, P, M, M0, p_tile, dram_gbps):
    cascade = load_cascade("attention-1pass", P=P, M=M, E=8, F=8, M0=M0)
    arch = make_arch(rows=8, cols=8, vector_lanes=8, dram_gbps=dram_gbps, glb_banks=2)
    _check(cascade, arch, fused_attention(cascade, arch, p_tile))
