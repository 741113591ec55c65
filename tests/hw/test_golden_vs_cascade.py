"""Lattice arrow 2 (DESIGN.md): every PE kind's golden GEMM equals the dataflow interpreter on the
matching mpGEMM cascade, on the cascade's own random inputs.

Kind -> cascade: ``mac`` -> ``gemm``; ``mac-dequant`` -> ``mpgemm-dequant``; ``bitserial`` ->
``mpgemm-bitserial``; ``lut`` -> ``mpgemm-lut``; ``shiftadd`` -> ``mpgemm-shiftadd``. Every
supported weight format of each kind is checked with int8 and int4 activations over several
shapes, including ``K`` that is a multiple of neither ``lanes`` nor the group size. Cascade
tensors hold values; the golden models take codes (``get_format(f).encode(values)``). Fixed-point
units: ``mac``/``mac-dequant``/``bitserial`` count ``1 / integer_scale`` of the weight format,
``shiftadd`` counts ``2**-exp_offset``. Integer cascade accumulators are set to the golden
model's ``acc_bits`` (both wrap alike); float (fp64) accumulators are compared where no wrap can
occur, which each test asserts.
"""

import numpy as np
import pytest

from dataflow import evaluate, load_cascade, random_inputs
from dataflow.errors import SpecError
from dataflow.formats import FORMAT_NAMES, get_format
from hw.pe import golden_gemm, make_params
from hw.pe.bitserial import SUPPORTED_WEIGHT_FORMATS as BITSERIAL_FORMATS
from hw.pe.lut import SUPPORTED_WEIGHT_FORMATS as LUT_FORMATS
from hw.pe.mac import supported_weight_formats
from hw.pe.shiftadd import SUPPORTED_WEIGHT_FORMATS as SHIFTADD_FORMATS

ACT_BITS = (8, 4)
MAC_FORMATS = tuple(supported_weight_formats(FORMAT_NAMES))


def _shapes(seed, awkward_k):
    """Three ``(m, n, k)``: one with the given awkward ``k``, two random (seeded)."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 5, awkward_k)]
    for _ in range(2):
        shapes.append((int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 41))))
    return shapes


def _seed(*parts):
    return sum(ord(ch) * (i + 1) for i, ch in enumerate("/".join(map(str, parts)))) % 10_000


def _exactly_integers(values, bound_bits):
    """Float results as int64, checking they are integral and below ``2**bound_bits`` in size."""
    values = np.asarray(values, dtype=np.float64)
    assert np.all(values == np.round(values))
    assert np.all(np.abs(values) < 2.0 ** bound_bits), "the golden accumulator would wrap"
    return values.astype(np.int64)


# --- mac: gemm ---------------------------------------------------------------------------------

# Lanes per shape; the first shape's K = 13 is a multiple of neither 4 nor 3.
MAC_LANES = (4, 3, 1)


@pytest.mark.parametrize("act_bits", ACT_BITS)
@pytest.mark.parametrize("weight_format", MAC_FORMATS)
def test_mac_equals_gemm(weight_format, act_bits):
    fmt = get_format(weight_format)
    integer = fmt.is_integer
    for index, (m, n, k) in enumerate(_shapes(_seed("mac", weight_format, act_bits), awkward_k=13)):
        lanes = MAC_LANES[index]
        params = make_params("mac", act_bits=act_bits, weight_format=weight_format, acc_bits=32, lanes=lanes)
        cascade = load_cascade("gemm", M=m, N=n, K=k, afmt=f"int{act_bits}", bfmt=weight_format,
                               zfmt="int32" if integer else "fp64")
        inputs = random_inputs(cascade, seed=_seed(weight_format, act_bits, index))
        out = evaluate(cascade, inputs)
        golden = golden_gemm(params, inputs["A"], fmt.encode(inputs["B"]))
        expected = out["Z"] if integer else _exactly_integers(out["Z"] * fmt.integer_scale, 31)
        assert np.array_equal(golden, expected), (weight_format, act_bits, m, n, k, lanes)


# --- mac-dequant: mpgemm-dequant ---------------------------------------------------------------

# (lanes, group_size, scale_bits) per shape: the group is a multiple of lanes, as the PE requires;
# the first shape's K = 23 is a multiple of neither.
DEQUANT_CONFIGS = ((4, 8, 8), (3, 6, 4), (1, 5, 8))


@pytest.mark.parametrize("act_bits", ACT_BITS)
@pytest.mark.parametrize("weight_format", MAC_FORMATS)
def test_mac_dequant_equals_mpgemm_dequant(weight_format, act_bits):
    fmt = get_format(weight_format)
    integer = fmt.is_integer
    for index, (m, n, k) in enumerate(_shapes(_seed("dequant", weight_format, act_bits), awkward_k=23)):
        lanes, group, scale_bits = DEQUANT_CONFIGS[index]
        kwargs = dict(act_bits=act_bits, weight_format=weight_format, lanes=lanes, group_size=group,
                      scale_bits=scale_bits)
        try:
            params = make_params("mac-dequant", acc_bits=32, **kwargs)
            acc_format = "int32"
        except SpecError:   # uint16 x uint8 scale x int8 needs 33 bits: use a wide, non-wrapping accumulator
            params = make_params("mac-dequant", acc_bits=48, **kwargs)
            acc_format = "int64"
        # The PE's group scale is unsigned, so the cascade's S is uintN.
        cascade = load_cascade("mpgemm-dequant", M=m, N=n, K=k, KI=group, afmt=f"int{act_bits}",
                               wfmt=weight_format, sfmt=f"uint{scale_bits}",
                               dfmt=acc_format if integer else "fp64", yfmt=acc_format if integer else "fp64")
        inputs = random_inputs(cascade, seed=_seed(weight_format, act_bits, index))
        out = evaluate(cascade, inputs)
        golden = golden_gemm(params, inputs["A"], fmt.encode(inputs["W"]), scales=inputs["S"])
        if integer and acc_format == "int32":
            expected = out["Y"]
        else:
            expected = _exactly_integers(out["Y"] * fmt.integer_scale, params.acc_bits - 1)
        assert np.array_equal(golden, expected), (weight_format, act_bits, m, n, k, lanes, group)


# --- bitserial: mpgemm-bitserial ---------------------------------------------------------------

# (lanes, group_size, scale_bits, scale_signed)
BITSERIAL_CONFIGS = ((4, 8, 8, True), (2, 6, 4, False), (4, 12, 8, True))


@pytest.mark.parametrize("act_bits", ACT_BITS)
@pytest.mark.parametrize("weight_format", BITSERIAL_FORMATS)
def test_bitserial_equals_mpgemm_bitserial(weight_format, act_bits):
    """Integer group sums (``PS``) without the rescale unit, and the rescaled result ``Y`` with it.

    BitMoD formats: the cascade's ``W`` holds values of the format without a special value (its
    ``term_sign``/``term_shift`` encode with ``special=None``, and ``random_inputs`` never draws a
    special), so the special-value code itself cannot be checked here; the base codes are, with
    random per-group specials passed to the golden model to show they leave other codes alone.
    """
    fmt = get_format(weight_format)
    scale = fmt.integer_scale
    for index, (m, n, k) in enumerate(_shapes(_seed("bitserial", weight_format, act_bits), awkward_k=29)):
        lanes, group, scale_bits, scale_signed = BITSERIAL_CONFIGS[index]
        params = make_params("bitserial", act_bits=act_bits, weight_format=weight_format, acc_bits=32,
                             lanes=lanes, group_size=group, scale_bits=scale_bits, scale_signed=scale_signed)
        sfmt = f"int{scale_bits}" if scale_signed else f"uint{scale_bits}"
        cascade = load_cascade("mpgemm-bitserial", M=m, N=n, K=k, KI=group, afmt=f"int{act_bits}",
                               wfmt=weight_format, sfmt=sfmt, pfmt="int32", yfmt="fp64")
        inputs = random_inputs(cascade, seed=_seed(weight_format, act_bits, index))
        out = evaluate(cascade, inputs)
        codes = fmt.encode(inputs["W"])
        extra = {}
        if params.specials:
            assert not np.any(codes == params.special_code)
            rng = np.random.default_rng(index)
            extra["specials"] = rng.choice(np.asarray(params.specials), inputs["S"].shape)
        # Without the rescale unit: the plain sum over groups of the cascade's integer partial sums.
        plain = golden_gemm(params, inputs["A"], codes, **extra)
        assert np.array_equal(plain, out["PS"].sum(axis=1)), (weight_format, act_bits, m, n, k, "PS")
        # With the rescale unit: sum_g S[g] * PS[g], in units of 1 / integer_scale.
        scaled = golden_gemm(params, inputs["A"], codes, scales=inputs["S"], **extra)
        expected = _exactly_integers(out["Y"] * scale, 31)
        assert np.array_equal(scaled, expected), (weight_format, act_bits, m, n, k, "Y")


# --- lut: mpgemm-lut ---------------------------------------------------------------------------

# (lanes, lut_k): lanes is a multiple of lut_k; the cascade's KL is lut_k.
LUT_CONFIGS = ((4, 4), (6, 3), (2, 1))


def _lut_case(weight_format, act_bits, index, m, n, k, table_bits=None):
    lanes, lut_k = LUT_CONFIGS[index]
    params = make_params("lut", act_bits=act_bits, weight_format=weight_format, acc_bits=32, lanes=lanes,
                         lut_k=lut_k, table_bits=table_bits)
    cascade = load_cascade("mpgemm-lut", M=m, N=n, K=k, KL=lut_k, afmt=f"int{act_bits}", wfmt=weight_format,
                           tfmt="int16", yfmt="int32")
    inputs = random_inputs(cascade, seed=_seed(weight_format, act_bits, index))
    return params, inputs, evaluate(cascade, inputs)


def _lut_shapes(weight_format, act_bits):
    return _shapes(_seed("lut", weight_format, act_bits), awkward_k=15)


def _exact_table_bits(lut_k, act_bits):
    bound = lut_k << (act_bits - 1)
    bits = 1
    while not (-(1 << (bits - 1)) <= -bound and bound < (1 << (bits - 1))):
        bits += 1
    return bits


def _lut_offset_correction(params):
    """``c`` in ``2 dot(a, w) = sum_b 2**b T[plane_b] + c * sum_groups T[0]`` (offset binary:
    ``T[0] = -sum(a)``): 1 for signed formats, ``-(2**B - 1)`` for unsigned ones."""
    return 1 if params.weight_signed else -((1 << params.weight_bits) - 1)


@pytest.mark.parametrize("act_bits", ACT_BITS)
@pytest.mark.parametrize("weight_format", LUT_FORMATS)
def test_lut_exact_equals_mpgemm_lut(weight_format, act_bits):
    """Exact tables: ``golden == YI``, and ``golden`` is also the cascade's raw lookups ``Z`` with
    the offset-binary correction of ``lut.py``'s docstring (``2 dot = Z + c * sum_groups T[0]``,
    ``T[0] = -sum(a)``), derived independently of the cascade's own ``YI`` einsum."""
    for index, (m, n, k) in enumerate(_lut_shapes(weight_format, act_bits)):
        params, inputs, out = _lut_case(weight_format, act_bits, index, m, n, k)
        golden = golden_gemm(params, inputs["A"], get_format(weight_format).encode(inputs["W"]))
        assert np.array_equal(golden, out["YI"]), (weight_format, act_bits, m, n, k)
        twice = out["Z"] - _lut_offset_correction(params) * out["AS"][:, None]
        assert np.all(twice % 2 == 0)
        assert np.array_equal(golden, twice >> 1), (weight_format, act_bits, m, n, k)


@pytest.mark.parametrize("act_bits", ACT_BITS)
@pytest.mark.parametrize("weight_format", LUT_FORMATS)
def test_lut_rounded_tables_match_rounding_of_cascade_tables(weight_format, act_bits):
    """``table_bits`` (INT8 tables for int8 activations): the golden result is exactly what rounding
    the cascade's table ``H`` to ``table_bits`` predicts, and within the rounding error bound."""
    rounding_seen = False
    for index, (m, n, k) in enumerate(_lut_shapes(weight_format, act_bits)):
        lut_k = LUT_CONFIGS[index][1]
        exact_bits = _exact_table_bits(lut_k, act_bits)
        table_bits = min(8, exact_bits - 2)
        params, inputs, out = _lut_case(weight_format, act_bits, index, m, n, k, table_bits=table_bits)
        # r: the smallest shift whose rounded entries fit table_bits (two's complement).
        bound, r = lut_k << (act_bits - 1), 0
        while not (((bound + (r and 1 << (r - 1))) >> r) < (1 << (table_bits - 1))
                   and ((-bound + (r and 1 << (r - 1))) >> r) >= -(1 << (table_bits - 1))):
            r += 1
        assert r >= 1 and params.table_shift == r
        # Evaluate the cascade on the operands as the array feeds them: K zero-padded to a multiple
        # of lanes, pad weights of value 0 (code 0). The cascade itself masks the pad lanes' pattern
        # bits instead; with exact tables that is the same (the pad activation is 0), but rounding
        # is not odd-symmetric ((T + h) >> r != -((-T + h) >> r)), so a pad lane in the top pattern
        # bit would fold the lookup onto the other half of the table and change the rounding.
        k_pad = -(-k // params.lanes) * params.lanes
        padded = {"A": np.zeros((m, k_pad), dtype=np.int64), "W": np.zeros((k_pad, n), dtype=np.int64),
                  "S": inputs["S"]}
        padded["A"][:, :k], padded["W"][:k] = inputs["A"], inputs["W"]
        out = evaluate(load_cascade("mpgemm-lut", M=m, N=n, K=k_pad, KL=lut_k, afmt=f"int{act_bits}",
                                    wfmt=weight_format, tfmt="int16", yfmt="int32"), padded)
        H, HI, HSG = out["H"], out["HI"], out["HSG"]
        rounded = (H + (1 << (r - 1))) >> r                                   # [M, KG, J]
        assert rounded.min() >= -(1 << (table_bits - 1)) and rounded.max() < (1 << (table_bits - 1))
        planes = np.arange(HI.shape[0])
        # rounded[m, kg, HI[b, kg, n]] -> [M, B, KG, N]
        gathered = rounded[np.arange(m)[:, None, None, None], np.arange(HI.shape[1])[None, None, :, None], HI[None]]
        z_rounded = ((HSG[None] * gathered).sum(axis=2) << planes[None, :, None]).sum(axis=1)   # [M, N]
        correction = _lut_offset_correction(params)
        predicted = (z_rounded + correction * rounded[:, :, 0].sum(axis=1)[:, None]) << (r - 1)
        golden = golden_gemm(params, inputs["A"], get_format(weight_format).encode(inputs["W"]))
        assert np.array_equal(golden, predicted), (weight_format, act_bits, m, n, k, table_bits)
        # |2**r * rounded - H| <= 2**(r-1) per entry: per group at most (2**B - 1 + |c|) entries' worth, halved.
        exact = inputs["A"] @ inputs["W"]
        groups = H.shape[1]
        limit = groups * (((1 << params.weight_bits) - 1) + abs(correction)) * (1 << (r - 1)) // 2
        assert np.abs(golden - exact).max() <= limit
        rounding_seen |= not np.array_equal(golden, exact)
    assert rounding_seen, "the rounded tables never changed a result: the check is vacuous"


# --- shiftadd: mpgemm-shiftadd -----------------------------------------------------------------

# (lanes, lut_k, exp_bits): the cascade's E is int{exp_bits}, the PE's exponent field.
SHIFTADD_CONFIGS = ((4, 4, 4), (6, 3, 3), (2, 2, 4))


@pytest.mark.parametrize("act_bits", ACT_BITS)
@pytest.mark.parametrize("weight_format", SHIFTADD_FORMATS)
def test_shiftadd_equals_mpgemm_shiftadd(weight_format, act_bits):
    """``golden * 2**-exp_offset == Y``. The cascade has one exponent per binary matrix and column
    (``E[I, N]``), so only ``group_size=None`` is comparable; per-group exponents have no cascade."""
    planes = get_format(weight_format).bits
    for index, (m, n, k) in enumerate(_shapes(_seed("shiftadd", weight_format, act_bits), awkward_k=17)):
        lanes, lut_k, exp_bits = SHIFTADD_CONFIGS[index]
        params = make_params("shiftadd", act_bits=act_bits, weight_format=weight_format, acc_bits=48,
                             lanes=lanes, lut_k=lut_k, exp_bits=exp_bits)
        assert params.exp_offset == 1 << (exp_bits - 1)
        cascade = load_cascade("mpgemm-shiftadd", M=m, N=n, K=k, KL=lut_k, I=planes, afmt=f"int{act_bits}",
                               efmt=f"int{exp_bits}", tfmt="int16", yfmt="fp64")
        inputs = random_inputs(cascade, seed=_seed(weight_format, act_bits, index))
        out = evaluate(cascade, inputs)
        # A weight code packs the binary matrices' sign bits: bit i = BB[i] (1 for +1).
        codes = (inputs["BB"] << np.arange(planes)[:, None, None]).sum(axis=0)
        golden = golden_gemm(params, inputs["A"], codes, exponents=inputs["E"])
        expected = _exactly_integers(np.ldexp(out["Y"], params.exp_offset), 47)
        assert np.array_equal(golden, expected), (weight_format, act_bits, m, n, k, lanes, lut_k, exp_bits)
