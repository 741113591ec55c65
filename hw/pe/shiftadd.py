"""The shift-add PE of ShiftAddLLM (binary-coding quantization with power-of-two scales; MixPE's
"multiplier from shifts and adds").

Weights are BCQ: ``W = sum_i 2**e_i * B_i`` with binary matrices ``B_i`` in {-1, +1} and a signed
power-of-two exponent ``e_i`` per binary matrix (per output column, optionally per group along K).
A weight code of format ``uintI`` packs the ``I`` sign bits of one weight: bit ``i`` is 1 for
``B_i = +1``. For each group of ``lut_k`` activations the PE precomputes the symmetric table of
signed sums (the LUT PE's table unit, :class:`hw.pe.lut.TableBank`), then processes one binary
matrix per cycle: ``acc_run += T[B_i pattern] << (e_i + exp_offset)``. Exponents are two's
complement ``exp_bits``-bit fields; adding the fixed ``exp_offset = 2**(exp_bits-1)`` makes every
shift non-negative, so ``acc`` counts units of ``2**-exp_offset`` (``Y = acc * 2**-exp_offset``).
There is no multiplier anywhere: only adders, negations and shifters.

Contract: :mod:`hw.pe.base`; the payload holds the lane sign codes (lane ``l`` at bits
``[l*I, (l+1)*I)``) and then the ``I`` exponents (``e_i`` at ``[lanes*I + i*exp_bits, ...)``). A step
takes ``2**(lut_k-1) + I`` cycles, or ``I`` with the extra input ``reuse_table`` (tied to 0 by the
array) that reuses the previous step's tables.
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from dataflow.errors import SpecError
from hw.pe.base import (PECost, check_acc_bits, check_act_bits, check_positive_int,
                        pack_lanes, pe_signature, weight_steps, wrap)
from hw.pe.lut import (StepTimer, TableBank, TableGeometry, check_lut_k, golden_tables, lookup_format,
                       plane_patterns, precompute_cost, signed_bits, table_lookup)

__all__ = ["ShiftAddParams", "ShiftAddPE", "golden_step", "golden_gemm", "weight_values", "cost",
           "lookup_cost", "pack_weights", "bench_extra", "bcq_to_codes", "BCQCodes", "SUPPORTED_WEIGHT_FORMATS"]

SUPPORTED_WEIGHT_FORMATS = tuple(f"uint{bits}" for bits in range(1, 9))
_SUPPORTED_TEXT = "uint1..uint8 (bit i of a code is the sign bit of binary matrix B_i)"
MAX_EXP_BITS = 5


@dataclass(frozen=True)
class ShiftAddParams(TableGeometry):
    """Parameters of the shift-add PE.

    ``act_bits``: signed activation width; ``weight_format``: ``uintI`` with ``I`` binary matrices
    (1..8); ``acc_bits``: accumulator width; ``lanes``: activations per step, a multiple of
    ``lut_k`` (default ``lut_k``, one table); ``lut_k``: activations per table; ``exp_bits``:
    width of each signed exponent (1..5, shifts up to ``2**exp_bits - 1``); ``group_size``:
    weights per exponent group along K (``None``: one exponent per output column and binary
    matrix; else a multiple of ``lanes``).
    """

    act_bits: int = 8
    weight_format: str = "uint3"
    acc_bits: int = 32
    lanes: Optional[int] = None
    lut_k: int = 4
    exp_bits: int = 4
    group_size: Optional[int] = None
    kind: str = field(default="shiftadd", init=False)

    table_bits = None   # shift-add tables are always exact
    table_shift = 0

    def __post_init__(self):
        check_act_bits(self.act_bits)
        lookup_format(self.weight_format, "shift-add PE", SUPPORTED_WEIGHT_FORMATS, _SUPPORTED_TEXT)
        check_acc_bits(self.acc_bits)
        if self.lanes is None:   # one table per step
            check_positive_int("lut_k", self.lut_k)
            object.__setattr__(self, "lanes", self.lut_k)
        check_positive_int("lanes", self.lanes)
        check_lut_k(self.lut_k, self.lanes)
        check_positive_int("exp_bits", self.exp_bits)
        if self.exp_bits > MAX_EXP_BITS:
            raise SpecError(f"exp_bits must be between 1 and {MAX_EXP_BITS}, not {self.exp_bits!r}")
        if self.group_size is not None:
            check_positive_int("group_size", self.group_size)
            if self.group_size % self.lanes:
                raise SpecError(f"group_size must be a multiple of lanes ({self.lanes}), not {self.group_size!r}")
        if self.acc_bits < self.product_bits:
            raise SpecError(f"acc_bits must be at least the product width {self.product_bits}, "
                            f"not {self.acc_bits!r}")

    @property
    def planes(self):
        """``I``: binary matrices per weight, also the lookup cycles of a step."""
        from dataflow.formats import get_format

        return get_format(self.weight_format).bits

    weight_bits = planes

    @property
    def exp_offset(self):
        return 1 << (self.exp_bits - 1)

    @property
    def max_shift(self):
        return (1 << self.exp_bits) - 1

    @property
    def product_bits(self):
        weight = self.planes << self.max_shift
        return self.act_bits + signed_bits(-weight, weight)

    @property
    def stored_table_bits(self):
        """Shift-add tables are never rounded: they store the exact sums."""
        return self.exact_table_bits

    @property
    def precompute_cycles(self):
        return self.table_entries

    @property
    def lookup_cycles(self):
        return self.planes

    @property
    def weight_payload_bits(self):
        return self.lanes * self.planes + self.planes * self.exp_bits


# --- numeric view -----------------------------------------------------------------------------

def _check_params(params):
    if not isinstance(params, ShiftAddParams):
        raise TypeError(f"params must be ShiftAddParams, not {params!r}")


def _check_codes(params, w_codes):
    codes = np.asarray(w_codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << params.planes)):
        raise SpecError(f"weight codes must lie in [0, {1 << params.planes}), not {codes.min()}..{codes.max()}")
    return codes


def _check_exponents(params, exponents, shape):
    if exponents is None:
        raise SpecError("exponents are required by the shift-add PE")
    exponents = np.asarray(exponents, dtype=np.int64)
    if exponents.shape != tuple(shape):
        raise SpecError(f"exponents must have shape {tuple(shape)}, not {exponents.shape}")
    low, high = -params.exp_offset, params.exp_offset - 1
    if exponents.size and (exponents.min() < low or exponents.max() > high):
        raise SpecError(f"exponents must lie in [{low}, {high}] (exp_bits {params.exp_bits}), "
                        f"not {exponents.min()}..{exponents.max()}")
    return exponents


def weight_values(params, w_codes, shifts):
    """Integer weights in ``acc`` units: ``sum_i (2*bit_i - 1) << shifts[..., i]`` for codes ``[...]``
    and non-negative ``shifts`` (``e_i + exp_offset``) broadcast to ``[..., I]``."""
    bits = (np.asarray(w_codes, dtype=np.int64)[..., None] >> np.arange(params.planes)) & 1
    return ((2 * bits - 1) << np.asarray(shifts, dtype=np.int64)).sum(axis=-1)


def golden_step(params, a, w_codes, base, exponents=None):
    """``wrap(base + sum_i (T[B_i pattern] << (e_i + exp_offset)))`` for ``a[..., lanes]``,
    ``w_codes[..., lanes]`` and ``exponents[..., I]`` = ``dot(a, decode(w))`` in units of
    ``2**-exp_offset``."""
    _check_params(params)
    a = np.asarray(a, dtype=np.int64)
    codes = _check_codes(params, w_codes)
    exponents = _check_exponents(params, exponents, np.shape(exponents))
    tables = golden_tables(params, a)                                   # [..., T, P]
    planes = plane_patterns(codes, params.lut_k, params.planes)         # [..., T, I]
    values = table_lookup(tables[..., :, None, :], planes, params.lut_k).sum(axis=-2)  # [..., I]
    shifts = exponents + params.exp_offset
    contribution = (values << shifts).sum(axis=-1)
    return wrap(np.asarray(base, dtype=np.int64) + contribution, params.acc_bits)


def _full_exponents(params, exponents, k, n):
    """Exponents ``[I, k, n]`` from per-column ``[I, n]`` or per-group ``[I, groups, n]``."""
    exponents = np.asarray(exponents if exponents is not None else np.empty(0), dtype=np.int64)
    if exponents.ndim == 2:
        exponents = _check_exponents(params, exponents, (params.planes, n))
        return np.broadcast_to(exponents[:, None, :], (params.planes, k, n))
    size = params.group_size or k
    groups = -(-k // size)
    exponents = _check_exponents(params, exponents if exponents.size else None, (params.planes, groups, n))
    return np.repeat(exponents, size, axis=1)[:, :k]


def golden_gemm(params, a, w_codes, base=None, exponents=None):
    """``C = wrap(base + A @ W)`` with ``W[k, n] = sum_i (2*B_i[k, n] - 1) << (E_i + exp_offset)``;
    ``exponents`` is ``[I, n]`` or ``[I, ceil(k / group_size), n]``. ``C * 2**-exp_offset`` is
    ShiftAddLLM's ``A @ sum_i 2**E_i B_i``."""
    _check_params(params)
    codes = _check_codes(params, w_codes)
    k, n = codes.shape
    full = _full_exponents(params, exponents, k, n)
    w = weight_values(params, codes, np.moveaxis(full, 0, -1) + params.exp_offset)
    result = np.asarray(a, dtype=np.int64) @ w
    if base is not None:
        result = result + np.asarray(base, dtype=np.int64)
    return wrap(result, params.acc_bits)


def pack_weights(params, w_codes, exponents=None):
    """Payloads ``[steps, n]``: each step's lane sign codes, then the ``I`` exponents of its group."""
    _check_params(params)
    codes = _check_codes(params, w_codes)
    k, n = codes.shape
    full = _full_exponents(params, exponents, k, n)                     # [I, k, n]
    steps = weight_steps(codes, params.lanes)
    payloads = pack_lanes(steps, params.planes)
    shift = params.lanes * params.planes
    mask = (1 << params.exp_bits) - 1
    for step in range(steps.shape[0]):
        row = min(step * params.lanes, k - 1)
        for col in range(n):
            fields = 0
            for i in range(params.planes):
                fields |= (int(full[i, row, col]) & mask) << (i * params.exp_bits)
            payloads[step, col] = int(payloads[step, col]) | (fields << shift)
    return payloads


@dataclass(frozen=True)
class BCQCodes:
    """ShiftAddLLM weights in the PE's encoding: ``w_codes[k, n]`` (bit i = sign of ``B_i``) and
    ``exponents[I, groups, n]`` with ``alpha_i = 2**exponents[i]``."""

    w_codes: np.ndarray
    exponents: np.ndarray


def bcq_to_codes(params, bcq):
    """Convert :class:`dataflow.formats.BCQWeights` of a ``W[k, n]`` quantized along ``axis=0``
    with ``pow2_scales=True`` into :class:`BCQCodes` (raises if an alpha is 0 or out of range)."""
    _check_params(params)
    if bcq.axis != 0 or not bcq.pow2_scales or bcq.bits != params.planes:
        raise SpecError(f"bcq must be {params.planes}-bit, along axis 0, with pow2_scales, "
                        f"not {bcq.bits}-bit along axis {bcq.axis} (pow2_scales={bcq.pow2_scales})")
    alphas = np.asarray(bcq.alphas, dtype=np.float64)
    if (alphas <= 0).any():
        raise SpecError("bcq alphas must be positive powers of two; an alpha of 0 cannot be shifted")
    mantissa, exponent = np.frexp(alphas)
    exponents = (exponent - 1).astype(np.int64)
    _check_exponents(params, exponents, exponents.shape)
    signs = np.asarray(bcq.signs, dtype=np.int64)                       # [I, k, n]
    codes = ((signs > 0).astype(np.int64) << np.arange(params.planes)[:, None, None]).sum(axis=0)
    return BCQCodes(codes, exponents)


def bench_extra(params, rng, k, n):
    """Side inputs a generic bench passes to :func:`golden_gemm`/:func:`pack_weights`: random
    exponents over the whole signed range, per column (or per group with ``group_size``)."""
    _check_params(params)
    low, high = -params.exp_offset, params.exp_offset - 1
    if params.group_size is None:
        return {"exponents": rng.integers(low, high + 1, (params.planes, n))}
    groups = -(-k // params.group_size)
    return {"exponents": rng.integers(low, high + 1, (params.planes, groups, n))}


# --- cost view --------------------------------------------------------------------------------

def lookup_cost(params):
    """The ``I`` lookup cycles of a step: per cycle and table a table read and an add; one shift
    per cycle; the final accumulate and ``acc`` write."""
    _check_params(params)
    cycles = params.planes
    return PECost(step_cycles=cycles, actions={
        f"lut_read_int{params.stored_table_bits}": cycles * params.tables,
        f"add_int{params.acc_bits}": cycles * params.tables + 1,
        f"shift_int{params.acc_bits}": cycles,
        f"reg_write_int{params.acc_bits}": 1,
    })


def cost(params):
    """One contract step: table precompute then ``I`` shift-add lookups, ``2**(lut_k-1) + I`` cycles."""
    pre, look = precompute_cost(params), lookup_cost(params)
    actions = dict(pre.actions)
    for name, count in look.actions.items():
        actions[name] = actions.get(name, 0) + count
    return PECost(step_cycles=pre.step_cycles + look.step_cycles, actions=actions)


# --- RTL view ---------------------------------------------------------------------------------

class ShiftAddPE(wiring.Component):
    """ShiftAddLLM PE (contract: :mod:`hw.pe.base`; extra input ``reuse_table``).

    A step builds the tables from ``a`` (``2**(lut_k-1)`` cycles; skipped with ``reuse_table``),
    then spends one cycle per binary matrix ``i``: it reads every table at the pattern of ``B_i``'s
    sign bits and adds the sum shifted by ``e_i + exp_offset``. Multiplier-free. ``acc`` is written
    at the edge ending the last cycle; ``done`` is high in the next cycle.
    """

    def __init__(self, params):
        _check_params(params)
        self._params = params
        signature = dict(pe_signature(params).members)
        signature["reuse_table"] = In(1)
        super().__init__(signature)

    @property
    def params(self):
        return self._params

    def elaborate(self, platform):
        m = Module()
        p = self._params
        bank = TableBank(p)
        timer = StepTimer(m, self.start, p.precompute_cycles, p.planes, skip_first=self.reuse_table)
        with m.If(timer.phase0):
            bank.write(m, [self.a[l] for l in range(p.lanes)], timer.index[:max(p.lut_k - 1, 1)])

        planes, base_bit = p.planes, p.lanes * p.planes
        codes = [self.w[l * planes:(l + 1) * planes] for l in range(p.lanes)]
        flip = 1 << (p.exp_bits - 1)  # two's complement + offset = the top bit flipped
        shifts = Array(self.w[base_bit + i * p.exp_bits:base_bit + (i + 1) * p.exp_bits] ^ flip
                       for i in range(planes))
        plane = timer.index[:max((planes - 1).bit_length(), 1)]
        looked = 0
        for t in range(p.tables):
            pattern = Cat(*(codes[t * p.lut_k + l].bit_select(plane, 1) for l in range(p.lut_k)))
            looked = looked + bank.read(m, t, pattern)

        run = Signal(signed(p.acc_bits), name="run")
        total = Signal(signed(p.acc_bits), name="total")
        m.d.comb += total.eq(Mux(timer.index == 0, 0, run) + (looked << shifts[plane]))
        base = Mux(self.clear, self.psum_in, self.acc)
        with m.If(timer.phase1):
            m.d.sync += run.eq(total)
        with m.If(timer.last):
            m.d.sync += self.acc.eq(base + total)
        m.d.sync += self.done.eq(timer.last)
        return m
