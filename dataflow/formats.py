"""Bit-exact number formats, group-wise quantization, binary-coding quantization and the
signed power-of-two term decomposition used by bit-serial hardware.

Formats (``get_format(name)``, names in :data:`FORMAT_NAMES`, table in ``docs/formats.md``):

* two's-complement integers ``int1``..``int16``, ``int32``, ``int64``; unsigned ``uint1``..``uint16``;
  ``ternary`` ({-1, 0, +1} in the int2 codes, code ``0b10`` invalid);
* minifloats following the OCP specs: ``e2m1``, ``e2m3``, ``e3m2`` (OCP MX v1.0: no inf/NaN,
  subnormals), ``e4m3`` (OCP FP8 E4M3FN: no inf, one NaN code per sign, max 448), ``e5m2``
  (IEEE-like), plus ``e2m0`` (BitMoD's FP3, values {0, ±1, ±2, ±4});
* IEEE 754 ``fp16``, ``bf16``, ``fp32``, ``fp64``;
* BitMoD (HPCA 2025) formats ``bitmod-fp4`` / ``bitmod-fp3``: the negative-zero code of e2m1 / e2m0
  stands for one special value chosen per group from {±5, ±8} / {±3, ±6}.

A *code* is the format's bit pattern as a non-negative integer (``int64``; ``uint64`` for 64-bit
formats). Encoding rounds to nearest with ties to the even code and saturates at the finite range,
except that IEEE-like formats (``e5m2``, ``fp16``, ``bf16``, ``fp32``, ``fp64``) overflow to ±inf as
IEEE 754 round-to-nearest-even does. Every conversion is vectorized and exact: values travel as
float64 bit patterns and are rounded with integer arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache

import numpy as np

from dataflow.errors import FormatError

__all__ = [
    "FORMAT_NAMES", "NumberFormat", "IntFormat", "FloatFormat", "BitModFormat", "get_format",
    "Pow2Terms", "pow2_terms", "GroupQuantized", "quantize_groups", "dequantize_groups",
    "expand_groups", "BCQWeights", "bcq_quantize", "bcq_dequantize",
]

_SIGN64 = np.uint64(1 << 63)
_EXP64 = np.uint64(0x7FF << 52)
_MAN64 = np.uint64((1 << 52) - 1)
_QUIET_NAN64 = np.uint64(0x7FF8 << 48)
_MAX_ENUMERATED_BITS = 16
_MAX_BCQ_BITS = 8


# --- argument checks (one-line FormatError messages) ------------------------------------------

def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(field, value, low, high):
    if not _is_int(value) or not low <= value <= high:
        raise FormatError(f"{field} must be an integer from {low} to {high}, not {value!r}")
    return int(value)


def _check_positive(field, value):
    if not _is_int(value) or value < 1:
        raise FormatError(f"{field} must be a positive integer, not {value!r}")
    return int(value)


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise FormatError(f"name must be a non-empty string, not {name!r}")


def _finite_array(field, values):
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(f"{field} must be an array of real numbers, not {type(values).__name__}")
    if array.ndim == 0:
        raise FormatError(f"{field} must have at least one dimension, not a scalar")
    if not np.isfinite(array).all():
        bad = array[~np.isfinite(array)].flat[0].item()
        raise FormatError(f"{field} must be finite, not {bad!r}")
    return array


def _check_axis(axis, ndim):
    if not _is_int(axis) or not -ndim <= axis < ndim:
        raise FormatError(f"axis must be an integer from {-ndim} to {ndim - 1} for a {ndim}-d array, "
                          f"not {axis!r}")
    return int(axis) % ndim


def _as_float(values):
    return np.asarray(values, dtype=np.float64)


# --- the format classes ----------------------------------------------------------------------

class NumberFormat:
    """A number format: ``bits``-wide codes and the values they stand for.

    Subclasses are frozen dataclasses (hashable, usable as dict keys and YAML names through
    ``name``) that provide ``bits``, ``is_integer``, ``signed``, ``decode``, ``encode``,
    ``min_value``, ``max_value``, ``integer_scale``, ``serial_encoding`` and ``serial_terms``.
    """

    def __str__(self):
        return self.name

    @property
    def code_dtype(self):
        """``np.int64`` for formats up to 63 bits, ``np.uint64`` for 64-bit formats."""
        return np.uint64 if self.bits == 64 else np.int64

    def _codes_in(self, codes):
        """Validate ``codes`` (integer bit patterns of this format) and return them as uint64."""
        array = np.asarray(codes)
        if array.dtype.kind not in "iub" and array.size:
            raise FormatError(f"{self.name} codes must be integers, not {array.dtype}")
        if array.dtype.kind == "i" and (array < 0).any():
            raise FormatError(f"{self.name} code {int(array[array < 0].flat[0])} is negative")
        array = array.astype(np.uint64)
        if self.bits < 64 and (array >> np.uint64(self.bits)).any():
            bad = int(array[(array >> np.uint64(self.bits)) != 0].flat[0])
            raise FormatError(f"code {bad} does not fit {self.name} ({self.bits} bits)")
        invalid = self._invalid(array)
        if invalid.any():
            raise FormatError(f"code {int(array[invalid].flat[0])} is not a valid {self.name} code")
        return array

    def _codes_out(self, codes):
        return codes.astype(self.code_dtype)

    def _invalid(self, codes):
        """Mask of codes that have no value in this format."""
        return np.zeros(codes.shape, dtype=bool)

    def codes(self):
        """Every valid code, ascending (formats of at most 16 bits)."""
        if self.bits > _MAX_ENUMERATED_BITS:
            raise FormatError(f"codes() enumerates formats of at most {_MAX_ENUMERATED_BITS} bits, "
                              f"not {self.name} ({self.bits} bits)")
        every = np.arange(1 << self.bits, dtype=np.uint64)
        return self._codes_out(every[~self._invalid(every)])

    def values(self):
        """The finite representable values, sorted and unique (``-0.0`` merged into ``0.0``)."""
        decoded = self.decode(self.codes())
        if not self.is_integer:
            decoded = decoded[np.isfinite(decoded)] + 0.0
        return np.unique(decoded)

    def quantize(self, values):
        """``decode(encode(values))``: the nearest representable value (see :meth:`encode`)."""
        return self.decode(self.encode(values))


@dataclass(frozen=True)
class IntFormat(NumberFormat):
    """A two's-complement (``signed``) or unsigned integer of ``bits`` bits.

    ``narrow`` drops the most negative code (``ternary`` is int2 without -2). Codes are the low
    ``bits`` bits of the two's-complement value; decode returns int64.
    """

    name: str
    bits: int
    signed: bool = True
    narrow: bool = False

    def __post_init__(self):
        _check_name(self.name)
        _check_int("bits", self.bits, 1, 64 if self.signed else 63)
        if not isinstance(self.signed, bool):
            raise FormatError(f"signed must be a bool, not {self.signed!r}")
        if not isinstance(self.narrow, bool):
            raise FormatError(f"narrow must be a bool, not {self.narrow!r}")
        if self.narrow and (not self.signed or self.bits < 2):
            raise FormatError(f"narrow needs a signed format of at least 2 bits, not {self.name}")

    is_integer = True
    integer_scale = 1
    serial_encoding = "booth"

    @property
    def min_value(self):
        if not self.signed:
            return 0
        return -(1 << (self.bits - 1)) + int(self.narrow)

    @property
    def max_value(self):
        return (1 << (self.bits - int(self.signed))) - 1

    @property
    def serial_terms(self):
        """Radix-4 Booth digits: ``ceil(width / 2)``, width = bits (+1 zero bit when unsigned)."""
        return -(-(self.bits + int(not self.signed)) // 2)

    def _invalid(self, codes):
        if self.narrow:
            return codes == np.uint64(1 << (self.bits - 1))
        return super()._invalid(codes)

    def decode(self, codes):
        """Codes -> int64 values."""
        codes = self._codes_in(codes)
        if self.bits == 64:
            return codes.view(np.int64)
        values = codes.astype(np.int64)
        if self.signed:
            values = np.where(values >= 1 << (self.bits - 1), values - (1 << self.bits), values)
        return values

    def encode(self, values):
        """Values -> codes: round half to even, saturate at [min_value, max_value]; NaN is an error."""
        array = np.asarray(values)
        if array.dtype.kind in "iub":
            if array.dtype.kind == "u" and array.dtype.itemsize == 8:
                array = np.minimum(array, np.uint64((1 << 63) - 1))
            ints = np.clip(array.astype(np.int64), self.min_value, self.max_value)
        else:
            floats = _as_float(array)
            if np.isnan(floats).any():
                raise FormatError(f"cannot encode NaN in {self.name}: it has no NaN code")
            rounded = np.rint(floats)
            high, low = rounded >= self.max_value, rounded <= self.min_value
            inside = np.where(high | low, 0.0, rounded).astype(np.int64)
            ints = np.where(high, self.max_value, np.where(low, self.min_value, inside))
        codes = ints.astype(np.uint64)
        if self.bits < 64:
            codes &= np.uint64((1 << self.bits) - 1)
        return self._codes_out(codes)


_NONFINITE = ("ieee", "fn", "none")


@dataclass(frozen=True)
class FloatFormat(NumberFormat):
    """A binary floating-point format: sign, ``exp_bits`` exponent, ``man_bits`` mantissa, ``bias``.

    ``nonfinite`` says what the all-ones exponent means: ``"ieee"`` (IEEE 754: inf, and NaN with a
    payload; overflow rounds to inf), ``"fn"`` (OCP E4M3FN: only all-ones exponent *and* mantissa is
    NaN; saturating) or ``"none"`` (OCP MX FP6/FP4: every code finite; saturating, NaN cannot be
    encoded). Exponent field 0 holds subnormals in every case.
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    nonfinite: str = "ieee"

    def __post_init__(self):
        _check_name(self.name)
        _check_int("exp_bits", self.exp_bits, 1, 11)
        _check_int("man_bits", self.man_bits, 0, 52)
        if not _is_int(self.bias):
            raise FormatError(f"bias must be an integer, not {self.bias!r}")
        if self.nonfinite not in _NONFINITE:
            raise FormatError(f"nonfinite must be one of {', '.join(_NONFINITE)}, not {self.nonfinite!r}")
        if self.nonfinite == "ieee" and (self.exp_bits < 2 or self.man_bits < 1):
            raise FormatError(f"an ieee format needs at least 2 exponent bits and 1 mantissa bit, "
                              f"not e{self.exp_bits}m{self.man_bits}")
        if self.min_exponent < -1022 or self.max_exponent > 1023:
            raise FormatError(f"bias {self.bias} puts the exponents of {self.name} outside float64's range")

    is_integer = False
    signed = True

    @property
    def bits(self):
        return 1 + self.exp_bits + self.man_bits

    @property
    def min_exponent(self):
        """Exponent of the smallest normal number (also the subnormals' scale)."""
        return 1 - self.bias

    @property
    def max_exponent(self):
        top = (1 << self.exp_bits) - (2 if self.nonfinite == "ieee" else 1)
        return top - self.bias

    @property
    def _max_magnitude_code(self):
        """The largest finite code without its sign bit."""
        if self.nonfinite == "ieee":
            return (((1 << self.exp_bits) - 1) << self.man_bits) - 1
        return (1 << (self.bits - 1)) - (2 if self.nonfinite == "fn" else 1)

    @property
    def max_value(self):
        code = self._max_magnitude_code
        return math.ldexp((1 << self.man_bits) + (code & ((1 << self.man_bits) - 1)),
                          (code >> self.man_bits) - self.bias - self.man_bits)

    @property
    def min_value(self):
        return -self.max_value

    @property
    def integer_scale(self):
        """Smallest power of two that makes every finite value an integer (e2m1 -> 2)."""
        return 1 << max(0, self.man_bits - self.min_exponent)

    @property
    def serial_encoding(self):
        """``"leading-one"`` (binary 1-bits) for at most one mantissa bit, else ``"csd"`` (NAF)."""
        return "leading-one" if self.man_bits <= 1 else "csd"

    @property
    def serial_terms(self):
        """Most signed power-of-two terms any value needs under :attr:`serial_encoding`."""
        significand = self.man_bits + 1
        return significand if self.serial_encoding == "leading-one" else significand // 2 + 1

    def decode(self, codes):
        """Codes -> float64 values (IEEE NaN payloads are kept in the float64 payload's top bits)."""
        codes = self._codes_in(codes)
        m = self.man_bits
        sign = codes >> np.uint64(self.bits - 1)
        exp_field = ((codes >> np.uint64(m)) & np.uint64((1 << self.exp_bits) - 1)).astype(np.int64)
        mantissa = (codes & np.uint64((1 << m) - 1)).astype(np.int64)
        top = exp_field == (1 << self.exp_bits) - 1
        special = top if self.nonfinite == "ieee" else np.zeros(codes.shape, dtype=bool)
        safe_exp = np.where(special, 1, exp_field)
        magnitude = np.where(
            safe_exp > 0,
            np.ldexp((mantissa + (1 << m)).astype(np.float64), safe_exp - self.bias - m),
            np.ldexp(mantissa.astype(np.float64), self.min_exponent - m),
        )
        pattern = magnitude.view(np.uint64)
        if self.nonfinite == "ieee":
            payload = mantissa.astype(np.uint64) << np.uint64(52 - m)
            pattern = np.where(top, _EXP64 | payload, pattern)
        elif self.nonfinite == "fn":
            nan = (codes & np.uint64((1 << (self.bits - 1)) - 1)) == np.uint64((1 << (self.bits - 1)) - 1)
            pattern = np.where(nan, _QUIET_NAN64, pattern)
        return (pattern | (sign << np.uint64(63))).view(np.float64)

    def encode(self, values):
        """Values -> codes, round to nearest with ties to the even code.

        Beyond the finite range: ieee formats give ±inf (as IEEE 754 does), the others saturate at
        ±max_value (inf included). NaN keeps its sign and payload in ieee formats, becomes the NaN code
        in fn formats and is an error in formats without NaN.
        """
        pattern = _as_float(values).view(np.uint64)
        sign = pattern >> np.uint64(63)
        abs_pattern = pattern & ~_SIGN64
        nan = abs_pattern > _EXP64
        inf = abs_pattern == _EXP64
        if nan.any() and self.nonfinite == "none":
            raise FormatError(f"cannot encode NaN in {self.name}: it has no NaN code")
        m = self.man_bits
        magnitude = np.where(nan | inf, 0.0, abs_pattern.view(np.float64))
        # Exact rounding: the step between neighbours is 2**(e - m) in the binade of 2**e.
        _, frexp_exp = np.frexp(magnitude)
        exponent = np.maximum(np.where(magnitude > 0, frexp_exp - 1, self.min_exponent), self.min_exponent)
        scaled = np.ldexp(magnitude, m - exponent)  # exact: a power-of-two scaling into [0, 2**(m+1))
        floor = np.floor(scaled)
        fraction = scaled - floor
        low_code = (exponent - self.min_exponent).astype(np.int64) * (1 << m) + floor.astype(np.int64)
        round_up = (fraction > 0.5) | ((fraction == 0.5) & (low_code % 2 == 1))
        magnitude_code = low_code + round_up
        max_code = self._max_magnitude_code
        if self.nonfinite == "ieee":
            inf_code = max_code + 1
            magnitude_code = np.where((magnitude_code > max_code) | inf, inf_code, magnitude_code)
            payload = (abs_pattern & _MAN64) >> np.uint64(52 - m)
            payload = np.where(payload == 0, np.uint64(1 << (m - 1)), payload)  # a quiet NaN, never inf
            nan_code = np.uint64(inf_code) | payload
            codes = np.where(nan, nan_code, magnitude_code.astype(np.uint64))
        else:
            magnitude_code = np.where(inf, max_code, np.minimum(magnitude_code, max_code))
            codes = np.where(nan, np.uint64(max_code + 1), magnitude_code.astype(np.uint64))
        return self._codes_out(codes | (sign << np.uint64(self.bits - 1)))


@dataclass(frozen=True)
class BitModFormat(NumberFormat):
    """A BitMoD format (Chen et al., HPCA 2025): ``base``'s negative-zero code stands for one
    special value, chosen per group from ``candidates``.

    ``decode``/``encode``/``quantize`` take that value as ``special`` (broadcast against the
    codes/values). Without it the special code is invalid and ``-0.0`` encodes as ``+0``; a value is
    encoded as the special code only when strictly nearer to it than to every base value.
    """

    name: str
    base: FloatFormat
    candidates: tuple

    def __post_init__(self):
        _check_name(self.name)
        if not isinstance(self.base, FloatFormat):
            raise FormatError(f"base must be a FloatFormat, not {self.base!r}")
        if not isinstance(self.candidates, tuple) or not self.candidates:
            raise FormatError(f"candidates must be a non-empty tuple of numbers, not {self.candidates!r}")
        for value in self.candidates:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or self.base.quantize(value) == value:
                raise FormatError(f"candidates must be finite numbers that {self.base.name} cannot "
                                  f"represent, not {value!r}")
        object.__setattr__(self, "candidates", tuple(float(value) for value in self.candidates))
        if list(self.candidates) != sorted(set(self.candidates)):
            raise FormatError(f"candidates must be sorted and distinct, not {self.candidates!r}")

    is_integer = False
    signed = True

    @property
    def bits(self):
        return self.base.bits

    @property
    def special_code(self):
        """The base format's negative-zero code."""
        return 1 << (self.bits - 1)

    @property
    def min_value(self):
        """The base format's range (a special value may lie outside it)."""
        return self.base.min_value

    @property
    def max_value(self):
        return self.base.max_value

    @property
    def integer_scale(self):
        denominators = [Fraction(value).denominator for value in self.candidates]
        return max([self.base.integer_scale] + denominators)

    @property
    def serial_encoding(self):
        return self.base.serial_encoding

    @cached_property
    def serial_terms(self):
        magnitudes = np.abs(np.array(self.candidates)) * self.integer_scale
        digits = _serial_digits(magnitudes.astype(np.int64), self.serial_encoding)
        return max(self.base.serial_terms, int((digits != 0).sum(axis=-1).max()))

    def _invalid(self, codes):
        return codes == np.uint64(self.special_code)

    def _specials(self, special, shape):
        try:
            special = np.broadcast_to(np.asarray(special, dtype=np.float64), shape)
        except ValueError:
            raise FormatError(f"special of shape {np.shape(special)} does not broadcast to {shape}")
        unknown = ~np.isin(special, self.candidates)
        if unknown.any():
            raise FormatError(f"special value {special[unknown].flat[0].item()!r} is not a candidate of "
                              f"{self.name} {self.candidates}")
        return special

    def decode(self, codes, special=None):
        """Codes -> float64; the special code decodes to ``special`` (required if present)."""
        array = np.asarray(codes)
        is_special = array == self.special_code if array.dtype.kind in "iub" else np.zeros(array.shape, bool)
        if special is None and is_special.any():
            raise FormatError(f"code {self.special_code} of {self.name} is the special-value code; "
                              f"pass special=")
        values = self.base.decode(self._codes_in(np.where(is_special, 0, array)))
        if special is None:
            return values
        return np.where(is_special, self._specials(special, values.shape), values)

    def encode(self, values, special=None):
        """Values -> codes, nearest among the base values and ``special`` (ties go to the base)."""
        x = _as_float(values)
        if np.isnan(x).any():
            raise FormatError(f"cannot encode NaN in {self.name}: it has no NaN code")
        codes = self.base.encode(x)
        codes = np.where(codes == self.special_code, 0, codes)
        if special is not None:
            specials = self._specials(special, x.shape)
            nearer = np.abs(x - specials) < np.abs(x - self.base.decode(codes))
            codes = np.where(nearer, self.special_code, codes)
        return self._codes_out(codes)

    def quantize(self, values, special=None):
        return self.decode(self.encode(values, special), special)

    def choose_specials(self, x, group_size, axis=-1):
        """Per group along ``axis``, the candidate that minimizes the squared error of
        ``quantize(x, special)`` (first candidate on ties). Shape: ``x`` with ``axis`` -> groups."""
        x = _finite_array("x", x)
        axis = _check_axis(axis, x.ndim)
        groups = _Groups.along(x.shape[axis], group_size)
        xm = np.moveaxis(x, axis, -1)
        ones = np.ones(xm.shape[:-1] + (groups.count,))
        choice = _bitmod_search(xm, self, groups, [(value, ones) for value in self.candidates])
        return np.moveaxis(choice.specials, -1, axis)


# --- the registry ----------------------------------------------------------------------------

_FLOAT_LAYOUTS = {  # name: (exp_bits, man_bits, bias, nonfinite)
    "e2m0": (2, 0, 1, "none"),
    "e2m1": (2, 1, 1, "none"),
    "e2m3": (2, 3, 1, "none"),
    "e3m2": (3, 2, 3, "none"),
    "e4m3": (4, 3, 7, "fn"),
    "e5m2": (5, 2, 15, "ieee"),
    "fp16": (5, 10, 15, "ieee"),
    "bf16": (8, 7, 127, "ieee"),
    "fp32": (8, 23, 127, "ieee"),
    "fp64": (11, 52, 1023, "ieee"),
}
_BITMOD_LAYOUTS = {  # name: (base, candidates) from BitMoD's FP3/FP4 ER and EA variants
    "bitmod-fp3": ("e2m0", (-6.0, -3.0, 3.0, 6.0)),
    "bitmod-fp4": ("e2m1", (-8.0, -5.0, 5.0, 8.0)),
}
FORMAT_NAMES = tuple(
    [f"int{bits}" for bits in range(1, 17)] + ["int32", "int64"]
    + [f"uint{bits}" for bits in range(1, 17)] + ["ternary"]
    + list(_FLOAT_LAYOUTS) + list(_BITMOD_LAYOUTS)
)
_ALIASES = {
    "fp3": "e2m0", "fp4": "e2m1", "fp6-e2m3": "e2m3", "fp6-e3m2": "e3m2",
    "fp8-e4m3": "e4m3", "e4m3fn": "e4m3", "fp8-e4m3fn": "e4m3", "fp8-e5m2": "e5m2",
    "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64",
}


@lru_cache(maxsize=None)
def _build(name):
    if name == "ternary":
        return IntFormat("ternary", 2, signed=True, narrow=True)
    if name in _FLOAT_LAYOUTS:
        return FloatFormat(name, *_FLOAT_LAYOUTS[name])
    if name in _BITMOD_LAYOUTS:
        base, candidates = _BITMOD_LAYOUTS[name]
        return BitModFormat(name, _build(base), candidates)
    signed = not name.startswith("u")
    return IntFormat(name, int(name[4 - signed:]), signed=signed)


def get_format(spec):
    """The format named ``spec`` (a :data:`FORMAT_NAMES` entry or alias, any case, ``_`` or ``-``);
    a :class:`NumberFormat` is returned as is. The same name always gives the same object."""
    if isinstance(spec, NumberFormat):
        return spec
    if not isinstance(spec, str):
        raise FormatError(f"number format must be a name such as 'int4', not {spec!r}")
    key = spec.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in FORMAT_NAMES:
        raise FormatError(f"unknown number format {spec!r}; known: {', '.join(FORMAT_NAMES)}")
    return _build(key)


# --- signed power-of-two terms (bit-serial hardware) ------------------------------------------

@dataclass(frozen=True, eq=False)
class Pow2Terms:
    """``value * integer_scale == sum(signs * 2**shifts, axis=-1)``; unused terms have sign 0, shift 0.

    Booth formats: term k is radix-4 digit k (shift 2k or 2k+1). Other formats: terms from the most
    significant down.
    """

    signs: np.ndarray   # int8 in {-1, 0, 1}, shape (..., serial_terms)
    shifts: np.ndarray  # int8 >= 0, same shape

    @property
    def n_terms(self):
        return self.signs.shape[-1]

    def reconstruct(self):
        """``sum(signs * 2**shifts, -1)`` as int64."""
        return (self.signs.astype(np.int64) << self.shifts.astype(np.int64)).sum(axis=-1)


def _serial_digits(magnitudes, encoding):
    """Digits in {-1, 0, 1} of non-negative int64 ``magnitudes``, least significant first:
    binary 1-bits (``leading-one``) or the non-adjacent form (``csd``)."""
    width = int(magnitudes.max(initial=0)).bit_length() + 1
    digits = np.zeros(magnitudes.shape + (width,), dtype=np.int8)
    rest = magnitudes.astype(np.int64)
    for position in range(width):
        if encoding == "leading-one":
            digit = rest & 1
        else:
            digit = np.where(rest & 1, 2 - (rest & 3), 0)
        digits[..., position] = digit
        rest = (rest - digit) >> 1
    return digits


def _pack_msb_first(digits, n_terms):
    """Nonzero digits (least significant first) -> (signs, shifts) of ``n_terms``, MSB first."""
    flat = digits.reshape(-1, digits.shape[-1])[:, ::-1]
    width = flat.shape[1]
    rows, cols = np.nonzero(flat)
    ranks = (np.cumsum(flat != 0, axis=1) - 1)[rows, cols]
    signs = np.zeros((flat.shape[0], n_terms), dtype=np.int8)
    shifts = np.zeros((flat.shape[0], n_terms), dtype=np.int8)
    signs[rows, ranks] = flat[rows, cols]
    shifts[rows, ranks] = width - 1 - cols
    shape = digits.shape[:-1] + (n_terms,)
    return signs.reshape(shape), shifts.reshape(shape)


def _booth_terms(fmt, values):
    width = 2 * fmt.serial_terms
    pattern = values.astype(np.int64) & ((1 << width) - 1)
    signs = np.zeros(values.shape + (fmt.serial_terms,), dtype=np.int8)
    shifts = np.zeros_like(signs)
    for k in range(fmt.serial_terms):
        low = (pattern >> (2 * k - 1)) & 1 if k else 0
        digit = -2 * ((pattern >> (2 * k + 1)) & 1) + ((pattern >> (2 * k)) & 1) + low
        signs[..., k] = np.sign(digit)
        shifts[..., k] = np.where(digit != 0, 2 * k + (np.abs(digit) == 2), 0)
    return Pow2Terms(signs, shifts)


def pow2_terms(fmt, codes, special=None):
    """Decompose ``codes`` of ``fmt`` into ``fmt.serial_terms`` signed power-of-two terms (BitMoD).

    Integer formats use radix-4 Booth digits in {0, ±1, ±2} (odd widths sign-extend, unsigned
    formats zero-extend, to the next even width). Minifloats decompose ``value * integer_scale``:
    by its 1-bits (a leading-one detector) for at most one mantissa bit, else by its canonical
    signed-digit form. ``special`` is the per-element special value of a BitMoD format.
    """
    fmt = get_format(fmt)
    if special is not None and not isinstance(fmt, BitModFormat):
        raise FormatError(f"special applies to BitMoD formats only, not {fmt.name}")
    if fmt.is_integer:
        if fmt.bits > 32:
            raise FormatError(f"pow2_terms supports integer formats of at most 32 bits, not {fmt.name}")
        return _booth_terms(fmt, fmt.decode(codes))
    if fmt.max_value * fmt.integer_scale >= 2.0 ** 62:
        raise FormatError(f"pow2_terms cannot decompose {fmt.name}: its integer-scaled values exceed 62 bits")
    values = fmt.decode(codes) if special is None else fmt.decode(codes, special)
    if not np.isfinite(values).all():
        raise FormatError(f"pow2_terms cannot decompose a non-finite {fmt.name} value "
                          f"({values[~np.isfinite(values)].flat[0]})")
    magnitudes = (np.abs(values) * fmt.integer_scale).astype(np.int64)
    signs, shifts = _pack_msb_first(_serial_digits(magnitudes, fmt.serial_encoding), fmt.serial_terms)
    signs = signs * np.sign(values).astype(np.int8)[..., None]
    return Pow2Terms(signs.astype(np.int8), shifts)


# --- groups along an axis --------------------------------------------------------------------

@dataclass(frozen=True)
class _Groups:
    """Consecutive groups of ``size`` elements over an axis of ``length``; the last may be partial."""

    length: int
    size: int

    @classmethod
    def along(cls, length, group_size):
        if length < 1:
            raise FormatError(f"the grouped axis must have at least one element, not {length}")
        size = length if group_size is None else _check_positive("group_size", group_size)
        return cls(length, size)

    @property
    def count(self):
        return -(-self.length // self.size)

    @property
    def starts(self):
        return np.arange(0, self.length, self.size)

    @property
    def counts(self):
        return np.diff(np.append(self.starts, self.length))

    def sum(self, array):
        return np.add.reduceat(array, self.starts, axis=-1)

    def expand(self, per_group):
        return np.repeat(per_group, self.size, axis=-1)[..., :self.length]


def expand_groups(per_group, group_size, length, axis=-1):
    """Repeat each group's entry over its ``group_size`` elements along ``axis`` (``length`` in all)."""
    per_group = np.asarray(per_group)
    axis = _check_axis(axis, per_group.ndim)
    groups = _Groups.along(length, group_size)
    if per_group.shape[axis] != groups.count:
        raise FormatError(f"per_group has {per_group.shape[axis]} groups along axis {axis}, "
                          f"not the {groups.count} of length {length}")
    return np.moveaxis(groups.expand(np.moveaxis(per_group, axis, -1)), -1, axis)


# --- group-wise scales and zero points -------------------------------------------------------

@dataclass(frozen=True, eq=False)
class GroupQuantized:
    """``x ≈ (decode(codes) - zeros) * scales``, with scales/zeros/specials per group along ``axis``.

    ``scales`` (float64) have ``x``'s shape with ``axis`` replaced by the number of groups; they are
    ``decode(scale_codes) * 2**scale_exponent`` in ``scale_format``. ``zeros`` (int64) is None when
    symmetric. ``specials`` holds the per-group special value of a BitMoD format, else None.
    """

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray | None
    fmt: NumberFormat
    group_size: int
    axis: int
    scale_format: NumberFormat | None = None
    scale_codes: np.ndarray | None = None
    scale_exponent: int = 0
    specials: np.ndarray | None = None

    @property
    def n_groups(self):
        return self.scales.shape[self.axis]

    def expand(self, per_group):
        """A per-group array repeated over the elements of each group."""
        return expand_groups(per_group, self.group_size, self.codes.shape[self.axis], self.axis)


@dataclass(frozen=True)
class _Scales:
    values: np.ndarray
    codes: np.ndarray
    exponent: int


def _shared_exponent(largest, limit):
    """Smallest integer e with ``largest / 2**e <= limit``."""
    if largest <= 0:
        return 0
    exponent = math.ceil(math.log2(largest / limit))
    while math.ldexp(largest, -exponent) > limit:
        exponent += 1
    while math.ldexp(largest, 1 - exponent) <= limit:
        exponent -= 1
    return exponent


def _encode_scales(raw, scale_format, exponent=None):
    """Round the non-negative ``raw`` scales *up* to ``scale_format`` so no element saturates.

    A float scale format stores the scale itself; an integer one stores ``k`` with
    ``scale = k * 2**exponent`` and one exponent shared by the whole tensor.
    """
    if scale_format.is_integer:
        if exponent is None:
            exponent = _shared_exponent(float(raw.max(initial=0.0)), scale_format.max_value)
        ints = np.minimum(np.ceil(np.ldexp(raw, -exponent)), scale_format.max_value)
        codes = scale_format.encode(ints)
        return _Scales(np.ldexp(ints, exponent), codes, exponent)
    if (raw > scale_format.max_value).any():
        raise FormatError(f"a group scale of {raw.max():g} overflows scale format {scale_format.name} "
                          f"(max {scale_format.max_value:g})")
    codes = scale_format.encode(raw)
    codes = np.where(scale_format.decode(codes) < raw, codes + 1, codes).astype(codes.dtype)
    return _Scales(scale_format.decode(codes), codes, 0)


def _scale_format(scale_format):
    scale_format = get_format(scale_format)
    if isinstance(scale_format, BitModFormat) or (scale_format.is_integer and scale_format.max_value < 1):
        raise FormatError(f"scale_format must be a float or integer format with a positive range, "
                          f"not {scale_format.name}")
    return scale_format


def _safe_divide(x, scale):
    return np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)


@dataclass(frozen=True)
class _BitModChoice:
    index: np.ndarray     # per group: which option won
    specials: np.ndarray  # per group: its special value
    codes: np.ndarray     # per element


def _bitmod_search(xm, fmt, groups, options):
    """Per group, the (special, scale) option with the least squared error (first on ties)."""
    errors, all_codes = [], []
    for special, scale in options:
        scale_elements = groups.expand(scale)
        codes = fmt.encode(_safe_divide(xm, scale_elements), special)
        error = fmt.decode(codes, special) * scale_elements - xm
        errors.append(groups.sum(error * error))
        all_codes.append(codes)
    index = np.argmin(np.stack(errors), axis=0)
    specials = np.array([special for special, _ in options])[index]
    codes = np.take_along_axis(np.stack(all_codes), groups.expand(index)[None], axis=0)[0]
    return _BitModChoice(index, specials, codes)


def quantize_groups(x, fmt, group_size, axis=-1, symmetric=True, scale_format="fp16"):
    """Quantize ``x`` to ``fmt`` with one scale (and zero point) per group of ``group_size``
    consecutive elements along ``axis``; the last group is partial when ``group_size`` does not
    divide the axis, and ``group_size=None`` makes one group of the whole axis.

    Symmetric: ``scale = absmax / fmt.max_value``. Asymmetric (integer formats): the range
    ``[min(x, 0), max(x, 0)]`` maps onto ``[min_value, max_value]`` with an integer zero point.
    Scales are rounded up into ``scale_format``, so no element saturates and an integer format's
    error is at most ``scale / 2``. BitMoD formats pick, per group, the special value and scale
    (``absmax / 6`` or ``absmax / |special|``) with the least squared error.
    """
    fmt = get_format(fmt)
    scale_format = _scale_format(scale_format)
    x = _finite_array("x", x)
    axis = _check_axis(axis, x.ndim)
    groups = _Groups.along(x.shape[axis], group_size)
    xm = np.moveaxis(x, axis, -1)
    if not isinstance(symmetric, bool):
        raise FormatError(f"symmetric must be a bool, not {symmetric!r}")
    zeros = specials = None
    if symmetric:
        if not fmt.signed or fmt.max_value <= 0:
            raise FormatError(f"symmetric quantization needs a signed format with a positive range, "
                              f"not {fmt.name}")
        absmax = np.maximum.reduceat(np.abs(xm), groups.starts, axis=-1)
        scales = _encode_scales(absmax / fmt.max_value, scale_format)
        if isinstance(fmt, BitModFormat):
            options = [(special, scales) for special in fmt.candidates]
            options += [(special, _encode_scales(absmax / abs(special), scale_format, scales.exponent))
                        for special in fmt.candidates if abs(special) > fmt.max_value]
            choice = _bitmod_search(xm, fmt, groups, [(special, s.values) for special, s in options])
            codes, specials = choice.codes, choice.specials
            scales = _Scales(
                np.take_along_axis(np.stack([s.values for _, s in options]), choice.index[None], 0)[0],
                np.take_along_axis(np.stack([s.codes for _, s in options]), choice.index[None], 0)[0],
                scales.exponent,
            )
        else:
            codes = fmt.encode(_safe_divide(xm, groups.expand(scales.values)))
    else:
        if not fmt.is_integer:
            raise FormatError(f"asymmetric quantization needs an integer format, not {fmt.name}")
        low = np.minimum(np.minimum.reduceat(xm, groups.starts, axis=-1), 0.0)
        high = np.maximum(np.maximum.reduceat(xm, groups.starts, axis=-1), 0.0)
        scales = _encode_scales((high - low) / (fmt.max_value - fmt.min_value), scale_format)
        zero_points = np.rint(fmt.min_value - _safe_divide(low, scales.values))
        zeros = np.clip(zero_points, fmt.min_value, fmt.max_value).astype(np.int64)
        codes = fmt.encode(_safe_divide(xm, groups.expand(scales.values)) + groups.expand(zeros))
        zeros = np.moveaxis(zeros, -1, axis)
    if specials is not None:
        specials = np.moveaxis(specials, -1, axis)
    return GroupQuantized(
        codes=np.moveaxis(codes, -1, axis), scales=np.moveaxis(scales.values, -1, axis), zeros=zeros,
        fmt=fmt, group_size=groups.size, axis=axis, scale_format=scale_format,
        scale_codes=np.moveaxis(scales.codes, -1, axis), scale_exponent=scales.exponent, specials=specials,
    )


def dequantize_groups(gq):
    """``(decode(codes) - zeros) * scales`` as float64 (exact for integer formats and fp16 scales)."""
    if isinstance(gq.fmt, BitModFormat):
        values = gq.fmt.decode(gq.codes, gq.expand(gq.specials))
    else:
        values = gq.fmt.decode(gq.codes).astype(np.float64)
    if gq.zeros is not None:
        values = values - gq.expand(gq.zeros)
    return values * gq.expand(gq.scales)


# --- binary-coding quantization (ShiftAddLLM) -------------------------------------------------

@dataclass(frozen=True, eq=False)
class BCQWeights:
    """``w ≈ sum_i alphas[i] * signs[i]`` with ``alphas`` per group along ``axis``.

    ``signs``: int8 ±1 of shape ``(bits, *w.shape)``; ``alphas``: float64 >= 0 of shape
    ``(bits, *groups_shape)`` (``w``'s shape with ``axis`` -> groups). With ``pow2_scales`` every
    alpha is an exact power of two, or 0 for a group whose residual is already 0.
    """

    signs: np.ndarray
    alphas: np.ndarray
    group_size: int
    axis: int
    pow2_scales: bool = False

    @property
    def bits(self):
        return self.signs.shape[0]


def _nearest_pow2(values):
    """Nearest power of two in linear distance (the lower one on ties); 0 stays 0."""
    positive = values > 0
    _, exponent = np.frexp(np.where(positive, values, 1.0))
    lower = np.ldexp(1.0, exponent - 1)
    nearest = np.where(values - lower > 2 * lower - values, 2 * lower, lower)
    return np.where(positive, nearest, 0.0)


def _nearest_signs(wm, alphas, groups):
    """Per element, the sign vector in {-1, +1}^k whose level ``sum_i alphas[i] * s_i`` is nearest."""
    k = alphas.shape[0]
    patterns = np.arange(1 << k)
    pattern_signs = np.where((patterns[:, None] >> np.arange(k)) & 1, 1.0, -1.0)  # (P, k)
    levels = np.moveaxis(alphas, 0, -1) @ pattern_signs.T                         # (..., G, P)
    order = np.argsort(levels, axis=-1, kind="stable")
    flat_levels = np.take_along_axis(levels, order, -1).reshape(-1, 1 << k)
    flat_order = order.reshape(-1, 1 << k)
    rows = groups.expand(np.arange(flat_levels.shape[0]).reshape(levels.shape[:-1]))
    # Binary lifting in k vectorized probes: position = number of sorted levels <= w, capped at
    # 2**k - 1 (a w above every level then still picks the top level below).
    position = np.zeros(wm.shape, dtype=np.int64)
    for bit in reversed(range(k)):
        probe = position + (1 << bit)
        position = np.where(flat_levels[rows, probe - 1] <= wm, probe, position)
    below = np.maximum(position - 1, 0)
    take_above = (position == 0) | (flat_levels[rows, position] - wm < wm - flat_levels[rows, below])
    chosen = flat_order[rows, np.where(take_above, position, below)]
    return np.stack([np.where((chosen >> i) & 1, 1, -1) for i in range(k)]).astype(np.int8)


def _bcq_reconstruct(signs, alphas, groups):
    return sum(groups.expand(alphas[i]) * signs[i] for i in range(signs.shape[0]))


def _bcq_refine(wm, signs, alphas, groups, pow2):
    """One alternating step: least-squares alphas for the signs, then the nearest signs for the
    alphas; kept per group only where it does not increase the squared error."""
    k = signs.shape[0]
    gram = np.empty(alphas.shape[1:] + (k, k))
    for i in range(k):
        for j in range(i, k):
            gram[..., i, j] = gram[..., j, i] = groups.sum(signs[i] * signs[j].astype(np.float64))
    moments = np.stack([groups.sum(signs[i] * wm) for i in range(k)], axis=-1)
    solved = np.abs(np.moveaxis((np.linalg.pinv(gram) @ moments[..., None])[..., 0], -1, 0))
    new_alphas = _nearest_pow2(solved) if pow2 else solved
    new_signs = _nearest_signs(wm, new_alphas, groups)
    old_error = groups.sum((wm - _bcq_reconstruct(signs, alphas, groups)) ** 2)
    new_error = groups.sum((wm - _bcq_reconstruct(new_signs, new_alphas, groups)) ** 2)
    better = new_error <= old_error
    return (np.where(groups.expand(better), new_signs, signs).astype(np.int8),
            np.where(better, new_alphas, alphas))


def bcq_quantize(w, bits, group_size, axis=-1, pow2_scales=False, iters=2):
    """Binary-coding quantization (ShiftAddLLM; Xu et al., ICLR 2018): ``w ≈ sum_i alpha_i * B_i``.

    Terms are added one at a time by a greedy residual fit (``B = sign(r)``, ``alpha = mean|r|``
    per group), each followed by ``iters`` alternating refinements of all terms so far; so the
    error never grows with ``bits``. ``pow2_scales`` rounds every alpha to a power of two (shift-add
    hardware). ``group_size=None`` makes one group of the whole axis; the last group may be partial.
    """
    w = _finite_array("w", w)
    bits = _check_int("bits", bits, 1, _MAX_BCQ_BITS)
    iters = _check_int("iters", iters, 0, 1000)
    if not isinstance(pow2_scales, bool):
        raise FormatError(f"pow2_scales must be a bool, not {pow2_scales!r}")
    axis = _check_axis(axis, w.ndim)
    groups = _Groups.along(w.shape[axis], group_size)
    wm = np.moveaxis(w, axis, -1)
    signs = np.empty((0,) + wm.shape, dtype=np.int8)
    alphas = np.empty((0,) + wm.shape[:-1] + (groups.count,))
    residual = wm
    for _ in range(bits):
        sign = np.where(residual >= 0, 1, -1).astype(np.int8)
        alpha = groups.sum(np.abs(residual)) / groups.counts
        if pow2_scales:
            alpha = _nearest_pow2(alpha)
        signs, alphas = np.concatenate([signs, sign[None]]), np.concatenate([alphas, alpha[None]])
        for _ in range(iters):
            signs, alphas = _bcq_refine(wm, signs, alphas, groups, pow2_scales)
        residual = wm - _bcq_reconstruct(signs, alphas, groups)
    return BCQWeights(np.moveaxis(signs, -1, axis + 1), np.moveaxis(alphas, -1, axis + 1),
                      groups.size, axis, pow2_scales)


def bcq_dequantize(bcq):
    """``sum_i alphas[i] * signs[i]`` (float64, ``w``'s shape)."""
    length = bcq.signs.shape[bcq.axis + 1]
    total = np.zeros(bcq.signs.shape[1:])
    for sign, alpha in zip(bcq.signs, bcq.alphas):
        total += expand_groups(alpha, bcq.group_size, length, bcq.axis) * sign
    return total
