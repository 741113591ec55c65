"""hw.pe.bitserial: the BitMoD bit-serial PE (power-of-two terms, special-value register, per-group
bit-serial rescale).

Golden model against the format's own decode, the power-of-two term decomposition and the
``mpgemm-bitserial`` cascade; cost view; Amaranth simulation and cocotb (Icarus, Verilator) of
every configuration with cycles checked against the cost view (steps and rescale steps).
"""

import numpy as np
import pytest
from amaranth.back import rtlil

from cocotb_pes import pes_bench, pes_runner
from dataflow.errors import SpecError
from dataflow.formats import get_format, pow2_terms, quantize_groups
from hw.pe import bitserial
from hw.pe.base import wrap
from hw.pe.bitserial import BitSerialParams, BitSerialPE

CONFIGS = pes_bench.bitserial_configs()
SUPPORTED = "int2..int8, uint2..uint8, e2m0, e2m1, bitmod-fp3, bitmod-fp4"


# --- parameters ---------------------------------------------------------------------------------

def test_init():
    p = BitSerialParams()
    assert (p.kind, p.act_bits, p.weight_format, p.acc_bits, p.lanes, p.group_size, p.scale_bits) == \
        ("bitserial", 8, "int4", 32, 4, None, None)
    assert (p.terms, p.weight_payload_bits, p.rescale_cycles, p.integer_scale) == (2, 16, 0, 1)
    # BitMoD: Booth INT8 / INT6 take 4 / 3 terms, FP4 and FP3 2 terms (leading-one detector)
    assert [BitSerialParams(weight_format=f).terms for f in ("int8", "int6", "e2m1", "bitmod-fp4", "bitmod-fp3")] \
        == [4, 3, 2, 2, 2]
    q = BitSerialParams(weight_format="bitmod-fp4", scale_bits=8, group_size=128)
    assert (q.integer_scale, q.specials, q.special_code, q.select_bits) == (2, (-8.0, -5.0, 5.0, 8.0), 8, 2)
    assert q.weight_payload_bits == 4 * 4 + 8 + 2
    assert q.value_bits == 6   # the special value 8 is 16 in halves


@pytest.mark.parametrize("kwargs, message", [
    ({"weight_format": "int9"}, f"weight format 'int9' is not supported by the bit-serial PE; supported: {SUPPORTED}"),
    ({"weight_format": "e4m3"}, f"weight format 'e4m3' is not supported by the bit-serial PE; supported: {SUPPORTED}"),
    ({"weight_format": "int1"}, f"weight format 'int1' is not supported by the bit-serial PE; supported: {SUPPORTED}"),
    ({"lanes": 0}, "lanes must be a positive integer, not 0"),
    ({"group_size": 6}, "group_size must be a multiple of lanes (4), not 6"),
    ({"scale_bits": 0}, "scale_bits must be a positive integer, not 0"),
    ({"scale_bits": 17}, "scale_bits must be at most 16, not 17"),
    ({"scale_signed": 1}, "scale_signed must be a bool, not 1"),
    ({"act_bits": 17}, "act_bits must be between 2 and 16, not 17"),
    ({"acc_bits": 11}, "acc_bits must be at least the product width 12, not 11"),
    ({"acc_bits": 19, "scale_bits": 8}, "acc_bits must be at least the product width 20, not 19"),
])
def test_init_wrong(kwargs, message):
    with pytest.raises(SpecError) as info:
        BitSerialParams(**kwargs)
    assert str(info.value) == message


# --- golden model -------------------------------------------------------------------------------

@pytest.mark.parametrize("weight_format", bitserial.SUPPORTED_WEIGHT_FORMATS)
def test_terms_reconstruct_every_code(weight_format):
    """Every code (every special value too) is the sum of at most ``terms`` signed powers of two,
    and the golden weight value is that sum: what the PE adds over ``terms`` cycles."""
    p = BitSerialParams(weight_format=weight_format)
    fmt = get_format(weight_format)
    codes = np.arange(1 << p.weight_bits)
    for special in (p.specials or (None,)):
        specials = None if special is None else np.full(codes.shape, special)
        terms = pow2_terms(fmt, codes, special=specials)
        assert terms.n_terms == p.terms
        values = bitserial.weight_values(p, codes, specials)
        assert np.array_equal(terms.reconstruct(), values)
        assert np.array_equal(values, np.rint(fmt.decode(codes, *(() if special is None else (specials,)))
                                              * p.integer_scale))


@pytest.mark.parametrize("weight_format", ["int8", "uint5", "e2m1", "bitmod-fp4", "bitmod-fp3"])
def test_golden_step_and_gemm(weight_format):
    p = BitSerialParams(weight_format=weight_format, acc_bits=24, group_size=8)
    rng = np.random.default_rng(1)
    codes = np.arange(1 << p.weight_bits)
    a = rng.integers(-128, 128, (10, 4))
    w = rng.choice(codes, (10, 4))
    special = rng.choice(p.specials, 10) if p.specials else None
    values = bitserial.weight_values(p, w, None if special is None else special[:, None])
    base = rng.integers(-1 << 23, 1 << 23, 10)
    assert np.array_equal(bitserial.golden_step(p, a, w, base, special=special),
                          wrap(base + (a * values).sum(axis=1), 24))
    A = rng.integers(-128, 128, (3, 16))
    W = rng.choice(codes, (16, 5))
    specials = rng.choice(p.specials, (2, 5)) if p.specials else None
    V = bitserial.weight_values(p, W, None if specials is None else np.repeat(specials, 8, axis=0))
    assert np.array_equal(bitserial.golden_gemm(p, A, W, specials=specials), wrap(A @ V, 24))


def test_golden_rescale_groups():
    """With scales, golden_gemm is sum_g scale_g * (A_g @ V_g), exactly what a PE computes with one
    rescale step after each group; golden_rescale is modular like the hardware."""
    p = BitSerialParams(weight_format="bitmod-fp4", scale_bits=8, group_size=8, acc_bits=32)
    rng = np.random.default_rng(2)
    A = rng.integers(-128, 128, (2, 24))
    W = rng.integers(0, 16, (24, 3))
    specials = rng.choice(p.specials, (3, 3))
    scales = rng.integers(-128, 128, (3, 3))
    C = bitserial.golden_gemm(p, A, W, scales=scales, specials=specials)
    V = bitserial.weight_values(p, W, np.repeat(specials, 8, axis=0))
    want = sum(scales[g] * (A[:, g * 8:(g + 1) * 8] @ V[g * 8:(g + 1) * 8]) for g in range(3))
    assert np.array_equal(C, wrap(want, 32))
    # the PE's sequence: clear, steps, a rescale after each group
    payloads = bitserial.pack_weights(p, W, scales=scales, specials=specials)
    for col in range(3):
        acc = group_base = np.zeros(2, dtype=np.int64)
        for step in range(6):
            fields = pes_bench.unpack_payload(p, payloads[step, col])
            acc = bitserial.golden_step(p, A[:, step * 4:(step + 1) * 4], fields["codes"], acc,
                                        special=fields["special"])
            if step % 2 == 1:
                acc = group_base = bitserial.golden_rescale(p, acc, group_base, fields["scale"])
        assert np.array_equal(acc, C[:, col])
    assert bitserial.golden_rescale(p, 5, 2, -1) == -1
    assert bitserial.golden_rescale(BitSerialParams(scale_bits=4, acc_bits=16), -(1 << 15), 0, 3) == -(1 << 15)


def test_golden_from_quantize_groups():
    """BitMoD quantization of real weights (dataflow.formats.quantize_groups with bitmod-fp4): the
    PE's integer result times the groups' scales reproduces A @ dequantized W."""
    from dataflow.formats import dequantize_groups

    rng = np.random.default_rng(3)
    W = rng.normal(size=(16, 4))
    gq = quantize_groups(W, "bitmod-fp4", group_size=8, axis=0)
    p = BitSerialParams(weight_format="bitmod-fp4", group_size=8)
    A = rng.integers(-128, 128, (3, 16))
    C = np.stack([bitserial.golden_gemm(p, A[:, g * 8:(g + 1) * 8], gq.codes[g * 8:(g + 1) * 8],
                                        specials=gq.specials[g:g + 1]) for g in range(2)])
    Y = sum(C[g] * gq.scales[g] for g in range(2)) / p.integer_scale
    assert np.allclose(Y, A @ dequantize_groups(gq), rtol=0, atol=1e-9)


@pytest.mark.parametrize("weight_format", ["int4", "int8", "e2m1", "uint3"])
def test_matches_mpgemm_bitserial_cascade(weight_format):
    """golden_gemm (with the int8 group scales) / integer_scale == Y of ``mpgemm-bitserial``."""
    from dataflow import evaluate, load_cascade, random_inputs

    cascade = load_cascade("mpgemm-bitserial", wfmt=weight_format, M=4, N=6, K=32, KI=16)
    inputs = random_inputs(cascade, seed=4)
    out = evaluate(cascade, inputs)
    p = BitSerialParams(weight_format=weight_format, scale_bits=8, group_size=16)
    codes = get_format(weight_format).encode(inputs["W"])
    C = bitserial.golden_gemm(p, inputs["A"], codes, scales=inputs["S"])
    assert np.array_equal(C / p.integer_scale, out["Y"])


def test_golden_wrong():
    p = BitSerialParams(weight_format="bitmod-fp4")
    with pytest.raises(SpecError, match="special is required: code 8 of bitmod-fp4 is its special value"):
        bitserial.golden_step(p, np.zeros(4), [8, 0, 0, 0], 0)
    with pytest.raises(SpecError, match="scales need a rescale unit: set scale_bits"):
        bitserial.golden_gemm(BitSerialParams(), np.zeros((1, 4)), np.zeros((4, 1), dtype=np.int64),
                              scales=[[1]])
    with pytest.raises(SpecError, match=r"scales must lie in \[-128, 127\], not 128..128"):
        bitserial.golden_rescale(BitSerialParams(scale_bits=8), 1, 0, 128)
    with pytest.raises(SpecError, match=r"scales must have shape \(2, 1\) for k=8, group_size=4"):
        bitserial.golden_gemm(BitSerialParams(scale_bits=8, group_size=4), np.zeros((1, 8)),
                              np.zeros((8, 1), dtype=np.int64), scales=[[1]])


# --- cost view ----------------------------------------------------------------------------------

def test_cost():
    p = BitSerialParams(weight_format="int8", scale_bits=8, group_size=128)
    c = bitserial.cost(p)
    assert c.step_cycles == 4
    assert c.actions == {"shift_int16": 16, "add_int32": 17, "reg_write_int32": 4}
    assert not any(name.startswith("mul") for name in c.actions)
    r = bitserial.rescale_cost(p)
    assert r.step_cycles == 8 and r.actions["add_int32"] == 10
    # BitMoD: FP4, group 128 on a 4-lane PE: 32 steps of 2 terms plus an INT8 scale's 8 cycles
    fp4 = BitSerialParams(weight_format="bitmod-fp4", scale_bits=8, group_size=128)
    assert bitserial.group_cycles(fp4) == 32 * 2 + 8
    assert bitserial.group_cycles(BitSerialParams(weight_format="int8"), 128) == 32 * 4
    with pytest.raises(SpecError, match="rescale_cost needs a rescale unit: set scale_bits"):
        bitserial.rescale_cost(BitSerialParams())


# --- RTL ------------------------------------------------------------------------------------------

@pes_runner.each_config(CONFIGS)
def test_sim(params):
    """Every code against max/min/random activations, every special value, extreme scales, rescale
    steps, random gaps: bit-exact, and cycles == cost (T per step, scale_bits per rescale)."""
    pes_runner.check_sim(params, seed=5)


@pytest.mark.rtl
def test_sim_contract_bench():
    """hw-core's generic PE bench (contract ports only; rescale tied to 0: 2 cycles a step for
    FP4) and 2x2 arrays."""
    fp4 = BitSerialParams(weight_format="bitmod-fp4", scale_bits=8, group_size=8)
    assert bitserial.cost(fp4).step_cycles == 2
    pes_runner.check_contract_bench(fp4, BitSerialParams(weight_format="int8"), seed=6)


@pytest.mark.rtl
def test_no_multiplier():
    """Terms are shifts of the activations and the rescale is shift-add: no multiplier cell."""
    for params in CONFIGS:
        cells = {line.split()[1] for line in rtlil.convert(BitSerialPE(params)).splitlines()
                 if line.strip().startswith("cell ")}
        assert cells and not cells & {"$mul", "$div", "$mod", "$divfloor", "$modfloor", "$pow"}


@pytest.mark.xdist_group("cocotb-bitserial")   # one worker exports the Verilog once for both simulators
def test_cocotb(rtl_simulator, cocotb_workdir):
    """Every bit-serial configuration in one Verilog top, all driven at once by the cocotb bench."""
    pes_runner.check_cocotb(CONFIGS, rtl_simulator, cocotb_workdir, seed=7, toplevel="bitserial_pes")
