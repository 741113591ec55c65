"""The integer MAC PE and the dequantize-then-MAC baseline PE.

:class:`MacPE` computes ``acc = base + sum_i a[i] * value(w[i])`` over ``lanes`` lanes in one
cycle, where ``value`` maps a weight code to the integer ``decode(code) * integer_scale`` of its
number format (two's-complement and unsigned integers pass through; other integer-valued formats,
e.g. FP4 scaled by its integer scale, go through a small decode table).

:class:`MacDequantPE` is the mpGEMM baseline of the LUT Tensor Core and MixPE papers: low-bit
weight codes are first widened by their quantization group's unsigned integer scale
(``value(w) * scale``) and then fed to an ordinary multiplier. The group scale travels in the
weight payload, above the lane codes (bits ``[lanes*wb, lanes*wb + scale_bits)``), so every step
carries the scale of its group; ``group_size`` must be a multiple of ``lanes`` so that a step never
straddles two groups. Inside an array every PE dequantizes the weights it uses, which prices the
baseline per weight use (the pessimistic end; dequantizing once at the array edge is cheaper).

Both kinds follow the contract of :mod:`hw.pe.base`; a step takes one cycle.
"""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring

from dataflow.errors import FormatError, SpecError
from hw.pe.base import (PECost, activation_steps, check_acc_bits, check_act_bits, check_positive_int,
                        pack_lanes, pe_signature, weight_steps, wrap)

__all__ = ["MacParams", "MacDequantParams", "MacPE", "MacDequantPE", "weight_values", "golden_step",
           "golden_gemm", "cost", "pack_weights", "bench_extra", "supported_weight_formats"]


def _signed_bits(low, high):
    """Bits of the narrowest two's-complement integer holding ``low..high``."""
    bits = 1
    while not (-(1 << (bits - 1)) <= low and high < (1 << (bits - 1))):
        bits += 1
    return bits


@lru_cache(maxsize=None)
def _value_table(weight_format):
    from dataflow.formats import BitModFormat, get_format

    try:
        fmt = get_format(weight_format)
    except FormatError:
        raise SpecError(f"weight_format must be a known number format, not {weight_format!r}") from None
    refuse = SpecError(f"weight_format must be a format of at most 16 bits whose values are integers "
                       f"after its integer scale, not {weight_format!r}")
    if fmt.bits > 16 or isinstance(fmt, BitModFormat):
        raise refuse
    valid = np.asarray(fmt.codes(), dtype=np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        decoded = np.asarray(fmt.decode(valid), dtype=np.float64) * fmt.integer_scale
    if not np.all(np.isfinite(decoded)) or not np.all(decoded == np.round(decoded)):
        raise refuse
    table = np.zeros(1 << fmt.bits, dtype=np.int64)   # codes the format leaves undefined read as 0
    table[valid] = decoded.astype(np.int64)
    table.setflags(write=False)
    return table


def weight_values(weight_format):
    """Integer value of every code of ``weight_format``: ``decode(code) * integer_scale``.

    Codes the format leaves undefined (``ternary``'s ``0b10``) have value 0, in the golden model and
    in the RTL. Raises :class:`SpecError` for formats without such an integer form (IEEE formats with
    inf/NaN, BitMoD formats, formats wider than 16 bits).
    """
    if not isinstance(weight_format, str):
        raise SpecError(f"weight_format must be a format name, not {weight_format!r}")
    return _value_table(weight_format)


def supported_weight_formats(names):
    """The names among ``names`` that the MAC PEs accept."""
    ok = []
    for name in names:
        try:
            weight_values(name)
        except SpecError:
            continue
        ok.append(name)
    return ok


def _format_bits(weight_format):
    from dataflow.formats import get_format

    return get_format(weight_format).bits


def _check_common(params, extra_product_bits=0):
    check_act_bits(params.act_bits)
    values = weight_values(params.weight_format)
    check_positive_int("lanes", params.lanes)
    check_acc_bits(params.acc_bits)
    product_bits = params.act_bits + _signed_bits(int(values.min()), int(values.max())) + extra_product_bits
    if params.acc_bits < product_bits:
        raise SpecError(f"acc_bits must be at least the product width {product_bits}, not {params.acc_bits!r}")


@dataclass(frozen=True)
class MacParams:
    """Parameters of the integer MAC PE.

    ``act_bits``: signed activation width; ``weight_format``: weight number format (integer-valued);
    ``acc_bits``: accumulator width (at least the product width); ``lanes``: activations per step
    (1 = a scalar MAC, more = a dot-product unit); ``step_cycles``: cycles per step (1; more models
    a multi-cycle MAC whose result lands in the step's last cycle, e.g. a shared multiplier).
    """

    act_bits: int = 8
    weight_format: str = "int8"
    acc_bits: int = 32
    lanes: int = 1
    step_cycles: int = 1
    kind: str = field(default="mac", init=False)

    def __post_init__(self):
        _check_common(self)
        check_positive_int("step_cycles", self.step_cycles)

    @property
    def weight_bits(self):
        return _format_bits(self.weight_format)

    @property
    def weight_value_bits(self):
        values = weight_values(self.weight_format)
        return _signed_bits(int(values.min()), int(values.max()))

    @property
    def weight_payload_bits(self):
        return self.lanes * self.weight_bits


@dataclass(frozen=True)
class MacDequantParams:
    """Parameters of the dequantize-then-MAC PE: :class:`MacParams` plus the group scale.

    ``group_size``: weights per quantization group along the reduction rank (a multiple of
    ``lanes``); ``scale_bits``: width of the unsigned integer group scale.
    """

    act_bits: int = 8
    weight_format: str = "int4"
    acc_bits: int = 32
    lanes: int = 1
    group_size: int = 128
    scale_bits: int = 8
    step_cycles: int = 1
    kind: str = field(default="mac-dequant", init=False)

    def __post_init__(self):
        check_positive_int("scale_bits", self.scale_bits)
        if self.scale_bits > 16:
            raise SpecError(f"scale_bits must be at most 16, not {self.scale_bits!r}")
        # The scale is unsigned: it widens the signed product by scale_bits bits.
        _check_common(self, extra_product_bits=self.scale_bits)
        check_positive_int("group_size", self.group_size)
        check_positive_int("step_cycles", self.step_cycles)
        if self.group_size % self.lanes:
            raise SpecError(f"group_size must be a multiple of lanes ({self.lanes}), not {self.group_size!r}")

    weight_bits = MacParams.weight_bits
    weight_value_bits = MacParams.weight_value_bits

    @property
    def weight_payload_bits(self):
        return self.lanes * self.weight_bits + self.scale_bits


# --- numeric view -----------------------------------------------------------------------------

def _check_params(params):
    if not isinstance(params, (MacParams, MacDequantParams)):
        raise TypeError(f"params must be MacParams or MacDequantParams, not {params!r}")


def golden_step(params, a, w_codes, base, scale=None):
    """``wrap(base + sum_lanes a * value(w) [* scale])``; ``scale[...]`` only for the dequant kind."""
    _check_params(params)
    values = weight_values(params.weight_format)[np.asarray(w_codes, dtype=np.int64)]
    if isinstance(params, MacDequantParams):
        if scale is None:
            raise SpecError("scale is required by the mac-dequant PE")
        values = values * np.asarray(scale, dtype=np.int64)[..., None]
    elif scale is not None:
        raise SpecError("scale is only accepted by the mac-dequant PE")
    dot = np.sum(np.asarray(a, dtype=np.int64) * values, axis=-1)
    return wrap(np.asarray(base, dtype=np.int64) + dot, params.acc_bits)


def golden_gemm(params, a, w_codes, base=None, scales=None):
    """``C = wrap(base + A @ W)`` with ``W[k, n] = value(w_codes[k, n])`` (times
    ``scales[k // group_size, n]`` for the dequant kind)."""
    _check_params(params)
    a = np.asarray(a, dtype=np.int64)
    w = weight_values(params.weight_format)[np.asarray(w_codes, dtype=np.int64)]
    if isinstance(params, MacDequantParams):
        w = w * _expand_scales(params, scales, w.shape)
    elif scales is not None:
        raise SpecError("scales are only accepted by the mac-dequant PE")
    result = a @ w
    if base is not None:
        result = result + np.asarray(base, dtype=np.int64)
    return wrap(result, params.acc_bits)


def _expand_scales(params, scales, shape):
    k, n = shape
    groups = -(-k // params.group_size)
    if scales is None:
        raise SpecError("scales are required by the mac-dequant PE")
    scales = np.asarray(scales, dtype=np.int64)
    if scales.shape != (groups, n):
        raise SpecError(f"scales must have shape ({groups}, {n}) for k={k}, group_size={params.group_size}, "
                        f"not {scales.shape}")
    if scales.min() < 0 or scales.max() >= (1 << params.scale_bits):
        raise SpecError(f"scales must lie in [0, {1 << params.scale_bits}), not {scales.min()}..{scales.max()}")
    return np.repeat(scales, params.group_size, axis=0)[:k]


def pack_weights(params, w_codes, scales=None):
    """Weight payloads ``[steps, n]`` for ``w_codes[k, n]``: lane codes, and for the dequant kind
    the step's group scale above them."""
    _check_params(params)
    codes = weight_steps(w_codes, params.lanes)
    payloads = pack_lanes(codes, params.weight_bits)
    if isinstance(params, MacDequantParams):
        k, n = np.shape(w_codes)
        full = _expand_scales(params, scales, (k, n))
        steps = codes.shape[0]
        step_scale = np.zeros((steps, n), dtype=np.int64)
        for step in range(steps):
            step_scale[step] = full[min(step * params.lanes, k - 1)]
        shift = params.lanes * params.weight_bits
        payloads = payloads + np.vectorize(lambda s: int(s) << shift, otypes=[object])(step_scale)
    elif scales is not None:
        raise SpecError("scales are only accepted by the mac-dequant PE")
    return payloads


def bench_extra(params, rng, k, n):
    """Extra operands a bench needs for a ``k x n`` weight tile: random group scales (with the
    corner scales 0 and the maximum) for the dequant kind, nothing for the plain MAC."""
    _check_params(params)
    if not isinstance(params, MacDequantParams):
        return {}
    groups = -(-k // params.group_size)
    scales = rng.integers(0, 1 << params.scale_bits, (groups, n))
    scales.flat[0] = (1 << params.scale_bits) - 1
    if scales.size > 2:
        scales.flat[-1] = 0
    return {"scales": scales}


def golden_steps(params, a, w_codes, scales=None):
    """The per-step operands the array feeds: ``(a_steps[steps, m, lanes], payloads[steps, n])``."""
    return activation_steps(a, params.lanes), pack_weights(params, w_codes, scales=scales)


# --- cost view --------------------------------------------------------------------------------

def cost(params):
    """One step = one cycle: ``lanes`` multiplies and ``lanes`` adds (adder tree + accumulate);
    the dequant kind adds ``lanes`` weight-by-scale multiplies."""
    _check_params(params)
    weight_bits = params.weight_value_bits
    actions = {}

    def add(name, count):
        actions[name] = actions.get(name, 0) + count

    if isinstance(params, MacDequantParams):
        add(f"mul_int{max(weight_bits, params.scale_bits)}", params.lanes)
        weight_bits += params.scale_bits
    add(f"mul_int{max(params.act_bits, weight_bits)}", params.lanes)
    add(f"add_int{params.acc_bits}", params.lanes)
    return PECost(step_cycles=params.step_cycles, actions=actions)


# --- RTL view ---------------------------------------------------------------------------------

class MacPE(wiring.Component):
    """Integer MAC PE (contract: :mod:`hw.pe.base`). A step takes ``step_cycles`` cycles (1 by
    default): ``acc`` takes ``base + dot(a, value(w))`` at the edge ending the step's last cycle and
    ``done`` is high in the next cycle. Ports: :func:`pe_signature`."""

    _params_type = MacParams

    def __init__(self, params):
        if not isinstance(params, self._params_type):
            raise TypeError(f"params must be {self._params_type.__name__}, not {params!r}")
        self._params = params
        super().__init__(pe_signature(params))

    @property
    def params(self):
        return self._params

    def _lane_values(self, m):
        """Signals holding ``value(w)`` of every lane."""
        p = self._params
        bits = p.weight_bits
        table = weight_values(p.weight_format)
        value_shape = signed(p.weight_value_bits)
        codes = np.arange(1 << bits)
        twos = np.array_equal(table, wrap(codes, bits)) if bits > 1 else False
        unsigned_int = np.array_equal(table, codes)
        lanes = []
        for lane in range(p.lanes):
            code = self.w[lane * bits:(lane + 1) * bits]
            value = Signal(value_shape, name=f"w_value_{lane}")
            if twos:
                m.d.comb += value.eq(code.as_signed())
            elif unsigned_int:
                m.d.comb += value.eq(code)
            else:
                with m.Switch(code):
                    for c, v in enumerate(table):
                        with m.Case(c):
                            m.d.comb += value.eq(int(v))
            lanes.append(value)
        return lanes

    def _lane_weights(self, m):
        return self._lane_values(m)

    def elaborate(self, platform):
        m = Module()
        p = self._params
        weights = self._lane_weights(m)
        dot = Signal(signed(p.acc_bits))
        total = 0
        for lane, weight in enumerate(weights):
            total = total + self.a[lane] * weight
        m.d.comb += dot.eq(total)
        base = Signal(signed(p.acc_bits))
        m.d.comb += base.eq(self.acc)
        with m.If(self.clear):
            m.d.comb += base.eq(self.psum_in)
        last_cycle = Signal()   # the step's last cycle: acc takes the result at its end
        if p.step_cycles == 1:
            m.d.comb += last_cycle.eq(self.start)
        else:
            busy = Signal()
            elapsed = Signal(range(p.step_cycles))
            m.d.comb += last_cycle.eq(busy & (elapsed == p.step_cycles - 1))
            with m.If(self.start):
                m.d.sync += [busy.eq(1), elapsed.eq(1)]
            with m.Elif(busy):
                m.d.sync += elapsed.eq(elapsed + 1)
                with m.If(last_cycle):
                    m.d.sync += busy.eq(0)
        with m.If(last_cycle):
            m.d.sync += self.acc.eq(base + dot)
        m.d.sync += self.done.eq(last_cycle)
        return m


class MacDequantPE(MacPE):
    """Dequantize-then-MAC PE: ``acc = base + sum a * (value(w) * scale)`` in one cycle; the unsigned
    group scale is the payload field above the lane codes (contract: :mod:`hw.pe.base`)."""

    _params_type = MacDequantParams

    def _lane_weights(self, m):
        p = self._params
        values = self._lane_values(m)
        shift = p.lanes * p.weight_bits
        scale = self.w[shift:shift + p.scale_bits]
        widened = []
        for lane, value in enumerate(values):
            dequantized = Signal(signed(p.weight_value_bits + p.scale_bits + 1), name=f"w_dequant_{lane}")
            m.d.comb += dequantized.eq(value * scale)
            widened.append(dequantized)
        return widened
