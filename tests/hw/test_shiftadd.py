"""hw.pe.shiftadd: the ShiftAddLLM shift-add PE.

Golden model against BCQ weights (``dataflow.formats.bcq_quantize``) and the ``mpgemm-shiftadd``
cascade; cost view; Amaranth simulation and cocotb (Icarus, Verilator) of every configuration with
cycles checked against the cost view; no multiplier in the elaborated RTL or the Verilog.
"""

import re

import numpy as np
import pytest
from amaranth.back import rtlil, verilog

from cocotb_pes import pes_bench, pes_runner
from dataflow.errors import SpecError
from dataflow.formats import BCQWeights, bcq_dequantize, bcq_quantize
from hw.pe import shiftadd
from hw.pe.base import wrap
from hw.pe.shiftadd import ShiftAddParams, ShiftAddPE

CONFIGS = pes_bench.shiftadd_configs()


# --- parameters ---------------------------------------------------------------------------------

def test_init():
    p = ShiftAddParams()
    assert (p.kind, p.act_bits, p.weight_format, p.acc_bits, p.lanes, p.lut_k, p.exp_bits, p.group_size) == \
        ("shiftadd", 8, "uint3", 32, 4, 4, 4, None)
    assert (p.planes, p.exp_offset, p.max_shift, p.tables, p.table_entries) == (3, 8, 15, 1, 8)
    assert p.weight_payload_bits == 4 * 3 + 3 * 4
    assert (p.precompute_cycles, p.lookup_cycles, shiftadd.cost(p).step_cycles) == (8, 3, 11)


@pytest.mark.parametrize("kwargs, message", [
    ({"weight_format": "int4"}, "weight format 'int4' is not supported by the shift-add PE; supported: "
                                "uint1..uint8 (bit i of a code is the sign bit of binary matrix B_i)"),
    ({"weight_format": "uint9"}, "weight format 'uint9' is not supported by the shift-add PE; supported: "
                                 "uint1..uint8 (bit i of a code is the sign bit of binary matrix B_i)"),
    ({"exp_bits": 0}, "exp_bits must be a positive integer, not 0"),
    ({"exp_bits": 6}, "exp_bits must be between 1 and 5, not 6"),
    ({"lut_k": 3, "lanes": 4}, "lanes must be a multiple of lut_k (3), not 4"),
    ({"lut_k": 16, "lanes": 16}, "lut_k must be between 1 and 8, not 16"),
    ({"group_size": 6}, "group_size must be a multiple of lanes (4), not 6"),
    ({"acc_bits": 24}, "acc_bits must be at least the product width 26, not 24"),
])
def test_init_wrong(kwargs, message):
    with pytest.raises(SpecError) as info:
        ShiftAddParams(**kwargs)
    assert str(info.value) == message


# --- golden model -------------------------------------------------------------------------------

def _reference(p, a, codes, exponents):
    """sum_l a_l sum_i (2 b_il - 1) 2^(e_i + offset), written out plainly."""
    total = 0
    for lane, code in enumerate(codes):
        for i in range(p.planes):
            sign = 1 if (code >> i) & 1 else -1
            total += int(a[lane]) * sign * (1 << (int(exponents[i]) + p.exp_offset))
    return total


@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: f"{p.weight_format}-k{p.lut_k}-e{p.exp_bits}")
def test_golden_step(params):
    rng = np.random.default_rng(1)
    lo, hi = -(1 << (params.act_bits - 1)), 1 << (params.act_bits - 1)
    for trial in range(20):
        a = rng.integers(lo, hi, params.lanes) if trial else np.full(params.lanes, lo)
        codes = rng.integers(0, 1 << params.planes, params.lanes)
        e = rng.integers(-params.exp_offset, params.exp_offset, params.planes)
        base = int(rng.integers(-1 << (params.acc_bits - 1), 1 << (params.acc_bits - 1)))
        want = wrap(base + _reference(params, a, codes, e), params.acc_bits)
        assert shiftadd.golden_step(params, a, codes, base, exponents=e) == want


def test_golden_gemm_bcq():
    """BCQ weights with power-of-two alphas (ShiftAddLLM): C * 2^-offset == A @ dequantized W,
    per group along K; and golden_gemm is the step-wise sum of golden_step over packed payloads."""
    rng = np.random.default_rng(2)
    W = rng.normal(size=(24, 5))
    p = ShiftAddParams(weight_format="uint3", group_size=8, lanes=4, lut_k=4, acc_bits=40)
    bcq = bcq_quantize(W, 3, 8, axis=0, pow2_scales=True)
    codes = shiftadd.bcq_to_codes(p, bcq)
    assert codes.w_codes.shape == (24, 5) and codes.exponents.shape == (3, 3, 5)
    A = rng.integers(-128, 128, (3, 24))
    C = shiftadd.golden_gemm(p, A, codes.w_codes, exponents=codes.exponents)
    assert np.array_equal(C * 2.0 ** -p.exp_offset, A @ bcq_dequantize(bcq))
    payloads = shiftadd.pack_weights(p, codes.w_codes, exponents=codes.exponents)
    acc = np.zeros((3, 5), dtype=np.int64)
    for step in range(6):
        for col in range(5):
            fields = pes_bench.unpack_payload(p, payloads[step, col])
            acc[:, col] = shiftadd.golden_step(p, A[:, step * 4:(step + 1) * 4], fields["codes"], acc[:, col],
                                               exponents=np.asarray(fields["exponents"]))
    assert np.array_equal(acc, C)


def test_bcq_to_codes_wrong():
    p = ShiftAddParams(weight_format="uint2")
    with pytest.raises(SpecError, match="bcq must be 2-bit, along axis 0, with pow2_scales"):
        shiftadd.bcq_to_codes(p, bcq_quantize(np.ones((8, 2)), 2, 4, axis=0))
    tiny = bcq_quantize(np.random.default_rng(0).normal(size=(8, 2)) * 2.0 ** -12, 2, 4, axis=0, pow2_scales=True)
    with pytest.raises(SpecError, match=r"exponents must lie in \[-8, 7\]"):
        shiftadd.bcq_to_codes(p, tiny)
    flat = BCQWeights(signs=np.ones((2, 8, 2), dtype=np.int8), alphas=np.array([[[1.0, 1.0]] * 2, [[0.0, 1.0]] * 2]),
                      group_size=4, axis=0, pow2_scales=True)   # a group whose residual was already 0
    with pytest.raises(SpecError, match="bcq alphas must be positive powers of two"):
        shiftadd.bcq_to_codes(p, flat)


@pytest.mark.parametrize("planes", [1, 2, 3])
def test_matches_mpgemm_shiftadd_cascade(planes):
    """golden_gemm * 2^-offset == Y of the dataflow cascade ``mpgemm-shiftadd``."""
    from dataflow import evaluate, load_cascade, random_inputs

    cascade = load_cascade("mpgemm-shiftadd", I=planes, M=4, N=6, K=16)
    inputs = random_inputs(cascade, seed=3)
    out = evaluate(cascade, inputs)
    p = ShiftAddParams(weight_format=f"uint{planes}", exp_bits=4, lut_k=4, lanes=4, acc_bits=40)
    codes = (inputs["BB"].astype(np.int64) << np.arange(planes)[:, None, None]).sum(axis=0)
    C = shiftadd.golden_gemm(p, inputs["A"], codes, exponents=inputs["E"])
    assert np.array_equal(C * 2.0 ** -p.exp_offset, out["Y"])


def test_golden_wrong_exponents():
    p = ShiftAddParams()
    with pytest.raises(SpecError, match="exponents are required by the shift-add PE"):
        shiftadd.golden_gemm(p, np.zeros((1, 4)), np.zeros((4, 1), dtype=np.int64))
    with pytest.raises(SpecError, match=r"exponents must lie in \[-8, 7\] \(exp_bits 4\), not 0..8"):
        shiftadd.golden_step(p, np.zeros(4), [0, 1, 2, 3], 0, exponents=[0, 8, 1])


# --- cost view ----------------------------------------------------------------------------------

def test_cost():
    p = ShiftAddParams(weight_format="uint2", lanes=8, lut_k=4, acc_bits=40)
    c = shiftadd.cost(p)
    assert c.step_cycles == 8 + 2 and shiftadd.lookup_cost(p).step_cycles == 2
    assert c.actions == {"add_int11": 2 * 8 * 3, "reg_write_int11": 16, "lut_read_int11": 2 * 2,
                         "add_int40": 2 * 2 + 1, "shift_int40": 2, "reg_write_int40": 1}
    assert not any(name.startswith("mul") for name in c.actions)


# --- RTL ------------------------------------------------------------------------------------------

@pes_runner.each_config(CONFIGS)
def test_sim(params):
    """Bit-exact with random gaps, extreme exponents, table reuse; cycles == cost view."""
    pes_runner.check_sim(params, seed=4)


@pytest.mark.rtl
def test_sim_contract_bench():
    """hw-core's generic PE bench (reuse_table tied to 0) and 2x2 arrays of this PE."""
    pes_runner.check_contract_bench(ShiftAddParams(weight_format="uint2", acc_bits=40, group_size=8),
                                    ShiftAddParams(acc_bits=40), seed=5)


@pytest.mark.rtl
@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: f"{p.weight_format}-k{p.lut_k}-e{p.exp_bits}")
def test_no_multiplier(params):
    """ShiftAddLLM's point: no multiplier anywhere. The elaborated netlist (RTLIL generic cells) has
    no $mul/$div/$mod/$pow cell and the exported Verilog no ``*`` operator."""
    pe = ShiftAddPE(params)
    cells = {line.split()[1] for line in rtlil.convert(pe).splitlines() if line.strip().startswith("cell ")}
    assert {"$add", "$shl"} <= cells or {"$add", "$sshl"} <= cells
    assert not cells & {"$mul", "$div", "$mod", "$divfloor", "$modfloor", "$pow"}
    text = verilog.convert(ShiftAddPE(params), name="shiftadd", emit_src=False)
    # drop comments, (* attributes *) and the sensitivity list of always @*
    code = re.sub(r"/\*.*?\*/|\(\*.*?\*\)|@\*", "", text, flags=re.S)
    assert "*" not in code


@pytest.mark.xdist_group("cocotb-shiftadd")   # one worker exports the Verilog once for both simulators
def test_cocotb(rtl_simulator, cocotb_workdir):
    """Every shift-add configuration in one Verilog top, all driven at once by the cocotb bench."""
    pes_runner.check_cocotb(CONFIGS, rtl_simulator, cocotb_workdir, seed=6, toplevel="shiftadd_pes")
