"""hw.pe.lut: the LUT tensor-core PE (LUT Tensor Core / T-MAC) and the LUT tile.

Golden model against plain integer arithmetic and the ``mpgemm-lut`` cascade; cost view; Amaranth
simulation and cocotb (Icarus, Verilator) of every configuration with cycles checked against the
cost view; the tile; no multiplier in the RTL.
"""

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from cocotb_pes import pes_bench, pes_runner
from dataflow.errors import SpecError
from dataflow.formats import get_format
from hw.pe import lut
from hw.pe.base import wrap
from hw.pe.lut import LutParams, LutPE, LutTile, LutTileParams

CONFIGS = pes_bench.lut_configs()


def _values(params, codes):
    return get_format(params.weight_format).decode(np.asarray(codes)).astype(np.int64)


# --- parameters ---------------------------------------------------------------------------------

def test_init():
    p = LutParams()
    assert (p.kind, p.act_bits, p.weight_format, p.acc_bits, p.lanes, p.lut_k, p.table_bits) == \
        ("lut", 8, "int4", 32, 4, 4, None)
    assert (p.weight_bits, p.tables, p.table_entries, p.weight_payload_bits) == (4, 1, 8, 16)
    assert (p.precompute_cycles, p.lookup_cycles, p.exact_table_bits, p.table_shift) == (8, 4, 11, 0)
    q = LutParams(lanes=16, lut_k=4, table_bits=8, weight_format="uint2")
    # |T| <= 4 * 128 = 512 needs 11 bits; INT8 entries: (512 + 4) >> 3 = 64 fits, >> 2 would not
    assert (q.tables, q.table_shift, q.stored_table_bits, q.weight_payload_bits) == (4, 3, 8, 32)
    assert LutParams(lut_k=1, lanes=3, weight_format="int1").table_entries == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"weight_format": "int8"},
     "weight format 'int8' is not supported by the LUT PE; supported: int1..int4, uint1..uint4, ternary"),
    ({"weight_format": "e2m1"},
     "weight format 'e2m1' is not supported by the LUT PE; supported: int1..int4, uint1..uint4, ternary"),
    ({"weight_format": "bogus"},
     "weight format 'bogus' is not supported by the LUT PE; supported: int1..int4, uint1..uint4, ternary"),
    ({"lut_k": 0}, "lut_k must be a positive integer, not 0"),
    ({"lut_k": 9, "lanes": 9}, "lut_k must be between 1 and 8, not 9"),
    ({"lut_k": 4, "lanes": 6}, "lanes must be a multiple of lut_k (4), not 6"),
    ({"lanes": 0}, "lanes must be a positive integer, not 0"),
    ({"act_bits": 1}, "act_bits must be between 2 and 16, not 1"),
    ({"acc_bits": 10}, "acc_bits must be at least the product width 12, not 10"),
    ({"table_bits": 1}, "table_bits must be between 2 and 10 (exact tables need 11 bits; use None), not 1"),
    ({"table_bits": 11}, "table_bits must be between 2 and 10 (exact tables need 11 bits; use None), not 11"),
])
def test_init_wrong(kwargs, message):
    with pytest.raises(SpecError) as info:
        LutParams(**kwargs)
    assert str(info.value) == message


def test_tile_init_wrong():
    with pytest.raises(SpecError) as info:
        LutTileParams(m=2, n=64, k=16, lut_k=5)
    assert str(info.value) == "lut_k 5 does not divide tile k 16"
    with pytest.raises(SpecError) as info:
        LutTileParams(m=0, n=64, k=16)
    assert str(info.value) == "m must be a positive integer, not 0"
    with pytest.raises(SpecError) as info:
        LutTileParams(m=2, n=4, k=8, weight_format="int8")
    assert str(info.value).startswith("weight format 'int8' is not supported by the LUT PE")


# --- golden model -------------------------------------------------------------------------------

@pytest.mark.parametrize("weight_format", lut.SUPPORTED_WEIGHT_FORMATS)
def test_offset_binary_identity(weight_format):
    """The documented identity: with c the offset-binary code, sum_b 2^b (2 c_b - 1) = 2c - (2^B - 1),
    and c = w + 2^(B-1) for signed formats (so the sum is 2w + 1), c = w for unsigned ones."""
    fmt = get_format(weight_format)
    codes = fmt.codes()
    values = fmt.decode(codes)
    offset = (codes ^ (1 << (fmt.bits - 1))) if fmt.signed else codes
    plane_sum = sum(((offset >> b) & 1) * 2 - 1 << b for b in range(fmt.bits))
    assert np.array_equal(plane_sum, 2 * offset - ((1 << fmt.bits) - 1))
    assert np.array_equal(plane_sum, 2 * values + 1 if fmt.signed else 2 * values - ((1 << fmt.bits) - 1))


@pytest.mark.parametrize("table_bits", [None, 8, 6])
def test_tables_are_symmetric_sums(table_bits):
    """Stored entries are the signed sums of the patterns with top bit 0 (rounded as documented),
    and a lookup of any pattern p equals the sum for p, the complement half negated."""
    p = LutParams(lanes=8, lut_k=4, table_bits=table_bits)
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (5, 8))
    tables = lut.golden_tables(p, a)
    assert tables.shape == (5, 2, 8)
    r = p.table_shift
    for pattern in range(16):
        signs = np.where((pattern >> np.arange(4)) & 1, 1, -1)
        exact = a.reshape(5, 2, 4) @ signs
        looked = lut.table_lookup(tables, np.full((5, 2), pattern), 4)
        if pattern < 8:
            want = exact if r == 0 else (exact + (1 << (r - 1))) >> r
        else:
            partner = -exact  # T[~p] = -T[p]
            want = -(partner if r == 0 else (partner + (1 << (r - 1))) >> r)
        assert np.array_equal(looked, want)


@pytest.mark.parametrize("weight_format", lut.SUPPORTED_WEIGHT_FORMATS)
@pytest.mark.parametrize("act_bits, lut_k, lanes", [(8, 4, 4), (4, 2, 6), (6, 3, 3), (8, 1, 2)])
def test_golden_exact(weight_format, act_bits, lut_k, lanes):
    """Exact tables: golden_step is dot(a, decode(w)) and golden_gemm is A @ decode(W) (k padded)."""
    p = LutParams(weight_format=weight_format, act_bits=act_bits, lut_k=lut_k, lanes=lanes, acc_bits=24)
    rng = np.random.default_rng(2)
    codes = get_format(weight_format).codes()
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1))
    a = rng.integers(lo, hi, (6, lanes))
    w = rng.choice(codes, (6, lanes))
    base = rng.integers(-1 << 23, 1 << 23, 6)
    want = wrap(base + (a * _values(p, w)).sum(axis=1), 24)
    assert np.array_equal(lut.golden_step(p, a, w, base), want)
    # extremes: every activation at min against every code
    a_min = np.full((len(codes), lanes), lo)
    w_all = np.repeat(codes[:, None], lanes, axis=1)
    assert np.array_equal(lut.golden_step(p, a_min, w_all, 0), (a_min * _values(p, w_all)).sum(axis=1))
    A = rng.integers(lo, hi, (3, 2 * lanes + 1))
    W = rng.choice(codes, (2 * lanes + 1, 5))
    assert np.array_equal(lut.golden_gemm(p, A, W), A @ _values(p, W))


@pytest.mark.parametrize("weight_format", ["int4", "uint3", "int1", "ternary"])
def test_golden_rounded_tables(weight_format):
    """INT8 tables: golden_gemm equals the per-step sum of golden_step, and stays within the
    rounding bound of the exact product (entry error <= 2^(r-1), contribution = raw * 2^(r-1))."""
    p = LutParams(weight_format=weight_format, lanes=8, lut_k=4, table_bits=8)
    rng = np.random.default_rng(3)
    codes = get_format(weight_format).codes()
    A = rng.integers(-128, 128, (4, 24))
    W = rng.choice(codes, (24, 3))
    C = lut.golden_gemm(p, A, W)
    steps = 0
    for s in range(3):
        steps = steps + lut.golden_step(p, A[:, None, s * 8:(s + 1) * 8], W[s * 8:(s + 1) * 8].T[None], 0)
    assert np.array_equal(C, wrap(steps, 32))
    exact = A @ _values(p, W)
    planes = (1 << p.weight_bits) - 1
    correction = 1 if p.weight_signed else planes
    bound = 3 * p.tables * (planes + correction) * (1 << p.table_shift) // 4 + 1
    assert np.abs(C - exact).max() <= bound
    assert not np.array_equal(C, exact)   # the rounding is real


@pytest.mark.parametrize("weight_format", ["int4", "int2"])
def test_matches_mpgemm_lut_cascade(weight_format):
    """golden_gemm == YI of the dataflow cascade ``mpgemm-lut`` (table, bit-planes, symmetry)."""
    from dataflow import evaluate, load_cascade, random_inputs

    cascade = load_cascade("mpgemm-lut", wfmt=weight_format, M=4, N=8, K=32)
    inputs = random_inputs(cascade, seed=4)
    out = evaluate(cascade, inputs)
    p = LutParams(weight_format=weight_format, lut_k=4, lanes=4)
    codes = get_format(weight_format).encode(inputs["W"])
    assert np.array_equal(lut.golden_gemm(p, inputs["A"], codes), out["YI"])


def test_golden_rejects_bad_codes():
    with pytest.raises(SpecError, match=r"weight codes must lie in \[0, 16\), not 0..16"):
        lut.golden_step(LutParams(), np.zeros(4), [0, 1, 2, 16], 0)


# --- cost view ----------------------------------------------------------------------------------

def test_cost():
    p = LutParams(lanes=8, lut_k=4, weight_format="int2")
    pre, look, step = lut.precompute_cost(p), lut.lookup_cost(p), lut.cost(p)
    assert (pre.step_cycles, look.step_cycles, step.step_cycles) == (8, 2, 10)
    assert pre.actions == {"add_int11": 2 * 8 * 3, "reg_write_int11": 16}
    assert look.actions["lut_read_int11"] == 2 * 2
    assert step.actions["lut_read_int11"] == 4 and step.actions["reg_write_int32"] == 1
    q = LutParams(lanes=8, lut_k=4, table_bits=8)
    assert lut.precompute_cost(q).actions == {"add_int11": 2 * 8 * 4, "reg_write_int8": 16}
    assert lut.lookup_cost(q).actions["lut_read_int8"] == 2 * 4


def test_tile_cost():
    """A wide N amortizes the precompute: LUT Tensor Core's elongated M2 N64 K4 tile."""
    wide, square = LutTileParams(m=2, n=64, k=4), LutTileParams(m=8, n=4, k=16)
    c = lut.tile_cost(wide)
    assert (c.precompute_cycles, c.lookup_cycles) == (8, 4)
    assert c.table_bits_stored == 2 * 1 * 8 * 11
    assert c.precompute_actions == lut.precompute_cost(wide.pe_params).scaled(2)
    assert c.lookup_actions == lut.lookup_cost(wide.pe_params).scaled(2 * 64)
    # 256 x 256 x 256: blocks * (precompute + n_blocks * lookup)
    assert lut.tile_gemm_cycles(wide, 256, 256, 256) == 128 * 64 * (8 + 4 * 4)
    assert lut.tile_gemm_cycles(square, 256, 256, 256) == 32 * 16 * (8 + 64 * 4)
    per_output = [lut.tile_gemm_cycles(LutTileParams(m=2, n=n, k=4), 64, 256, 64) for n in (4, 16, 64)]
    assert per_output == sorted(per_output, reverse=True)


# --- RTL: Amaranth simulator --------------------------------------------------------------------

@pes_runner.each_config(CONFIGS)
def test_sim(params):
    """Bit-exact against the golden model from the monitored inputs, with random gaps; every step's
    start-to-done cycles equal the cost view (precompute + lookup, or lookup with reuse_table)."""
    pes_runner.check_sim(params, seed=5)


@pytest.mark.rtl
def test_sim_contract_bench():
    """hw-core's generic PE bench (contract ports only, reuse_table tied to 0) and 2x2 arrays."""
    pes_runner.check_contract_bench(LutParams(weight_format="ternary", lanes=8, lut_k=4, table_bits=8),
                                    LutParams(weight_format="uint2"), seed=6)


def _run_tile(tile, steps):
    """Drive a LutTile: each step ``(a[m][k], codes[n][k], clear, reuse)``; returns acc grids and
    measured start-to-done cycles."""
    dut = LutTile(tile)
    p = tile.pe_params
    out = []

    async def bench(ctx):
        for a, codes, clear, reuse in steps:
            for i in range(tile.m):
                for l in range(tile.k):
                    ctx.set(dut.a[i][l], int(a[i][l]))
            for j in range(tile.n):
                ctx.set(dut.w[j], sum(int(c) << (l * p.weight_bits) for l, c in enumerate(codes[j])))
            ctx.set(dut.clear, clear)
            ctx.set(dut.reuse_table, reuse)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            out.append(([[ctx.get(dut.acc[i][j]) for j in range(tile.n)] for i in range(tile.m)], cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.rtl
@pytest.mark.parametrize("table_bits", [None, 8])
def test_tile_sim(table_bits):
    """The tile builds each row's tables once and its n lookup units share them: results equal the
    golden model, cycles equal tile_cost (precompute + lookup, or lookup alone when reusing)."""
    tile = LutTileParams(m=2, n=3, k=8, lut_k=4, weight_format="int3", table_bits=table_bits)
    p = tile.pe_params
    rng = np.random.default_rng(7)
    codes = get_format("int3").codes()
    steps, expected, acc = [], [], np.zeros((2, 3), dtype=np.int64)
    table_a = None
    for index in range(8):
        reuse = int(index % 3 == 1)
        clear = int(index % 4 == 0)
        a = rng.integers(-128, 128, (2, 8))
        w = rng.choice(codes, (3, 8))
        if not reuse:
            table_a = a
        base = np.zeros_like(acc) if clear else acc
        acc = lut.golden_step(p, table_a[:, None, :], w[None], base)
        steps.append((a, w, clear, reuse))
        expected.append((acc.copy(), lut.tile_cost(tile).lookup_cycles + (0 if reuse else p.precompute_cycles)))
    for (got, cycles), (want, want_cycles) in zip(_run_tile(tile, steps), expected):
        assert np.array_equal(np.asarray(got), want)
        assert cycles == want_cycles


@pytest.mark.rtl
def test_no_multiplier():
    """Table precompute and lookup are adds, negations and shifts only."""
    for design in [LutPE(p) for p in CONFIGS] + [LutTile(LutTileParams(m=2, n=2, k=8, table_bits=8))]:
        text = rtlil.convert(design)
        cells = {line.split()[1] for line in text.splitlines() if line.strip().startswith("cell ")}
        assert cells and not cells & {"$mul", "$div", "$mod", "$divfloor", "$modfloor", "$pow"}


# --- RTL: cocotb on the exported Verilog ---------------------------------------------------------

@pytest.mark.xdist_group("cocotb-lut")   # one worker exports the Verilog once for both simulators
def test_cocotb(rtl_simulator, cocotb_workdir):
    """Every LUT configuration in one Verilog top, all driven at once by the cocotb bench."""
    pes_runner.check_cocotb(CONFIGS, rtl_simulator, cocotb_workdir, seed=8, toplevel="lut_pes")
