"""Tests for dataflow.formats: bit-exact formats, group quantization, BCQ and pow2 terms."""

import dataclasses
import math
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dataflow.errors import FormatError
from dataflow.formats import (
    FORMAT_NAMES, BCQWeights, BitModFormat, FloatFormat, GroupQuantized, IntFormat, NumberFormat,
    Pow2Terms, bcq_dequantize, bcq_quantize, dequantize_groups, expand_groups, get_format, pow2_terms,
    quantize_groups,
)

SMALL = [name for name in FORMAT_NAMES if get_format(name).bits <= 16]
FLOATS = [name for name in FORMAT_NAMES if isinstance(get_format(name), FloatFormat)]
IEEE = [name for name in FLOATS if get_format(name).nonfinite == "ieee"]
BITMOD = [name for name in FORMAT_NAMES if isinstance(get_format(name), BitModFormat)]
POW2 = [name for name in SMALL if name not in ("bf16",)]
FAST = settings(max_examples=25, deadline=None)


# --- helpers (independent of encode) -----------------------------------------------------------

@lru_cache(maxsize=None)
def value_table(name):
    """Sorted finite values of a <=16-bit format and the (+0-preferring) code of each, from decode."""
    fmt = get_format(name)
    codes = fmt.codes()
    values = fmt.decode(codes).astype(np.float64)
    keep = np.isfinite(values) & ~((values == 0) & (codes != 0))
    order = np.argsort(values[keep], kind="stable")
    return values[keep][order], codes[keep][order]


def nearest_reference(name, x, special=None):
    """Nearest value over values() (plus a BitMoD special): ties to the even code, or to the base
    value over the special. Brute-force distance matrix for small formats, neighbours otherwise."""
    values, codes = value_table(name)
    x = np.asarray(x, dtype=np.float64)
    if len(values) <= 512:
        distance = np.abs(x[:, None] - values[None, :])
        best = distance.min(axis=1, keepdims=True)
        tied = distance == best
        even = tied & (codes[None, :] % 2 == 0)
        pick = np.where(even.any(axis=1), np.argmax(even, axis=1), np.argmax(tied, axis=1))
    else:
        upper = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
        lower = upper - 1
        d_low, d_up = x - values[lower], values[upper] - x
        pick = np.where(d_low < d_up, lower, np.where(d_up < d_low, upper,
                                                       np.where(codes[lower] % 2 == 0, lower, upper)))
    result = values[pick]
    if special is not None:
        result = np.where(np.abs(x - special) < np.abs(x - result), special, result)
    return result


def sample_in_range(fmt, rng, count):
    """Log-uniform magnitudes over the format's range (subnormals included) and a little beyond,
    both signs."""
    top = math.log2(min(max(-fmt.min_value, fmt.max_value), 2.0 ** 1000) * 1.25)
    bottom = top - 60 if fmt.is_integer else max(top - 80, -1070)
    magnitudes = 2.0 ** rng.uniform(bottom, top, count)
    return magnitudes * rng.choice([-1.0, 1.0], count)


def powers_of_two(values):
    mantissa, _ = np.frexp(values)
    return np.all(mantissa == 0.5)


def min_signed_digits(n, memo={0: 0, 1: 1}):
    """Fewest signed power-of-two terms summing to n >= 0 (dynamic programming)."""
    if n not in memo:
        memo[n] = min_signed_digits(n // 2) if n % 2 == 0 else \
            1 + min(min_signed_digits((n - 1) // 2), min_signed_digits((n + 1) // 2))
    return memo[n]


def booth_digits_reference(value, width):
    """Radix-4 Booth digits of a two's-complement ``value`` in ``width`` bits, one by one."""
    pattern = value & ((1 << width) - 1)
    bit = lambda i: (pattern >> i) & 1 if i >= 0 else 0  # noqa: E731
    return [-2 * bit(2 * k + 1) + bit(2 * k) + bit(2 * k - 1) for k in range(width // 2)]


# --- registry ----------------------------------------------------------------------------------

def test_format_names_cover_the_brief():
    expected = ({f"int{b}" for b in range(1, 17)} | {f"uint{b}" for b in range(1, 17)}
                | {"int32", "int64", "ternary", "e2m1", "e2m3", "e3m2", "e4m3", "e5m2", "fp16", "bf16",
                   "fp32", "fp64", "bitmod-fp3", "bitmod-fp4"})
    assert expected <= set(FORMAT_NAMES)
    assert len(set(FORMAT_NAMES)) == len(FORMAT_NAMES)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_get_format_is_cached_frozen_and_hashable(name):
    fmt = get_format(name)
    assert isinstance(fmt, NumberFormat)
    assert fmt.name == name == str(fmt)
    assert get_format(name) is fmt
    assert get_format(fmt) is fmt
    assert get_format(name.upper().replace("-", "_")) is fmt
    assert {fmt: 1}[get_format(name)] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.name = "other"


@pytest.mark.parametrize("alias, name", [
    ("fp4", "e2m1"), ("FP8_E4M3", "e4m3"), ("e4m3fn", "e4m3"), ("fp8-e5m2", "e5m2"),
    ("float16", "fp16"), ("bfloat16", "bf16"), (" Int8 ", "int8"), ("BitMoD_FP4", "bitmod-fp4"),
])
def test_yaml_friendly_spellings(alias, name):
    assert get_format(alias) is get_format(name)


def test_unknown_format_message():
    with pytest.raises(FormatError, match=r"^unknown number format 'int33'; known: int1, int2, .*, bitmod-fp4$"):
        get_format("int33")
    with pytest.raises(FormatError, match=r"^number format must be a name such as 'int4', not 4$"):
        get_format(4)


def test_integer_format_properties():
    for bits in range(1, 17):
        signed, unsigned = get_format(f"int{bits}"), get_format(f"uint{bits}")
        assert (signed.bits, signed.min_value, signed.max_value) == (bits, -2 ** (bits - 1), 2 ** (bits - 1) - 1)
        assert (unsigned.bits, unsigned.min_value, unsigned.max_value) == (bits, 0, 2 ** bits - 1)
        assert signed.is_integer and signed.signed and unsigned.is_integer and not unsigned.signed
        assert signed.values().tolist() == list(range(-2 ** (bits - 1), 2 ** (bits - 1)))
    assert get_format("int1").values().tolist() == [-1, 0]
    ternary = get_format("ternary")
    assert (ternary.bits, ternary.min_value, ternary.max_value) == (2, -1, 1)
    assert ternary.values().tolist() == [-1, 0, 1] and ternary.codes().tolist() == [0, 1, 3]
    assert get_format("int32").max_value == 2 ** 31 - 1 and get_format("int64").min_value == -2 ** 63


@pytest.mark.parametrize("name, bits, max_value, smallest_subnormal", [
    ("e2m1", 4, 6.0, 0.5), ("e2m3", 6, 7.5, 0.125), ("e3m2", 6, 28.0, 0.0625),
    ("e4m3", 8, 448.0, 2.0 ** -9), ("e5m2", 8, 57344.0, 2.0 ** -16), ("fp16", 16, 65504.0, 2.0 ** -24),
    ("bf16", 16, (2 - 2 ** -7) * 2.0 ** 127, 2.0 ** -133),
    ("fp32", 32, float(np.finfo(np.float32).max), 2.0 ** -149),
    ("fp64", 64, float(np.finfo(np.float64).max), 2.0 ** -1074),
])
def test_float_format_ranges(name, bits, max_value, smallest_subnormal):
    fmt = get_format(name)
    assert (fmt.bits, fmt.max_value, fmt.min_value) == (bits, max_value, -max_value)
    assert fmt.decode(1) == smallest_subnormal
    assert not fmt.is_integer and fmt.signed


def test_ocp_mx_value_sets():
    assert get_format("e2m1").values()[7:].tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert get_format("e2m0").values()[3:].tolist() == [0, 1, 2, 4]
    e2m3 = get_format("e2m3").values()
    assert e2m3[31:39].tolist() == [k / 8 for k in range(8)] and e2m3[-1] == 7.5
    e3m2 = get_format("e3m2")
    assert e3m2.decode(0b000100) == 0.25 and e3m2.decode(0b000011) == 0.1875
    for name in ("e2m0", "e2m1", "e2m3", "e3m2"):
        decoded = get_format(name).decode(get_format(name).codes())
        assert np.isfinite(decoded).all()  # OCP MX: no inf, no NaN


def test_ocp_fp8_table():
    """OCP 8-bit floating point spec v1.0, table of E4M3 / E5M2 special values."""
    e4m3, e5m2 = get_format("e4m3"), get_format("e5m2")
    assert e4m3.decode(0b0_1111_110) == 448 and e4m3.decode(0b1_1111_110) == -448
    assert e4m3.decode(0b0_0001_000) == 2.0 ** -6 and e4m3.decode(0b0_0000_111) == 0.875 * 2.0 ** -6
    assert np.isnan(e4m3.decode([0b0_1111_111, 0b1_1111_111])).all()
    assert np.isfinite(e4m3.decode(np.delete(np.arange(256), [0x7F, 0xFF]))).all()  # no inf
    assert e5m2.decode(0b0_11110_11) == 57344 and e5m2.decode(0b0_00001_00) == 2.0 ** -14
    assert e5m2.decode(0b0_00000_11) == 0.75 * 2.0 ** -14
    assert e5m2.decode(0b0_11111_00) == np.inf and e5m2.decode(0b1_11111_00) == -np.inf
    assert np.isnan(e5m2.decode([0b0_11111_01, 0b0_11111_10, 0b1_11111_11])).all()
    assert e4m3.encode([np.nan, -np.nan]).tolist() == [0x7F, 0xFF]
    assert e4m3.encode([464.0, 470.0, 1e9, np.inf, -np.inf]).tolist() == [0x7E, 0x7E, 0x7E, 0x7E, 0xFE]


def test_integer_scale_is_the_smallest_power_of_two():
    assert get_format("e2m1").integer_scale == 2
    assert get_format("e3m2").integer_scale == 16 and get_format("e2m0").integer_scale == 1
    for name in SMALL:
        fmt = get_format(name)
        scaled = fmt.values() * fmt.integer_scale
        assert np.array_equal(scaled, np.round(scaled))
        if fmt.integer_scale > 1:
            assert not np.array_equal(scaled / 2, np.round(scaled / 2))


# --- codes, encode, decode ---------------------------------------------------------------------

@pytest.mark.parametrize("name", SMALL)
def test_exhaustive_round_trip(name):
    fmt = get_format(name)
    codes = fmt.codes()
    assert codes.dtype == np.int64 and np.all(np.diff(codes) > 0)
    decoded = fmt.decode(codes)
    assert decoded.dtype == (np.int64 if fmt.is_integer else np.float64)
    assert np.array_equal(fmt.encode(decoded), codes)  # NaN payloads and -0 included
    values = fmt.values()
    assert np.all(np.diff(values) > 0) and np.isfinite(values).all()
    assert values[0] == fmt.min_value and values[-1] == fmt.max_value


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_quantize_is_idempotent(name):
    fmt = get_format(name)
    x = sample_in_range(fmt, np.random.default_rng(1), 2000)
    once = fmt.quantize(x)
    assert np.array_equal(fmt.quantize(once), once)
    assert np.array_equal(fmt.encode(once), fmt.encode(x))


@pytest.mark.parametrize("name", SMALL)
@FAST
@given(seed=st.integers(0, 2 ** 32 - 1),
       edges=hnp.arrays(np.float64, 24, elements=st.floats(-1e5, 1e5, allow_subnormal=True)))
def test_quantize_picks_a_nearest_value(name, seed, edges):
    fmt = get_format(name)
    x = np.concatenate([sample_in_range(fmt, np.random.default_rng(seed), 400), edges])
    if name in IEEE:  # values beyond the overflow threshold go to inf (tested below)
        x = x[np.abs(x) <= fmt.max_value]
    got = fmt.quantize(x)
    assert np.array_equal(got, nearest_reference(name, x))
    if not fmt.is_integer and name not in BITMOD:
        assert np.array_equal(np.signbit(got), np.signbit(x))  # a rounded-to-zero keeps its sign


@pytest.mark.parametrize("name", SMALL)
def test_ties_round_to_the_even_code(name):
    values, codes = value_table(name)
    midpoints = (values[:-1] + values[1:]) / 2
    expected = np.where(codes[:-1] % 2 == 0, values[:-1], values[1:])
    if name in IEEE or len(values) > 4096:
        keep = np.random.default_rng(2).choice(len(midpoints), min(len(midpoints), 4096), replace=False)
        midpoints, expected = midpoints[keep], expected[keep]
    assert np.array_equal(get_format(name).quantize(midpoints), expected)


def test_ties_examples():
    assert get_format("int4").quantize([2.5, 3.5, -2.5, -0.5]).tolist() == [2, 4, -2, 0]
    assert get_format("e2m1").quantize([2.5, 3.5, 5.0, 0.25, 0.75]).tolist() == [2, 4, 4, 0, 1]
    assert get_format("e2m0").quantize([3.0, 1.5, 0.5]).tolist() == [2, 2, 0]


@pytest.mark.parametrize("name", [n for n in FORMAT_NAMES if n not in IEEE])
def test_saturation(name):
    fmt = get_format(name)
    big = float(fmt.max_value) * 4 + 10
    got = fmt.quantize([big, -big, np.inf, -np.inf])
    low = fmt.min_value
    assert got.tolist() == [fmt.max_value, low, fmt.max_value, low]


@pytest.mark.parametrize("name", IEEE)
def test_ieee_overflow_goes_to_inf(name):
    fmt = get_format(name)
    ulp = 2.0 ** (fmt.max_exponent - fmt.man_bits)
    if fmt.bits <= 16:
        assert ulp == fmt.max_value - fmt.values()[-2]
    if name == "fp64":
        assert fmt.quantize([np.inf, -np.inf]).tolist() == [np.inf, -np.inf]
        return
    threshold = fmt.max_value + ulp / 2
    got = fmt.quantize([threshold, np.nextafter(threshold, 0), -threshold, np.inf, 1e300])
    assert got.tolist() == [np.inf, fmt.max_value, -np.inf, np.inf, np.inf]
    assert np.isnan(fmt.quantize(np.nan))


@pytest.mark.parametrize("name", ["int4", "uint8", "ternary", "e2m1", "e3m2", "bitmod-fp4"])
def test_nan_without_a_nan_code_is_an_error(name):
    with pytest.raises(FormatError, match=rf"^cannot encode NaN in {name}: it has no NaN code$"):
        get_format(name).encode([1.0, np.nan])


def test_fp16_matches_numpy():
    fp16 = get_format("fp16")
    codes = np.arange(1 << 16)
    reference = codes.astype(np.uint16).view(np.float16).astype(np.float64)
    decoded = fp16.decode(codes)
    assert np.array_equal(decoded, reference, equal_nan=True)
    assert np.array_equal(np.signbit(decoded), np.signbit(reference))
    rng = np.random.default_rng(3)
    x = np.concatenate([sample_in_range(fp16, rng, 200_000) * rng.uniform(0.5, 1.2, 200_000),
                        [65519.99, 65520.0, 1e6, -1e6, 2.0 ** -25, -2.0 ** -25, 3 * 2.0 ** -26, 0.0, -0.0]])
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16).view(np.uint16).astype(np.int64)
    assert np.array_equal(fp16.encode(x), expected)


def test_bf16_is_float32_rounded_to_nearest_even():
    bf16 = get_format("bf16")
    codes = np.arange(1 << 16)
    pattern = np.random.default_rng(4).integers(0, 1 << 32, 300_000, dtype=np.uint64)
    with np.errstate(invalid="ignore"):  # float32 signaling NaNs
        widened = (codes.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        as_float = pattern.astype(np.uint32).view(np.float32).astype(np.float64)
    assert np.array_equal(bf16.decode(codes), widened, equal_nan=True)
    finite = np.isfinite(as_float)
    expected = (pattern.astype(np.int64) + 0x7FFF + ((pattern.astype(np.int64) >> 16) & 1)) >> 16
    assert np.array_equal(bf16.encode(as_float[finite]), expected[finite])


def test_fp32_and_fp64_match_numpy():
    rng = np.random.default_rng(5)
    x = 2.0 ** rng.uniform(-160, 130, 100_000) * rng.choice([-1, 1], 100_000)
    with np.errstate(over="ignore"):
        expected = x.astype(np.float32).view(np.uint32).astype(np.int64)
    assert np.array_equal(get_format("fp32").encode(x), expected)
    y = 2.0 ** rng.uniform(-1074, 1023, 10_000) * rng.choice([-1, 1], 10_000)
    fp64 = get_format("fp64")
    assert fp64.encode(y).dtype == np.uint64
    assert np.array_equal(fp64.encode(y), y.view(np.uint64)) and np.array_equal(fp64.quantize(y), y)


def test_int64_and_int32_encode_exactly():
    int64 = get_format("int64")
    values = np.array([-2 ** 63, -1, 0, 2 ** 62 + 1, 2 ** 63 - 1], dtype=np.int64)
    assert np.array_equal(int64.decode(int64.encode(values)), values)
    assert int64.decode(int64.encode([1e30, -1e30])).tolist() == [2 ** 63 - 1, -2 ** 63]
    int32 = get_format("int32")
    assert int32.encode([-1, 2 ** 40]).tolist() == [2 ** 32 - 1, 2 ** 31 - 1]


@pytest.mark.parametrize("name", ["int4", "int64", "ternary", "e4m3", "fp16", "fp64", "bitmod-fp4"])
def test_shapes_are_kept(name):
    fmt = get_format(name)
    assert fmt.encode(1.0).shape == () and fmt.decode(fmt.encode(1.0)) == 1
    assert fmt.encode([]).shape == (0,) and fmt.decode([]).shape == (0,)
    strided = np.arange(24.0).reshape(4, 6)[:, ::2] / 8
    assert np.array_equal(fmt.encode(strided), fmt.encode(strided.copy()))
    assert fmt.encode(strided).shape == (4, 3) and fmt.encode(strided).dtype == fmt.code_dtype


def test_code_errors():
    with pytest.raises(FormatError, match=r"^code 16 does not fit int4 \(4 bits\)$"):
        get_format("int4").decode([3, 16])
    with pytest.raises(FormatError, match=r"^int4 code -1 is negative$"):
        get_format("int4").decode([-1])
    with pytest.raises(FormatError, match=r"^code 2 is not a valid ternary code$"):
        get_format("ternary").decode([0, 2])
    with pytest.raises(FormatError, match=r"^e2m1 codes must be integers, not float64$"):
        get_format("e2m1").decode([1.0])
    with pytest.raises(FormatError,
                       match=r"^codes\(\) enumerates formats of at most 16 bits, not fp32 \(32 bits\)$"):
        get_format("fp32").codes()


def test_constructor_errors():
    with pytest.raises(FormatError, match=r"^bits must be an integer from 1 to 64, not 0$"):
        IntFormat("int0", 0)
    with pytest.raises(FormatError, match=r"^bits must be an integer from 1 to 63, not 64$"):
        IntFormat("uint64", 64, signed=False)
    with pytest.raises(FormatError, match=r"^narrow needs a signed format of at least 2 bits, not t1$"):
        IntFormat("t1", 1, narrow=True)
    with pytest.raises(FormatError, match=r"^nonfinite must be one of ieee, fn, none, not 'inf'$"):
        FloatFormat("x", 4, 3, 7, "inf")
    with pytest.raises(FormatError, match=r"^bias 2000 puts the exponents of x outside float64's range$"):
        FloatFormat("x", 4, 3, 2000)
    with pytest.raises(FormatError, match=r"^candidates must be finite numbers that e2m1 cannot represent, not 6$"):
        BitModFormat("b", get_format("e2m1"), (5, 6))
    assert BitModFormat("b", get_format("e2m1"), (5, 7)).candidates == (5.0, 7.0)


# --- signed power-of-two terms -----------------------------------------------------------------

@pytest.mark.parametrize("name", POW2)
def test_pow2_terms_reconstruct_every_code(name):
    fmt = get_format(name)
    codes = fmt.codes()
    if not fmt.is_integer:
        codes = codes[np.isfinite(fmt.decode(codes))]
    specials = list(fmt.candidates) if name in BITMOD else [None]
    used = []
    for special in specials:
        batch = np.append(codes, fmt.special_code) if special is not None else codes
        terms = pow2_terms(fmt, batch, special=special)
        assert isinstance(terms, Pow2Terms)
        assert terms.signs.dtype == np.int8 and terms.shifts.dtype == np.int8
        assert terms.signs.shape == batch.shape + (fmt.serial_terms,) == terms.shifts.shape
        assert set(np.unique(terms.signs)) <= {-1, 0, 1} and terms.shifts.min() >= 0
        values = fmt.decode(batch) if special is None else fmt.decode(batch, special)
        exact = [int(v) * fmt.integer_scale if fmt.is_integer else int(v * fmt.integer_scale) for v in values]
        got = [sum(int(s) << int(t) for s, t in zip(row_s, row_t))
               for row_s, row_t in zip(terms.signs.tolist(), terms.shifts.tolist())]
        assert got == exact
        assert np.array_equal(terms.reconstruct(), np.array(exact, dtype=np.int64))
        used.append((terms.signs != 0).sum(axis=-1))
    assert max(u.max() for u in used) == fmt.serial_terms  # the bound is attained


@pytest.mark.parametrize("name, terms", [
    ("int1", 1), ("ternary", 1), ("int2", 1), ("int3", 2), ("int4", 2), ("int5", 3), ("int6", 3),
    ("int7", 4), ("int8", 4), ("int16", 8), ("uint4", 3), ("uint8", 5), ("int32", 16),
    ("e2m0", 1), ("e2m1", 2), ("e3m2", 2), ("e5m2", 2), ("e2m3", 3), ("e4m3", 3), ("fp16", 6),
    ("bitmod-fp3", 2), ("bitmod-fp4", 2),
])
def test_serial_terms(name, terms):
    assert get_format(name).serial_terms == terms


@pytest.mark.parametrize("name", ["int1", "int2", "int3", "int4", "int6", "int8", "uint4", "uint8", "ternary"])
def test_booth_digits(name):
    fmt = get_format(name)
    width = 2 * fmt.serial_terms
    assert width in (fmt.bits + (not fmt.signed), fmt.bits + (not fmt.signed) + 1)
    codes = fmt.codes()
    terms = pow2_terms(fmt, codes)
    for value, signs, shifts in zip(fmt.decode(codes).tolist(), terms.signs.tolist(), terms.shifts.tolist()):
        digits = [s * (1 << (t - 2 * k)) if s else 0 for k, (s, t) in enumerate(zip(signs, shifts))]
        assert digits == booth_digits_reference(value, width)
        assert all(t - 2 * k in (0, 1) for k, (s, t) in enumerate(zip(signs, shifts)) if s)


@pytest.mark.parametrize("name", ["e2m0", "e2m1", "bitmod-fp4"])
def test_leading_one_terms_are_the_one_bits(name):
    fmt = get_format(name)
    codes = fmt.codes()
    terms = pow2_terms(fmt, codes)
    values = fmt.decode(codes)
    for value, signs, shifts in zip(values.tolist(), terms.signs.tolist(), terms.shifts.tolist()):
        magnitude = int(abs(value) * fmt.integer_scale)
        bits = [i for i in range(magnitude.bit_length() - 1, -1, -1) if magnitude >> i & 1]
        assert [t for s, t in zip(signs, shifts) if s] == bits
        assert all(s == (1 if value > 0 else -1) for s in signs[:len(bits)])


@pytest.mark.parametrize("name", ["e3m2", "e2m3", "e4m3", "e5m2"])
def test_csd_terms_are_minimal_and_non_adjacent(name):
    fmt = get_format(name)
    codes = fmt.codes()
    codes = codes[np.isfinite(fmt.decode(codes))]
    terms = pow2_terms(fmt, codes)
    for value, signs, shifts in zip(fmt.decode(codes).tolist(), terms.signs.tolist(), terms.shifts.tolist()):
        used = [t for s, t in zip(signs, shifts) if s]
        assert len(used) == min_signed_digits(int(abs(value) * fmt.integer_scale))
        assert all(a - b >= 2 for a, b in zip(used, used[1:]))  # most significant first, non-adjacent


def test_pow2_terms_errors():
    with pytest.raises(FormatError,
                       match=r"^pow2_terms cannot decompose bf16: its integer-scaled values exceed 62 bits$"):
        pow2_terms("bf16", [1])
    with pytest.raises(FormatError, match=r"^pow2_terms supports integer formats of at most 32 bits, not int64$"):
        pow2_terms("int64", [1])
    with pytest.raises(FormatError, match=r"^pow2_terms cannot decompose a non-finite e4m3 value \(nan\)$"):
        pow2_terms("e4m3", [0x7F])
    with pytest.raises(FormatError, match=r"^special applies to BitMoD formats only, not e2m1$"):
        pow2_terms("e2m1", [8], special=5.0)


# --- BitMoD special values ---------------------------------------------------------------------

@pytest.mark.parametrize("name", BITMOD)
def test_bitmod_special_code_decodes_to_the_special(name):
    fmt = get_format(name)
    assert fmt.special_code == 1 << (fmt.bits - 1) and fmt.special_code not in fmt.codes()
    for special in fmt.candidates:
        assert fmt.decode([fmt.special_code, 1], special=special).tolist() == [special, fmt.base.decode(1)]
        assert fmt.encode(special, special=special) == fmt.special_code
    per_element = np.array(fmt.candidates)
    special_codes = np.full(len(per_element), fmt.special_code)
    assert np.array_equal(fmt.decode(special_codes, special=per_element), per_element)
    assert fmt.encode(-0.0) == 0 and fmt.encode(-1e-9) == 0  # the -0 code never means zero
    high = max(fmt.candidates)
    below = fmt.base.values()[fmt.base.values() < high].max()
    tie = (below + high) / 2  # halfway between the special and a base value: the base value wins
    assert fmt.quantize([tie, np.nextafter(tie, high)], special=high).tolist() == [below, high]
    with pytest.raises(FormatError,
                       match=rf"^code {fmt.special_code} of {name} is the special-value code; pass special=$"):
        fmt.decode([fmt.special_code])
    with pytest.raises(FormatError, match=rf"^special value 1.0 is not a candidate of {name} \("):
        fmt.decode([fmt.special_code], special=1.0)


@pytest.mark.parametrize("name", BITMOD)
@FAST
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_bitmod_encode_is_nearest_with_special(name, seed):
    fmt = get_format(name)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-12, 12, 300)
    for special in fmt.candidates:
        expected = nearest_reference(name, x, special)
        assert np.array_equal(fmt.quantize(x, special=special), expected)


@pytest.mark.parametrize("name, plain", [("bitmod-fp4", "e2m1"), ("bitmod-fp3", "e2m0")])
@FAST
@given(seed=st.integers(0, 2 ** 32 - 1), group_size=st.integers(1, 20))
def test_bitmod_choice_never_increases_group_error(name, plain, seed, group_size):
    fmt, base = get_format(name), get_format(plain)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 37)) * rng.uniform(0.1, 3)
    specials = fmt.choose_specials(x, group_size)
    assert specials.shape == (3, -(-37 // group_size)) and np.isin(specials, fmt.candidates).all()
    expand = lambda per_group: expand_groups(per_group, group_size, 37)  # noqa: E731
    group_error = lambda y: np.add.reduceat((y - x) ** 2, np.arange(0, 37, group_size), axis=-1)  # noqa: E731
    chosen = group_error(fmt.quantize(x, special=expand(specials)))
    assert np.all(chosen <= group_error(base.quantize(x)))
    for special in fmt.candidates:  # the choice is the best candidate
        assert np.all(chosen <= group_error(fmt.quantize(x, special=special)))
    for scale_format in ("fp16", "uint8"):
        with_special = quantize_groups(x, fmt, group_size, scale_format=scale_format)
        without = quantize_groups(x, base, group_size, scale_format=scale_format)
        assert np.isin(with_special.specials, fmt.candidates).all()
        assert np.all(group_error(dequantize_groups(with_special)) <= group_error(dequantize_groups(without)))


# --- group quantization ------------------------------------------------------------------------

def _absmax_groups(x, group_size):
    return np.maximum.reduceat(np.abs(x), np.arange(0, x.shape[-1], group_size), axis=-1)


@FAST
@given(seed=st.integers(0, 2 ** 32 - 1), rows=st.integers(1, 4), length=st.integers(1, 70),
       group_size=st.integers(1, 40), name=st.sampled_from(["int2", "int3", "int4", "int8", "ternary"]),
       scale_format=st.sampled_from(["fp16", "bf16", "uint8", "int6"]))
def test_symmetric_int_error_is_at_most_half_a_scale(seed, rows, length, group_size, name, scale_format):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, length)) * 10.0 ** rng.uniform(-3, 3)
    x[rng.random(x.shape) < 0.1] = 0.0
    gq = quantize_groups(x, name, group_size, scale_format=scale_format)
    fmt, n_groups = get_format(name), -(-length // group_size)
    assert isinstance(gq, GroupQuantized) and gq.zeros is None and gq.specials is None
    assert gq.codes.shape == x.shape and gq.scales.shape == (rows, n_groups) and gq.n_groups == n_groups
    assert (gq.fmt, gq.group_size, gq.axis) == (fmt, group_size, 1)
    assert np.array_equal(fmt.encode(fmt.decode(gq.codes)), gq.codes)
    # the scale is stored in its format and rounded up: absmax / max_value <= scale
    scale_format = get_format(scale_format)
    assert np.array_equal(gq.scales, scale_format.decode(gq.scale_codes) * 2.0 ** gq.scale_exponent)
    assert np.all(gq.scales >= _absmax_groups(x, group_size) / fmt.max_value)
    if not scale_format.is_integer:
        assert gq.scale_exponent == 0
    error = np.abs(dequantize_groups(gq) - x)
    assert np.all(error <= gq.expand(gq.scales) * (0.5 + 1e-12))


@FAST
@given(seed=st.integers(0, 2 ** 32 - 1), length=st.integers(1, 50), group_size=st.integers(1, 16),
       name=st.sampled_from(["uint2", "uint4", "uint8", "int4"]), offset=st.floats(-3, 3))
def test_asymmetric_zero_points(seed, length, group_size, name, offset):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, length)) + offset
    x[0, 0] = 0.0
    gq = quantize_groups(x, name, group_size, symmetric=False)
    fmt = get_format(name)
    assert gq.zeros.dtype == np.int64 and gq.zeros.shape == gq.scales.shape
    assert np.all((gq.zeros >= fmt.min_value) & (gq.zeros <= fmt.max_value))
    y = dequantize_groups(gq)
    assert np.all(np.abs(y - x) <= gq.expand(gq.scales) * (0.5 + 1e-12))
    assert y[0, 0] == 0.0  # zero is exactly representable


def test_partial_last_group_uses_only_its_elements():
    x = np.random.default_rng(6).standard_normal((3, 10))
    x[:, 8:] *= 0.01
    gq = quantize_groups(x, "int4", 4)
    assert gq.scales.shape == (3, 3)
    tail = quantize_groups(x[:, 8:], "int4", 4)
    assert np.array_equal(gq.scales[:, 2:], tail.scales) and np.array_equal(gq.codes[:, 8:], tail.codes)
    head = quantize_groups(x[:, :8], "int4", 4)
    assert np.array_equal(gq.scales[:, :2], head.scales)
    whole = quantize_groups(x, "int4", None)
    assert whole.group_size == 10 and whole.scales.shape == (3, 1)
    assert np.array_equal(whole.scales[:, 0], quantize_groups(x, "int4", 10).scales[:, 0])


def test_axis_and_float_formats():
    x = np.random.default_rng(7).standard_normal((12, 5))
    for name in ("e2m1", "e4m3", "int8"):
        along_rows = quantize_groups(x, name, 5, axis=0)
        transposed = quantize_groups(x.T, name, 5, axis=-1)
        assert along_rows.axis == 0 and along_rows.scales.shape == (3, 5)
        assert np.array_equal(along_rows.codes, transposed.codes.T)
        assert np.array_equal(dequantize_groups(along_rows), dequantize_groups(transposed).T)
    fmt = get_format("e2m1")
    gq = quantize_groups(x, fmt, 4)
    scales = gq.expand(gq.scales)
    assert np.array_equal(gq.codes, fmt.encode(x / scales))
    assert np.array_equal(dequantize_groups(gq), fmt.quantize(x / scales) * scales)


def test_integer_scale_format_shares_one_exponent():
    x = np.random.default_rng(8).standard_normal((4, 64)) * np.array([[1e-3], [1.0], [10.0], [0.0]])
    gq = quantize_groups(x, "int4", 16, scale_format="uint8")
    assert gq.scale_codes.dtype == np.int64 and gq.scale_codes.max() <= 255
    assert gq.scale_codes.max() > 127  # the exponent is the smallest that fits
    assert np.array_equal(gq.scales, gq.scale_codes * 2.0 ** gq.scale_exponent)
    assert np.all(gq.scales[3] == 0) and np.all(dequantize_groups(gq)[3] == 0)


def test_group_quantization_errors():
    x = np.ones((2, 8))
    with pytest.raises(FormatError, match=r"^group_size must be a positive integer, not 0$"):
        quantize_groups(x, "int4", 0)
    with pytest.raises(FormatError, match=r"^axis must be an integer from -2 to 1 for a 2-d array, not 2$"):
        quantize_groups(x, "int4", 4, axis=2)
    with pytest.raises(FormatError, match=r"^asymmetric quantization needs an integer format, not e2m1$"):
        quantize_groups(x, "e2m1", 4, symmetric=False)
    with pytest.raises(FormatError,
                       match=r"^symmetric quantization needs a signed format with a positive range, not uint4$"):
        quantize_groups(x, "uint4", 4)
    with pytest.raises(FormatError, match=r"^scale_format must be a float or integer format with a positive "
                                          r"range, not bitmod-fp4$"):
        quantize_groups(x, "int4", 4, scale_format="bitmod-fp4")
    with pytest.raises(FormatError, match=r"^x must be finite, not nan$"):
        quantize_groups(np.array([1.0, np.nan]), "int4", 4)
    with pytest.raises(FormatError, match=r"^a group scale of 142857 overflows scale format fp16 \(max 65504\)$"):
        quantize_groups(x * 1e6, "int4", 4)
    with pytest.raises(FormatError, match=r"^unknown number format 'int33'"):
        quantize_groups(x, "int33", 4)
    with pytest.raises(FormatError, match=r"^x must have at least one dimension, not a scalar$"):
        quantize_groups(1.0, "int4", 4)
    with pytest.raises(FormatError, match=r"^the grouped axis must have at least one element, not 0$"):
        quantize_groups(np.ones((3, 0)), "int4", 4)


# --- binary-coding quantization ----------------------------------------------------------------

def _bcq_error(w, bits, **options):
    return float(((bcq_dequantize(bcq_quantize(w, bits, 16, **options)) - w) ** 2).sum())


@FAST
@given(seed=st.integers(0, 2 ** 32 - 1), pow2=st.booleans())
def test_bcq_error_decreases_with_bits(seed, pow2):
    w = np.random.default_rng(seed).standard_normal((3, 40))
    errors = [_bcq_error(w, bits, pow2_scales=pow2) for bits in range(1, 6)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))


@pytest.mark.parametrize("pow2", [False, True])
def test_bcq_refinement_beats_greedy(pow2):
    for seed in range(3):
        w = np.random.default_rng(seed).standard_normal((8, 64))
        assert _bcq_error(w, 1, pow2_scales=pow2) == pytest.approx(_bcq_error(w, 1, pow2_scales=pow2, iters=0))
        for bits in (3, 4, 5):
            assert _bcq_error(w, bits, pow2_scales=pow2) < _bcq_error(w, bits, pow2_scales=pow2, iters=0)


def test_bcq_shapes_signs_and_pow2_alphas():
    w = np.random.default_rng(9).standard_normal((5, 21))
    for pow2 in (False, True):
        bcq = bcq_quantize(w, 3, 8, axis=-1, pow2_scales=pow2)
        assert isinstance(bcq, BCQWeights) and bcq.bits == 3 and bcq.pow2_scales is pow2
        assert bcq.signs.dtype == np.int8 and bcq.signs.shape == (3, 5, 21)
        assert set(np.unique(bcq.signs)) == {-1, 1}
        assert bcq.alphas.shape == (3, 5, 3) and np.all(bcq.alphas > 0)
        assert powers_of_two(bcq.alphas) == pow2
        manual = sum(np.repeat(bcq.alphas[i], 8, axis=-1)[:, :21] * bcq.signs[i] for i in range(3))
        assert np.array_equal(bcq_dequantize(bcq), manual)


def test_bcq_one_bit_is_sign_times_mean_magnitude():
    w = np.random.default_rng(10).standard_normal((6, 10)) * np.arange(1, 7)[:, None]
    starts = np.arange(0, 10, 4)
    mean = np.add.reduceat(np.abs(w), starts, axis=-1) / np.diff(np.append(starts, 10))
    bcq = bcq_quantize(w, 1, 4)
    assert np.allclose(bcq.alphas[0], mean, rtol=1e-12)
    assert np.array_equal(bcq.signs[0], np.where(w >= 0, 1, -1))
    # pow2: the power of two (below or above the mean) with the smaller squared error
    pow2 = bcq_quantize(w, 1, 4, pow2_scales=True)
    below = 2.0 ** np.floor(np.log2(mean))
    error = lambda alpha: np.add.reduceat((np.abs(w) - np.repeat(alpha, 4, -1)[:, :10]) ** 2, starts, -1)  # noqa: E731
    expected = np.where(error(2 * below) < error(below), 2 * below, below)
    assert not np.array_equal(expected, below)  # both roundings occur in this sample
    assert np.array_equal(pow2.alphas[0], expected)
    assert np.array_equal(pow2.signs[0], np.where(w >= 0, 1, -1))


def test_bcq_refined_signs_are_the_nearest_level():
    w = np.random.default_rng(11).standard_normal((4, 32))
    bcq = bcq_quantize(w, 3, 8, iters=3)
    alphas = np.repeat(bcq.alphas, 8, axis=-1)
    patterns = np.array([[1 if p >> i & 1 else -1 for i in range(3)] for p in range(8)])
    levels = np.einsum("pi,i...->p...", patterns, alphas)
    best = np.abs(levels - w).min(axis=0)
    assert np.all(np.abs(bcq_dequantize(bcq) - w) <= best + 1e-12)


def test_bcq_axis_and_partial_groups():
    w = np.random.default_rng(12).standard_normal((10, 3))
    along_rows = bcq_quantize(w, 2, 4, axis=0)
    transposed = bcq_quantize(w.T, 2, 4, axis=1)
    assert along_rows.axis == 0 and along_rows.alphas.shape == (2, 3, 3)
    assert np.array_equal(bcq_dequantize(along_rows), bcq_dequantize(transposed).T)
    whole = bcq_quantize(w, 2, None, axis=0)
    assert whole.group_size == 10 and whole.alphas.shape == (2, 1, 3)


def test_bcq_errors():
    w = np.ones((2, 4))
    with pytest.raises(FormatError, match=r"^bits must be an integer from 1 to 8, not 0$"):
        bcq_quantize(w, 0, 2)
    with pytest.raises(FormatError, match=r"^group_size must be a positive integer, not -1$"):
        bcq_quantize(w, 2, -1)
    with pytest.raises(FormatError, match=r"^w must be finite, not inf$"):
        bcq_quantize(np.array([np.inf]), 2, 2)
    with pytest.raises(FormatError, match=r"^iters must be an integer from 0 to 1000, not 1.5$"):
        bcq_quantize(w, 2, 2, iters=1.5)
