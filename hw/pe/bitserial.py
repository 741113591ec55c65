"""The bit-serial PE of BitMoD (HPCA 2025): weights as signed power-of-two terms, one term per cycle.

Each weight is decomposed into ``T = fmt.serial_terms`` signed power-of-two terms
(:func:`dataflow.formats.pow2_terms`): radix-4 Booth digits for integers (int8: 4 terms, int4: 2),
the 1-bits of ``value * integer_scale`` for FP4/FP3 (a leading-one detector: 2 terms). Per cycle
the PE adds the current term of all ``lanes`` weights against the ``lanes`` activations (a 4-way
dot product of shifted activations, no multiplier) to a running sum; after ``T`` cycles the step's
dot product is added to ``acc``. Values are integer-scaled: ``acc`` counts units of
``1 / integer_scale`` of the format (e2m1: halves).

Special-value register (BitMoD formats ``bitmod-fp4``/``bitmod-fp3``): the redundant negative-zero
code decodes to the group's special value, one of the format's candidates, selected by a field of
the weight payload that the weight stream holds for the whole group.

Per-group rescale (``scale_bits``): BitMoD/MixPE accumulate a quantization group's integer partial
sum and apply the group's integer scale once, bit-serially (an INT8 scale takes 8 cycles). A step
with the extra input ``rescale`` (tied to 0 by the array, where the PE then behaves exactly as the
contract says) takes ``scale_bits`` cycles and sets
``acc = group_base + scale * (acc - group_base)``: ``group_base`` is ``acc`` after the previous
rescale (or ``psum_in`` of the last cleared step), so ``acc - group_base`` is the group's integer
sum. BitMoD hides these cycles behind the next group with a separate unit; this PE serializes them
(:func:`rescale_cost`, :func:`group_cycles`).

Contract: :mod:`hw.pe.base`. Payload: lane codes (lane ``l`` at ``[l*wb, (l+1)*wb)``), then the
group scale (``scale_bits``, if any), then the special-value select (BitMoD formats).
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from dataflow.errors import SpecError
from hw.pe.base import (PECost, check_acc_bits, check_act_bits, check_positive_int, pack_lanes,
                        pe_signature, weight_steps, wrap)
from hw.pe.lut import lookup_format, signed_bits

__all__ = ["BitSerialParams", "BitSerialPE", "golden_step", "golden_rescale", "golden_gemm",
           "weight_values", "cost", "rescale_cost", "group_cycles", "pack_weights", "bench_codes", "bench_extra",
           "SUPPORTED_WEIGHT_FORMATS"]

SUPPORTED_WEIGHT_FORMATS = tuple(
    [f"int{bits}" for bits in range(2, 9)] + [f"uint{bits}" for bits in range(2, 9)]
    + ["e2m0", "e2m1", "bitmod-fp3", "bitmod-fp4"]
)
_SUPPORTED_TEXT = "int2..int8, uint2..uint8, e2m0, e2m1, bitmod-fp3, bitmod-fp4"
MAX_SCALE_BITS = 16


@dataclass(frozen=True)
class BitSerialParams:
    """Parameters of the bit-serial PE.

    ``act_bits``: signed activation width; ``weight_format``: one of
    :data:`SUPPORTED_WEIGHT_FORMATS`; ``acc_bits``: accumulator width; ``lanes``: activations (and
    weights) per step, 4 in BitMoD; ``group_size``: weights per quantization group along K (a
    multiple of ``lanes``; ``None``: the whole K); ``scale_bits``: width of the integer group scale
    (``None``: no rescale unit); ``scale_signed``: whether that scale is two's complement.
    """

    act_bits: int = 8
    weight_format: str = "int4"
    acc_bits: int = 32
    lanes: int = 4
    group_size: Optional[int] = None
    scale_bits: Optional[int] = None
    scale_signed: bool = True
    kind: str = field(default="bitserial", init=False)

    def __post_init__(self):
        check_act_bits(self.act_bits)
        lookup_format(self.weight_format, "bit-serial PE", SUPPORTED_WEIGHT_FORMATS, _SUPPORTED_TEXT)
        check_acc_bits(self.acc_bits)
        check_positive_int("lanes", self.lanes)
        if self.group_size is not None:
            check_positive_int("group_size", self.group_size)
            if self.group_size % self.lanes:
                raise SpecError(f"group_size must be a multiple of lanes ({self.lanes}), not {self.group_size!r}")
        if self.scale_bits is not None:
            check_positive_int("scale_bits", self.scale_bits)
            if self.scale_bits > MAX_SCALE_BITS:
                raise SpecError(f"scale_bits must be at most {MAX_SCALE_BITS}, not {self.scale_bits!r}")
        if not isinstance(self.scale_signed, bool):
            raise SpecError(f"scale_signed must be a bool, not {self.scale_signed!r}")
        if self.acc_bits < self.product_bits:
            raise SpecError(f"acc_bits must be at least the product width {self.product_bits}, "
                            f"not {self.acc_bits!r}")

    @property
    def format(self):
        from dataflow.formats import get_format

        return get_format(self.weight_format)

    @property
    def weight_bits(self):
        return self.format.bits

    @property
    def terms(self):
        """``T``: power-of-two terms per weight, the cycles of one step."""
        return self.format.serial_terms

    @property
    def integer_scale(self):
        return self.format.integer_scale

    @property
    def specials(self):
        """The BitMoD special-value candidates (format units), empty for other formats."""
        return tuple(getattr(self.format, "candidates", ()))

    @property
    def special_code(self):
        return getattr(self.format, "special_code", None)

    @property
    def select_bits(self):
        """Payload bits selecting the group's special value (0 for non-BitMoD formats)."""
        count = len(self.specials)
        return max((count - 1).bit_length(), 1) if count else 0

    @property
    def value_bits(self):
        values = list(_code_values(self.format).values()) + [int(v * self.integer_scale) for v in self.specials]
        return signed_bits(min(values), max(values))

    @property
    def product_bits(self):
        return self.act_bits + self.value_bits + (self.scale_bits or 0)

    @property
    def weight_payload_bits(self):
        return self.lanes * self.weight_bits + (self.scale_bits or 0) + self.select_bits

    @property
    def rescale_cycles(self):
        return self.scale_bits or 0


def _code_values(fmt):
    """``{code: decode(code) * integer_scale}`` for every valid code (BitMoD: without the special)."""
    codes = fmt.codes()
    values = np.asarray(fmt.decode(codes), dtype=np.float64) * fmt.integer_scale
    return {int(c): int(v) for c, v in zip(codes, values)}


# --- numeric view -----------------------------------------------------------------------------

def _check_params(params):
    if not isinstance(params, BitSerialParams):
        raise TypeError(f"params must be BitSerialParams, not {params!r}")


def weight_values(params, w_codes, special=None):
    """Integer weights ``decode(code) * integer_scale``; ``special`` (format units, broadcast to
    ``w_codes``) is the value of a BitMoD format's special code."""
    _check_params(params)
    codes = np.asarray(w_codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << params.weight_bits)):
        raise SpecError(f"weight codes must lie in [0, {1 << params.weight_bits}), "
                        f"not {codes.min()}..{codes.max()}")
    fmt = params.format
    if params.specials:
        if special is None:
            special = params.specials[0] if not (codes == params.special_code).any() else None
        if special is None:
            raise SpecError(f"special is required: code {params.special_code} of {fmt.name} is its special value")
        values = fmt.decode(codes, special)
    else:
        if special is not None:
            raise SpecError(f"special applies to BitMoD formats only, not {fmt.name}")
        values = fmt.decode(codes)
    return np.rint(np.asarray(values, dtype=np.float64) * params.integer_scale).astype(np.int64)


def golden_step(params, a, w_codes, base, special=None):
    """``wrap(base + sum_lanes a * weight_values(w))`` for ``a[..., lanes]``, ``w_codes[..., lanes]``;
    ``special[...]`` is the step's special value (BitMoD formats)."""
    special = None if special is None else np.asarray(special, dtype=np.float64)[..., None]
    values = weight_values(params, w_codes, special)
    dot = np.sum(np.asarray(a, dtype=np.int64) * values, axis=-1)
    return wrap(np.asarray(base, dtype=np.int64) + dot, params.acc_bits)


def golden_rescale(params, acc, group_base, scale):
    """A rescale step: ``wrap(group_base + scale * (acc - group_base))`` (modular, as the hardware)."""
    _check_params(params)
    scale = _check_scales(params, scale)
    acc, group_base = np.asarray(acc, dtype=np.int64), np.asarray(group_base, dtype=np.int64)
    group_sum = wrap(acc - group_base, params.acc_bits)
    return wrap(group_base + wrap(group_sum * scale, params.acc_bits), params.acc_bits)


def _check_scales(params, scales):
    if params.scale_bits is None:
        raise SpecError("scales need a rescale unit: set scale_bits")
    scales = np.asarray(scales, dtype=np.int64)
    bits = params.scale_bits
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if params.scale_signed else (0, (1 << bits) - 1)
    if scales.size and (scales.min() < low or scales.max() > high):
        raise SpecError(f"scales must lie in [{low}, {high}], not {scales.min()}..{scales.max()}")
    return scales


def _groups(params, k):
    size = params.group_size or k
    return size, -(-k // size)


def _per_group(params, name, values, k, n):
    """Check a per-group ``[groups, n]`` array and expand it to ``[k, n]``."""
    size, groups = _groups(params, k)
    values = np.asarray(values)
    if values.shape != (groups, n):
        raise SpecError(f"{name} must have shape ({groups}, {n}) for k={k}, group_size={params.group_size}, "
                        f"not {values.shape}")
    return np.repeat(values, size, axis=0)[:k]


def golden_gemm(params, a, w_codes, base=None, scales=None, specials=None):
    """``C[m, n]`` in units of ``1 / integer_scale``.

    Without ``scales``: ``wrap(base + A @ V)`` with ``V = weight_values(w_codes, specials)``: what
    the PE (and an array of it) computes with ``rescale`` at 0. With ``scales[groups, n]``:
    ``wrap(base + sum_g scales[g] * (A[:, g] @ V[g]))``, what an output-stationary PE computes with
    a rescale step after each group of ``group_size``. ``specials[groups, n]`` (BitMoD formats) are
    the groups' special values in format units.
    """
    _check_params(params)
    codes = np.asarray(w_codes, dtype=np.int64)
    k, n = codes.shape
    special = None if specials is None else _per_group(params, "specials", specials, k, n).astype(np.float64)
    values = weight_values(params, codes, special)
    a = np.asarray(a, dtype=np.int64)
    if scales is None:
        result = a @ values
    else:
        scales = _check_scales(params, _per_group(params, "scales", scales, k, n))
        size, groups = _groups(params, k)
        result = 0
        for g in range(groups):
            rows = slice(g * size, (g + 1) * size)
            result = result + wrap(a[:, rows] @ values[rows], params.acc_bits) * scales[g * size]
    if base is not None:
        result = result + np.asarray(base, dtype=np.int64)
    return wrap(result, params.acc_bits)


def pack_weights(params, w_codes, scales=None, specials=None):
    """Payloads ``[steps, n]``: each step's lane codes, its group's scale code (``scale_bits``) and
    special-value select (BitMoD formats); ``scales``/``specials`` are ``[groups, n]``."""
    _check_params(params)
    codes = np.asarray(w_codes, dtype=np.int64)
    k, n = codes.shape
    weight_values(params, codes, None if specials is None
                  else _per_group(params, "specials", specials, k, n).astype(np.float64))
    steps = weight_steps(codes, params.lanes)
    payloads = pack_lanes(steps, params.weight_bits)
    full_scales = None
    if scales is not None:
        full_scales = _check_scales(params, _per_group(params, "scales", scales, k, n))
    full_specials = None
    if specials is not None:
        full_specials = _per_group(params, "specials", specials, k, n)
    shift = params.lanes * params.weight_bits
    for step in range(steps.shape[0]):
        row = min(step * params.lanes, k - 1)
        for col in range(n):
            extra = 0
            if full_scales is not None:
                extra |= int(full_scales[row, col]) & ((1 << params.scale_bits) - 1)
            if full_specials is not None:
                select = params.specials.index(float(full_specials[row, col]))
                extra |= select << (params.scale_bits or 0)
            payloads[step, col] = int(payloads[step, col]) | (extra << shift)
    return payloads


def bench_codes(params):
    """Weight codes a generic bench samples: every code (a BitMoD format's special code too)."""
    _check_params(params)
    return np.arange(1 << params.weight_bits)


def bench_extra(params, rng, k, n):
    """Side inputs a generic bench passes to :func:`golden_gemm`/:func:`pack_weights` for a
    ``k x n`` weight block: random special values (BitMoD formats). No ``scales``: an array ties
    ``rescale`` to 0."""
    _check_params(params)
    if not params.specials:
        return {}
    _, groups = _groups(params, k)
    return {"specials": rng.choice(np.asarray(params.specials), (groups, n))}


# --- cost view --------------------------------------------------------------------------------

def cost(params):
    """One step of ``T`` cycles: per cycle ``lanes`` shifted activations are negated or not and
    added (``lanes`` adds: the tree and the running sum), the running sum is written; plus the
    final accumulate into ``acc``."""
    _check_params(params)
    cycles = params.terms
    term_bits = params.act_bits + params.value_bits
    return PECost(step_cycles=cycles, actions={
        f"shift_int{term_bits}": cycles * params.lanes,
        f"add_int{params.acc_bits}": cycles * params.lanes + 1,
        f"reg_write_int{params.acc_bits}": cycles,
    })


def rescale_cost(params):
    """One rescale step of ``scale_bits`` cycles (one scale bit per cycle: a shift and an add)."""
    _check_params(params)
    if params.scale_bits is None:
        raise SpecError("rescale_cost needs a rescale unit: set scale_bits")
    cycles = params.scale_bits
    return PECost(step_cycles=cycles, actions={
        f"shift_int{params.acc_bits}": cycles,
        f"add_int{params.acc_bits}": cycles + 2,
        f"reg_write_int{params.acc_bits}": cycles + 1,
    })


def group_cycles(params, group_size=None):
    """Cycles of one quantization group on one PE: ``group_size / lanes`` steps of ``T`` cycles
    plus the serialized rescale (BitMoD int8 scale, group 128, FP4: 32*2 + 8 = 72)."""
    _check_params(params)
    size = group_size if group_size is not None else params.group_size
    check_positive_int("group_size", size)
    steps = -(-size // params.lanes)
    return steps * params.terms + params.rescale_cycles


# --- RTL view ---------------------------------------------------------------------------------

class BitSerialPE(wiring.Component):
    """BitMoD bit-serial PE (contract: :mod:`hw.pe.base`; extra input ``rescale``).

    A step (``rescale = 0``) takes ``T`` cycles (:func:`cost`): in cycle ``t`` every lane adds term
    ``t`` of its weight (``±a << shift``, or nothing) to the running sum; ``acc`` is written at the
    edge ending cycle ``T-1`` and ``done`` is high in the next cycle. With ``scale_bits`` set, a
    step with ``rescale = 1`` takes ``scale_bits`` cycles (:func:`rescale_cost`) and scales the
    group sum ``acc - group_base`` by the payload's scale, one scale bit per cycle, LSB first.
    """

    def __init__(self, params):
        _check_params(params)
        self._params = params
        signature = dict(pe_signature(params).members)
        if params.scale_bits is not None:
            signature["rescale"] = In(1)
        super().__init__(signature)

    @property
    def params(self):
        return self._params

    def _term(self, m, lane, code, select, index):
        """Term ``index`` of lane ``lane``'s weight against its activation (a signed Value)."""
        p = self._params
        a = self.a[lane]
        fmt = p.format
        if fmt.is_integer:
            # Radix-4 Booth: digit t from bits (2t+1, 2t, 2t-1) of the sign/zero-extended code.
            width = 2 * p.terms
            top = code[-1] if fmt.signed else Const(0, 1)
            extended = Cat(Const(0, 1), code, *([top] * (width - p.weight_bits)))
            window = Array(extended[2 * t:2 * t + 3] for t in range(p.terms))[index]
            negative = window[2] & ~(window[1] & window[0])
            double = (window == 0b011) | (window == 0b100)
            nonzero = (window != 0b000) & (window != 0b111)
            shift = Cat(double, index)
        else:
            # A decode ROM: code -> the T (sign, shift) terms; the special code's terms come from
            # the special-value select.
            signs, shifts = self._terms_table()
            shift_bits = max(int(shifts.max()).bit_length(), 1)
            negs = [Signal(name=f"neg{lane}_{t}") for t in range(p.terms)]
            nonzeros = [Signal(name=f"nz{lane}_{t}") for t in range(p.terms)]
            amounts = [Signal(shift_bits, name=f"shift{lane}_{t}") for t in range(p.terms)]

            def assign(row):
                for t in range(p.terms):
                    if signs[row, t]:
                        m.d.comb += [negs[t].eq(int(signs[row, t] < 0)), nonzeros[t].eq(1),
                                     amounts[t].eq(int(shifts[row, t]))]

            with m.Switch(code):
                for c in range(1 << p.weight_bits):
                    with m.Case(c):
                        if p.specials and c == p.special_code:
                            with m.Switch(select):
                                for s in range(1 << p.select_bits):
                                    with m.Case(s):
                                        assign((s << p.weight_bits) | c)
                        else:
                            assign(c)
            negative, nonzero, shift = Array(negs)[index], Array(nonzeros)[index], Array(amounts)[index]
        shifted = a << shift
        return Mux(nonzero, Mux(negative, -shifted, shifted), 0)

    def _terms_table(self):
        """``(signs, shifts)`` ``[keys, T]`` for key = code (+ select << bits for BitMoD formats)."""
        from dataflow.formats import pow2_terms

        p = self._params
        fmt = p.format
        codes = np.arange(1 << p.weight_bits)
        if not p.specials:
            terms = pow2_terms(fmt, codes)
            return terms.signs, terms.shifts
        keys = (1 << p.weight_bits) * (1 << p.select_bits)
        signs = np.zeros((keys, p.terms), dtype=np.int64)
        shifts = np.zeros((keys, p.terms), dtype=np.int64)
        for select in range(1 << p.select_bits):
            special = p.specials[min(select, len(p.specials) - 1)]
            terms = pow2_terms(fmt, codes, special=np.full(codes.shape, special))
            rows = slice(select << p.weight_bits, (select + 1) << p.weight_bits)
            signs[rows], shifts[rows] = terms.signs, terms.shifts
        return signs, shifts

    def elaborate(self, platform):
        m = Module()
        p = self._params
        wb = p.weight_bits
        scale_at = p.lanes * wb
        select_at = scale_at + (p.scale_bits or 0)
        select = self.w[select_at:select_at + p.select_bits] if p.specials else None
        rescale = self.rescale if p.scale_bits is not None else Const(0, 1)

        busy = Signal()
        scaling = Signal()          # the current step is a rescale step
        longest = max(p.terms, p.rescale_cycles)
        count = Signal(range(longest + 1))
        launch = self.start & ~busy
        active = launch | busy
        in_rescale = Mux(launch, rescale, scaling)
        index = Signal(range(longest + 1))
        m.d.comb += index.eq(Mux(launch, 0, count))
        last = Signal()
        m.d.comb += last.eq(active & Mux(in_rescale, index == p.rescale_cycles - 1, index == p.terms - 1))
        with m.If(active):
            m.d.sync += [busy.eq(~last), scaling.eq(in_rescale), count.eq(Mux(last, 0, index + 1))]

        term_index = index[:max((p.terms - 1).bit_length(), 1)]
        partial = sum(self._term(m, lane, self.w[lane * wb:(lane + 1) * wb], select, term_index)
                      for lane in range(p.lanes))
        run = Signal(signed(p.acc_bits))
        total = Signal(signed(p.acc_bits))
        base = Mux(self.clear, self.psum_in, self.acc)

        if p.scale_bits is None:
            m.d.comb += total.eq(Mux(index == 0, 0, run) + partial)
            with m.If(active & ~last):
                m.d.sync += run.eq(total)
            with m.If(last):
                m.d.sync += self.acc.eq(base + total)
        else:
            group_base = Signal(signed(p.acc_bits))
            group_sum = Signal(signed(p.acc_bits))
            m.d.comb += group_sum.eq(self.acc - group_base)
            scale = self.w[scale_at:scale_at + p.scale_bits]
            bit_index = index[:max((p.scale_bits - 1).bit_length(), 1)]
            shifted = Signal(signed(p.acc_bits))
            m.d.comb += shifted.eq(group_sum << bit_index)
            if p.scale_signed:   # the top bit of a two's-complement scale weighs -2**(bits-1)
                shifted = Mux(index == p.scale_bits - 1, -shifted, shifted)
            addend = Mux(in_rescale, Mux(scale.bit_select(bit_index, 1), shifted, 0), partial)
            m.d.comb += total.eq(Mux(index == 0, 0, run) + addend)
            with m.If(active & ~last):
                m.d.sync += run.eq(total)
            with m.If(last):
                with m.If(in_rescale):
                    m.d.sync += [self.acc.eq(group_base + total), group_base.eq(group_base + total)]
                with m.Else():
                    m.d.sync += self.acc.eq(base + total)
                    with m.If(self.clear):
                        m.d.sync += group_base.eq(self.psum_in)
        m.d.sync += self.done.eq(last)
        return m
