"""hw.pe.mac: the integer MAC PE and the dequantize-then-MAC PE, in all three views.

The RTL checks run the shared bench of :mod:`hw.verify` (every weight code against max, min and
random activations, random clear/psum_in, random idle gaps, ``done`` exactly ``step_cycles``
after ``start`` in every cycle) on the Amaranth simulator, and on Icarus and Verilator for the
exported Verilog of a bank holding every configuration (one build per simulator).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocotb_benches.harness import run_rtl
from dataflow.errors import SpecError
from dataflow.formats import get_format
from hw.pe import make_params, make_pe, pe_cost
from hw.pe.base import pe_signature
from hw.pe.mac import (MacDequantParams, MacDequantPE, MacParams, MacPE, cost, golden_gemm, golden_step,
                       pack_weights, supported_weight_formats, weight_values)
from hw.verify import bank_job, pe_job, simulate_amaranth

MAC_FORMATS = ([f"int{b}" for b in range(1, 17)] + [f"uint{b}" for b in range(1, 17)]
               + ["ternary", "e2m0", "e2m1", "e2m3", "e3m2"])
DEQUANT_FORMATS = ["int2", "int3", "int4", "uint4", "ternary", "e2m1", "e2m0"]


def _mac(weight_format, act_bits=8, **kw):
    params = MacParams(act_bits=act_bits, weight_format=weight_format, acc_bits=48, **kw)
    return params


# Configurations the RTL benches cover: every supported weight format at 8-bit activations,
# every activation width (2..16) with int4 weights, extreme corners, multi-cycle and multi-lane
# MACs; the dequant PE in every low-bit format at 4, 8 and 16-bit activations.
MAC_CONFIGS = ([_mac(f) for f in MAC_FORMATS]
               + [_mac("int4", act_bits=b) for b in range(2, 17) if b != 8]
               + [_mac("uint16", act_bits=16), _mac("int16", act_bits=2), _mac("e2m1", act_bits=16),
                  _mac("int4", lanes=4), _mac("int8", step_cycles=3, lanes=2),
                  MacParams(act_bits=8, weight_format="int8", acc_bits=16)])
DEQUANT_CONFIGS = ([MacDequantParams(act_bits=b, weight_format=f, group_size=8)
                    for f in DEQUANT_FORMATS for b in (4, 8, 16)]
                   + [MacDequantParams(weight_format="int4", lanes=4, group_size=8, scale_bits=4, step_cycles=2),
                      MacDequantParams(weight_format="int8", scale_bits=16, acc_bits=40, group_size=4)])
ALL_CONFIGS = MAC_CONFIGS + DEQUANT_CONFIGS


def _config_id(params):
    extra = "".join(f"-{k}{getattr(params, k)}" for k in ("lanes", "step_cycles") if getattr(params, k) != 1)
    return f"{params.kind}-{params.weight_format}-a{params.act_bits}-acc{params.acc_bits}{extra}"


# --- params ----------------------------------------------------------------------------------

def test_init():
    params = MacParams()
    assert (params.act_bits, params.weight_format, params.acc_bits, params.lanes) == (8, "int8", 32, 1)
    assert params.kind == "mac" and params.weight_payload_bits == 8 and params.weight_value_bits == 8
    dequant = MacDequantParams(weight_format="int4", lanes=2, group_size=4, scale_bits=6)
    assert dequant.kind == "mac-dequant" and dequant.weight_payload_bits == 2 * 4 + 6
    assert make_params("mac", weight_format="e2m1") == MacParams(weight_format="e2m1")
    assert isinstance(make_pe(dequant), MacDequantPE)


def test_supported_formats():
    assert supported_weight_formats(MAC_FORMATS + ["fp16", "e5m2", "e4m3", "int32", "bitmod-fp4"]) == MAC_FORMATS


@pytest.mark.parametrize("kwargs, message", [
    (dict(act_bits=0), "act_bits must be a positive integer, not 0"),
    (dict(act_bits=17), "act_bits must be between 2 and 16, not 17"),
    (dict(act_bits=True), "act_bits must be a positive integer, not True"),
    (dict(weight_format="fp16"), "weight_format must be a format of at most 16 bits whose values are "
                                 "integers after its integer scale, not 'fp16'"),
    (dict(weight_format="int7x"), "weight_format must be a known number format, not 'int7x'"),
    (dict(weight_format=4), "weight_format must be a format name, not 4"),
    (dict(lanes=0), "lanes must be a positive integer, not 0"),
    (dict(acc_bits=15), "acc_bits must be at least the product width 16, not 15"),
    (dict(acc_bits=64), "acc_bits must be between 2 and 48, not 64"),
    (dict(step_cycles=0), "step_cycles must be a positive integer, not 0"),
])
def test_init_wrong(kwargs, message):
    with pytest.raises(SpecError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        MacParams(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(group_size=6, lanes=4), r"group_size must be a multiple of lanes \(4\), not 6"),
    (dict(group_size=0), "group_size must be a positive integer, not 0"),
    (dict(scale_bits=17), "scale_bits must be at most 16, not 17"),
    (dict(scale_bits=0), "scale_bits must be a positive integer, not 0"),
    (dict(acc_bits=19), "acc_bits must be at least the product width 20, not 19"),
])
def test_init_wrong_dequant(kwargs, message):
    with pytest.raises(SpecError, match=f"^{message}$"):
        MacDequantParams(**kwargs)


def test_component_wrong_params():
    with pytest.raises(TypeError, match="params must be MacParams"):
        MacPE(MacDequantParams())
    assert MacPE(MacParams()).signature == pe_signature(MacParams())


# --- numeric view -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", MAC_FORMATS)
def test_weight_values_are_the_format_values(name):
    fmt = get_format(name)
    values = weight_values(name)
    assert values.shape == (1 << fmt.bits,)
    codes = fmt.codes()
    assert np.array_equal(values[codes], fmt.decode(codes) * fmt.integer_scale)
    undefined = np.setdiff1d(np.arange(1 << fmt.bits), codes)
    assert np.all(values[undefined] == 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 9), st.integers(1, 4), st.sampled_from(["int4", "e2m1", "uint3", "ternary"]),
       st.integers(0, 2**32 - 1))
def test_gemm_is_the_sequence_of_steps(m, k, n, weight_format, seed):
    """golden_gemm equals accumulating golden_step over the lane-sized steps (with padding), and
    equals the closed form A @ (decode(W) * integer_scale), wrapped."""
    rng = np.random.default_rng(seed)
    params = MacParams(act_bits=8, weight_format=weight_format, lanes=2, acc_bits=18)
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(0, 1 << get_format(weight_format).bits, (k, n))
    gemm = golden_gemm(params, a, w)
    acc = np.zeros((m, n), dtype=np.int64)
    for start in range(0, k, 2):
        a_step = np.zeros((m, 2), dtype=np.int64)
        w_step = np.zeros((2, n), dtype=np.int64)
        a_step[:, :min(2, k - start)] = a[:, start:start + 2]
        w_step[:min(2, k - start)] = w[start:start + 2]
        acc = golden_step(params, a_step[:, None, :], w_step.T[None, :, :], acc)
    assert np.array_equal(gemm, acc)
    fmt = get_format(weight_format)
    exact = a @ (weight_values(weight_format)[w])
    if weight_format != "ternary":
        assert np.array_equal(exact, a @ (fmt.decode(w) * fmt.integer_scale).astype(np.int64))
    wrapped = ((exact + (1 << 17)) % (1 << 18)) - (1 << 17)
    assert np.array_equal(gemm, wrapped)


def test_dequant_is_dequantize_then_matmul():
    """The dequant PE's golden model is A @ (w_int * group scale), the integer form of
    dequantize_groups for power-of-two-free integer scales."""
    rng = np.random.default_rng(7)
    params = MacDequantParams(act_bits=8, weight_format="int4", group_size=4, scale_bits=8)
    a = rng.integers(-128, 128, (3, 10))
    w = rng.integers(0, 16, (10, 5))
    scales = rng.integers(0, 256, (3, 5))
    w_int = get_format("int4").decode(w)
    dequantized = w_int * np.repeat(scales, 4, axis=0)[:10]
    assert np.array_equal(golden_gemm(params, a, w, scales=scales), a @ dequantized)
    payloads = pack_weights(params, w, scales=scales)
    assert payloads.shape == (10, 5)
    for step in range(10):
        for col in range(5):
            assert int(payloads[step, col]) == int(w[step, col]) | int(scales[step // 4, col]) << 4
    with pytest.raises(SpecError, match=r"^scales must have shape \(3, 5\) for k=10, group_size=4, not \(2, 5\)$"):
        golden_gemm(params, a, w, scales=scales[:2])
    with pytest.raises(SpecError, match=r"^scales are required by the mac-dequant PE$"):
        golden_gemm(params, a, w)


def test_cost():
    assert cost(MacParams()).step_cycles == 1
    assert dict(cost(MacParams()).actions) == {"mul_int8": 1, "add_int32": 1}
    assert dict(cost(MacParams(act_bits=16, weight_format="int4", lanes=4, acc_bits=40)).actions) == \
        {"mul_int16": 4, "add_int40": 4}
    dequant = cost(MacDequantParams(weight_format="int4", scale_bits=8))
    assert dict(dequant.actions) == {"mul_int8": 1, "mul_int12": 1, "add_int32": 1}
    assert pe_cost(MacParams(step_cycles=3)).step_cycles == 3


# --- RTL view ---------------------------------------------------------------------------------

@pytest.mark.parametrize("params", ALL_CONFIGS, ids=_config_id)
def test_sim(params):
    """Amaranth simulator: bit-exact in every cycle, done exactly step_cycles after start."""
    result = simulate_amaranth(pe_job(params, seed=11))
    assert result["passed"], result["failures"][:5]
    assert result["measured_step_cycles"] == [pe_cost(params).step_cycles]
    assert result["steps"] >= (1 << params.weight_bits) // params.lanes if params.weight_bits <= 8 else 64


def test_rtl(rtl_simulator, cocotb_workdir):
    """cocotb on Icarus / Verilator: every configuration above in one bank (one build)."""
    jobs = [pe_job(params, seed=5) for params in ALL_CONFIGS]
    result = run_rtl(bank_job(jobs), rtl_simulator, cocotb_workdir, toplevel="mac_pes")
    assert len(result["runs"]) == len(ALL_CONFIGS)
    for params, run in zip(ALL_CONFIGS, result["runs"]):
        assert run["measured_step_cycles"] == [pe_cost(params).step_cycles], _config_id(params)
