"""The simulator's cycles for a single-tile GEMM equal the cycles measured on the RTL.

For every registered PE kind (a kind whose module is missing fails here, it is not skipped), every
array shape of the hw tests (2x2, 4x4, 3x5) and both RTL dataflows, the test drives
:class:`hw.array.SystolicArray` in the Amaranth simulator with one GEMM tile, counts the cycles
from the first input transfer to the last output transfer (inclusive), checks the result against
the kind's golden model, and compares the count with what :func:`sim.run_sim` reports for the same
tile mapped onto the same architecture.
"""
import math

import numpy as np
import pytest
from amaranth.sim import Simulator

from dataflow import load_cascade
from dataflow.formats import get_format
from hw.array import SystolicArray
from hw.pe import PE_KINDS, get_kind, golden_gemm, pack_weights
from mapper.mapping import EinsumMapping, Mapping
from sim import run_sim

SHAPES = [(2, 2), (4, 4), (3, 5)]
DATAFLOWS = ["output-stationary", "weight-stationary"]


def tile_dims(params, rows, cols, dataflow):
    """A tile that exercises padding: k not a multiple of lanes, a partial row or column."""
    lanes = params.lanes
    if dataflow == "output-stationary":
        return (rows - 1 if rows > 2 else rows), cols, 3 * lanes - 1 if lanes > 1 else 3
    return 3, (cols - 1 if cols > 2 else cols), rows * lanes - 1 if lanes > 1 else rows


def measure_rtl_cycles(params, rows, cols, dataflow, m, n, k, seed=0):
    """Run one tile on the RTL array; return (cycles, C[m, n], golden C)."""
    rng = np.random.default_rng(seed)
    dut = SystolicArray(rows=rows, cols=cols, pe_params=params, dataflow=dataflow)
    lanes = params.lanes
    steps = -(-k // lanes)
    half = 1 << (params.act_bits - 1)
    a = rng.integers(-half, half, size=(m, k))
    extra = {}
    if params.kind == "shiftadd":
        w = rng.integers(0, 1 << params.planes, size=(k, n))
        extra["exponents"] = rng.integers(-params.exp_offset, params.exp_offset, size=(params.planes, n))
    else:
        w = rng.integers(0, 1 << get_format(params.weight_format).bits, size=(k, n))
    if params.kind == "mac-dequant":
        extra["scales"] = rng.integers(0, 1 << params.scale_bits, size=(-(-k // params.group_size), n))
    payloads = pack_weights(params, w, **extra)
    padded = np.zeros((m, steps * lanes), dtype=np.int64)
    padded[:, :k] = a
    os_flow = dataflow == "output-stationary"

    def act_beat(i):
        if os_flow:
            data = [[int(x) for x in padded[r, i * lanes:(i + 1) * lanes]] if r < m else [0] * lanes
                    for r in range(rows)]
            return {"data": data, "last": int(i == steps - 1)}
        data = [[int(x) for x in padded[i, r * lanes:(r + 1) * lanes]] if r < steps else [0] * lanes
                for r in range(rows)]
        return {"data": data, "last": int(i == m - 1)}

    def weight_beat(i):
        return [int(payloads[i, c]) if i < steps and c < n else 0 for c in range(cols)]

    n_act, n_weight, n_out = (steps, steps, rows) if os_flow else (m, rows, m)
    out_rows, span = [], {}

    async def bench(ctx):
        ia = iw = cycle = 0
        first = last = None
        ctx.set(dut.out.ready, 1)
        while len(out_rows) < n_out and cycle < 100_000:
            ctx.set(dut.act.valid, ia < n_act)
            if ia < n_act:
                ctx.set(dut.act.payload, act_beat(ia))
            ctx.set(dut.weight.valid, iw < n_weight)
            if iw < n_weight:
                ctx.set(dut.weight.payload, weight_beat(iw))
            act_taken = ia < n_act and ctx.get(dut.act.ready)
            weight_taken = iw < n_weight and ctx.get(dut.weight.ready)
            if (act_taken or weight_taken) and first is None:
                first = cycle
            if ctx.get(dut.out.valid):
                out_rows.append([ctx.get(dut.out.payload.data[c]) for c in range(cols)])
                last = cycle
            await ctx.tick()
            ia += bool(act_taken)
            iw += bool(weight_taken)
            cycle += 1
        span["cycles"] = last - first + 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return span["cycles"], np.array(out_rows)[:m, :n], golden_gemm(params, a, w, **extra)


def single_tile_mapping(dataflow, m, n, k):
    if dataflow == "output-stationary":
        em = EinsumMapping("Z", "array", {"rows": {"M": m}, "cols": {"N": n}}, {"rf": {"K": k}})
    else:
        em = EinsumMapping("Z", "array", {"rows": {"K": k}, "cols": {"N": n}}, {"rf": {"M": m}})
    return Mapping({"Z": em}, cascade="gemm")


@pytest.mark.rtl
@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("rows,cols", SHAPES)
@pytest.mark.parametrize("kind", list(PE_KINDS))
def test_sim_cycles_equal_rtl_cycles(make_arch, kind, rows, cols, dataflow):
    get_kind(kind).module          # a missing kind module fails the test (SpecError), never skips
    arch = make_arch(rows=rows, cols=cols, dataflow=dataflow, kind=kind, vector=False, dram_gbps=1.0)
    params = arch.pe_params()
    m, n, k = tile_dims(params, rows, cols, dataflow)
    rtl_cycles, result, golden = measure_rtl_cycles(params, rows, cols, dataflow, m, n, k)
    np.testing.assert_array_equal(result, golden)

    cascade = load_cascade("gemm", M=m, N=n, K=k, bfmt=params.weight_format)
    report = run_sim(cascade, arch, single_tile_mapping(dataflow, m, n, k))
    assert report.einsums["Z"]["tile_ops"] == 1
    assert report.einsums["Z"]["busy_cycles"] == rtl_cycles
    # one step: load A and B, run the tile, store Z; nothing overlaps
    bpc = arch.dram_bytes_per_cycle
    load = math.ceil(report.dram_read_bytes / bpc)
    store = math.ceil(report.dram_write_bytes / bpc)
    assert report.cycles == load + rtl_cycles + store


def test_every_pe_kind_of_the_issue_is_registered():
    assert {"mac", "mac-dequant", "bitserial", "lut", "shiftadd"} <= set(PE_KINDS)
