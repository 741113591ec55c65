"""The LUT tensor-core PE (LUT Tensor Core, ISCA 2025; T-MAC on CPUs) and its tile cost view.

For each group of ``lut_k`` activations a table-precompute unit stores the ``2**(lut_k-1)`` signed
sums ``T[p] = sum_l (+a_l if bit l of p else -a_l)`` whose top pattern bit is 0; the other half
follows from the symmetry ``T[~p] = -T[p]`` (weights read as {-1, +1}). The weights are then read
bit-plane by bit-plane, one plane per cycle: plane ``b`` of the group's ``lut_k`` weights is a
pattern that indexes the table, and the per-plane results are combined by shift and add.

Offset binary (derivation in ``docs/pe-kinds.md``): with ``c`` the unsigned code of a ``B``-bit
weight (a signed weight's code with its top bit flipped, ``c = w + 2**(B-1)``) and ``c_b`` its bits,
``sum_b 2**b (2 c_b - 1) = 2c - (2**B - 1)``. Hence, with ``S = sum_b 2**b T[plane_b]`` and
``sum(a) = -T[0]``::

    2 * dot(a, w) = S - sum(a)               for signed formats (int1..int4, ternary)
    2 * dot(a, w) = S + (2**B - 1) * sum(a)  for unsigned formats (uint1..uint4)

and ``S`` plus that correction (``raw``) is always even, so the PE adds ``raw >> 1`` exactly.

Optional INT8 tables (``table_bits``): each stored entry is rounded to ``table_bits`` bits as
``(T + 2**(r-1)) >> r`` with the smallest shift ``r`` that cannot overflow; the complemented half is
the negation of the stored entry, and a step then adds ``raw * 2**(r-1)`` (an approximation of the
dot product in the same units). The golden model applies exactly that rounding.

Contract: :mod:`hw.pe.base`. A step is a table precompute (``2**(lut_k-1)`` cycles, one entry of
every table per cycle) followed by ``B`` lookup cycles. The extra input ``reuse_table`` (tied to 0
by the array) skips the precompute and reuses the tables of the previous step: a ``B``-cycle step,
which is how a LUT tile reuses one activation group's table across its N columns
(:class:`LutTileParams`, :func:`tile_cost`).
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dataflow.errors import FormatError, SpecError
from hw.pe.base import (PECost, activation_steps, check_acc_bits, check_act_bits, check_positive_int,
                        pe_signature, weight_steps, wrap)

__all__ = [
    "LutParams", "LutPE", "LutTileParams", "LutTileCost", "LutTile", "golden_step", "golden_gemm",
    "golden_tables", "bench_codes", "cost", "precompute_cost", "lookup_cost", "tile_cost", "tile_gemm_cycles",
    "SUPPORTED_WEIGHT_FORMATS", "MAX_LUT_K",
]

SUPPORTED_WEIGHT_FORMATS = ("int1", "int2", "int3", "int4", "uint1", "uint2", "uint3", "uint4", "ternary")
_SUPPORTED_TEXT = "int1..int4, uint1..uint4, ternary"
MAX_LUT_K = 8


def signed_bits(low, high):
    """Bits of the narrowest two's-complement integer holding every value in ``low..high``."""
    bits = 1
    while not (-(1 << (bits - 1)) <= low and high < (1 << (bits - 1))):
        bits += 1
    return bits


def lookup_format(weight_format, kind_text, supported, supported_text):
    """The :class:`~dataflow.formats.NumberFormat` named ``weight_format`` if ``supported`` has it."""
    from dataflow.formats import get_format

    message = (f"weight format {weight_format!r} is not supported by the {kind_text}; "
               f"supported: {supported_text}")
    try:
        fmt = get_format(weight_format)
    except FormatError:
        raise SpecError(message) from None
    if fmt.name not in supported:
        raise SpecError(message)
    return fmt


def check_lut_k(lut_k, lanes):
    """``lut_k`` in 1..MAX_LUT_K and dividing ``lanes`` (shared by the LUT and shift-add PEs)."""
    check_positive_int("lut_k", lut_k)
    if lut_k > MAX_LUT_K:
        raise SpecError(f"lut_k must be between 1 and {MAX_LUT_K}, not {lut_k!r}")
    if lanes % lut_k:
        raise SpecError(f"lanes must be a multiple of lut_k ({lut_k}), not {lanes!r}")


class TableGeometry:
    """Table sizes shared by every PE that looks up precomputed activation sums (LUT, shift-add):
    needs ``lanes``, ``lut_k`` and ``act_bits``."""

    @property
    def tables(self):
        """Tables per step (activation groups of ``lut_k``)."""
        return self.lanes // self.lut_k

    @property
    def table_entries(self):
        """Stored entries per table: ``2**(lut_k-1)`` (the symmetric half)."""
        return 1 << (self.lut_k - 1)

    @property
    def exact_table_bits(self):
        bound = self.lut_k << (self.act_bits - 1)
        return signed_bits(-bound, bound)


@dataclass(frozen=True)
class LutParams(TableGeometry):
    """Parameters of the LUT PE.

    ``act_bits``: signed activation width; ``weight_format``: one of
    :data:`SUPPORTED_WEIGHT_FORMATS` (``B`` = its bits, 1..4); ``acc_bits``: accumulator width;
    ``lanes``: activations per step, a multiple of ``lut_k`` (``lanes // lut_k`` tables; default
    ``lut_k``, one table);
    ``lut_k``: activations per table (the table has ``2**(lut_k-1)`` stored entries);
    ``table_bits``: ``None`` for exact tables, else the width entries are rounded to (8 = INT8).
    """

    act_bits: int = 8
    weight_format: str = "int4"
    acc_bits: int = 32
    lanes: Optional[int] = None
    lut_k: int = 4
    table_bits: Optional[int] = None
    kind: str = field(default="lut", init=False)

    def __post_init__(self):
        check_act_bits(self.act_bits)
        lookup_format(self.weight_format, "LUT PE", SUPPORTED_WEIGHT_FORMATS, _SUPPORTED_TEXT)
        check_acc_bits(self.acc_bits)
        if self.lanes is None:   # one table per step
            check_positive_int("lut_k", self.lut_k)
            object.__setattr__(self, "lanes", self.lut_k)
        check_positive_int("lanes", self.lanes)
        check_lut_k(self.lut_k, self.lanes)
        if self.table_bits is not None:
            check_positive_int("table_bits", self.table_bits)
            if not 2 <= self.table_bits < self.exact_table_bits:
                raise SpecError(f"table_bits must be between 2 and {self.exact_table_bits - 1} (exact tables "
                                f"need {self.exact_table_bits} bits; use None), not {self.table_bits!r}")
        if self.acc_bits < self.product_bits:
            raise SpecError(f"acc_bits must be at least the product width {self.product_bits}, "
                            f"not {self.acc_bits!r}")

    @property
    def format(self):
        from dataflow.formats import get_format

        return get_format(self.weight_format)

    @property
    def weight_bits(self):
        """``B``: bits per weight code, also the number of lookup cycles."""
        return self.format.bits

    @property
    def weight_signed(self):
        return bool(self.format.signed)

    @property
    def product_bits(self):
        fmt = self.format
        return self.act_bits + signed_bits(int(fmt.min_value), int(fmt.max_value))

    @property
    def table_shift(self):
        """``r``: entries are stored as ``(T + 2**(r-1)) >> r`` (0 for exact tables)."""
        if self.table_bits is None:
            return 0
        bound = self.lut_k << (self.act_bits - 1)
        shift = 0
        while True:
            half = (1 << (shift - 1)) if shift else 0
            if ((bound + half) >> shift) < (1 << (self.table_bits - 1)) \
                    and ((-bound + half) >> shift) >= -(1 << (self.table_bits - 1)):
                return shift
            shift += 1

    @property
    def stored_table_bits(self):
        return self.exact_table_bits if self.table_bits is None else self.table_bits

    @property
    def weight_payload_bits(self):
        return self.lanes * self.weight_bits

    @property
    def precompute_cycles(self):
        return self.table_entries

    @property
    def lookup_cycles(self):
        return self.weight_bits

    @property
    def raw_bits(self):
        """Width of the exact per-step sum ``raw`` (before ``>> 1``), in stored-table units."""
        entry = 1 << (self.stored_table_bits - 1)
        planes = (1 << self.weight_bits) - 1
        correction = planes if not self.weight_signed else 1
        bound = self.tables * entry * (planes + correction)
        return signed_bits(-bound, bound)


# --- numeric view -----------------------------------------------------------------------------

def _check_params(params, kinds=None):
    kinds = kinds or (LutParams,)
    if not isinstance(params, kinds):
        raise TypeError(f"params must be {' or '.join(k.__name__ for k in kinds)}, not {params!r}")


def pattern_signs(lut_k):
    """``[2**(lut_k-1), lut_k]`` int64: +1 where bit l of stored pattern p is set, else -1."""
    patterns = np.arange(1 << (lut_k - 1))[:, None]
    return np.where((patterns >> np.arange(lut_k)) & 1, 1, -1).astype(np.int64)


def golden_tables(params, a):
    """Stored table entries ``[..., tables, 2**(lut_k-1)]`` for activations ``a[..., lanes]``
    (rounded as the hardware rounds them when ``table_bits`` is set)."""
    a = np.asarray(a, dtype=np.int64)
    groups = a.reshape(a.shape[:-1] + (a.shape[-1] // params.lut_k, params.lut_k))
    exact = groups @ pattern_signs(params.lut_k).T
    shift = getattr(params, "table_shift", 0)
    if shift:
        exact = (exact + (1 << (shift - 1))) >> shift
    return exact


def table_lookup(tables, patterns, lut_k):
    """``T[pattern]`` with the symmetry ``T[~p] = -T[p]``: ``tables[..., P]`` indexed by
    ``patterns[...]`` (``lut_k``-bit), broadcasting the leading axes."""
    half = 1 << (lut_k - 1)
    patterns = np.asarray(patterns, dtype=np.int64)
    top = patterns >= half
    index = np.where(top, patterns ^ (2 * half - 1), patterns)
    tables = np.asarray(tables, dtype=np.int64)
    lead = np.broadcast_shapes(tables.shape[:-1], index.shape)
    tables = np.broadcast_to(tables, lead + tables.shape[-1:])
    index = np.broadcast_to(index, lead)[..., None]
    values = np.take_along_axis(tables, index, axis=-1)[..., 0]
    return np.where(top, -values, values)


def _offset_codes(params, w_codes):
    codes = np.asarray(w_codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << params.weight_bits)):
        raise SpecError(f"weight codes must lie in [0, {1 << params.weight_bits}), "
                        f"not {codes.min()}..{codes.max()}")
    params.format.decode(codes)  # rejects invalid codes (ternary's 0b10)
    if params.weight_signed:
        codes = codes ^ (1 << (params.weight_bits - 1))
    return codes


def plane_patterns(codes, lut_k, planes):
    """``[..., tables, planes]``: bit ``b`` of the ``lut_k`` codes of each group, lane l at bit l."""
    codes = np.asarray(codes, dtype=np.int64)
    groups = codes.reshape(codes.shape[:-1] + (codes.shape[-1] // lut_k, lut_k))
    bits = (groups[..., None] >> np.arange(planes)) & 1          # [..., tables, lut_k, planes]
    return (bits << np.arange(lut_k)[:, None]).sum(axis=-2)


def _contribution(params, tables, codes):
    """The amount one step adds to ``acc``: ``tables[..., T, P]`` against offset ``codes[..., lanes]``."""
    planes = plane_patterns(codes, params.lut_k, params.weight_bits)     # [..., T, B]
    values = table_lookup(tables[..., :, None, :], planes, params.lut_k)  # [..., T, B]
    raw = (values << np.arange(params.weight_bits)).sum(axis=(-1, -2))
    zero = tables[..., 0].sum(axis=-1)   # sum over tables of T[0] = -sum(a)
    raw = raw + (zero if params.weight_signed else -((1 << params.weight_bits) - 1) * zero)
    shift = params.table_shift
    return raw >> 1 if shift == 0 else raw << (shift - 1)


def golden_step(params, a, w_codes, base):
    """``wrap(base + raw * 2**(r-1))``: ``dot(a, decode(w))`` exactly for exact tables, its rounded-table
    approximation when ``table_bits`` is set (module docstring)."""
    _check_params(params)
    a = np.asarray(a, dtype=np.int64)
    codes = _offset_codes(params, w_codes)
    contribution = _contribution(params, golden_tables(params, a), codes)
    return wrap(np.asarray(base, dtype=np.int64) + contribution, params.acc_bits)


def golden_gemm(params, a, w_codes, base=None):
    """``C[m, n] = wrap(base + sum_steps contribution)``: ``A @ decode(W)`` exactly for exact tables;
    with ``table_bits`` each step's tables are rounded as in :func:`golden_step`."""
    _check_params(params)
    a_steps = activation_steps(a, params.lanes)                       # [S, m, lanes]
    codes = _offset_codes(params, weight_steps(w_codes, params.lanes))  # [S, n, lanes]
    if params.table_bits is None:
        values = params.format.decode(np.asarray(w_codes, dtype=np.int64)).astype(np.int64)
        result = np.asarray(a, dtype=np.int64) @ values
    else:
        tables = golden_tables(params, a_steps)                        # [S, m, T, P]
        contribution = _contribution(params, tables[:, :, None], codes[:, None])  # [S, m, n]
        result = contribution.sum(axis=0)
    if base is not None:
        result = result + np.asarray(base, dtype=np.int64)
    return wrap(result, params.acc_bits)


def bench_codes(params):
    """Weight codes a generic bench samples: the format's valid codes (not ternary's ``0b10``)."""
    _check_params(params)
    return params.format.codes()


# --- cost view --------------------------------------------------------------------------------

def _merge(*action_dicts):
    total = {}
    for actions in action_dicts:
        for name, count in actions.items():
            total[name] = total.get(name, 0) + count
    return total


def precompute_cost(params):
    """Table precompute of one step: ``2**(lut_k-1)`` cycles; per entry of each table ``lut_k-1``
    adds (plus one rounding add for rounded tables) and one table-register write."""
    if getattr(params, "kind", None) not in ("lut", "shiftadd"):
        raise TypeError(f"params must be LutParams or ShiftAddParams, not {params!r}")
    entries = params.tables * params.table_entries
    actions = {f"add_int{params.exact_table_bits}": entries * (params.lut_k - 1 + (params.table_shift > 0)),
               f"reg_write_int{params.stored_table_bits}": entries}
    return PECost(step_cycles=params.precompute_cycles, actions={k: v for k, v in actions.items() if v})


def lookup_cost(params):
    """Lookups of one step (``B`` cycles): per cycle and table one table read and one add (the
    adder tree over tables plus the shifted accumulate); the offset-binary correction; the final
    accumulate and ``acc`` write."""
    _check_params(params)
    cycles = params.lookup_cycles
    correction_adds = params.tables + (0 if params.weight_signed else 1)
    raw = f"add_int{params.raw_bits}"
    actions = _merge({f"lut_read_int{params.stored_table_bits}": cycles * params.tables,
                      raw: cycles * params.tables + correction_adds,
                      f"shift_int{params.raw_bits}": cycles},
                     {f"add_int{params.acc_bits}": 1, f"reg_write_int{params.acc_bits}": 1})
    return PECost(step_cycles=cycles, actions=actions)


def cost(params):
    """One contract step: precompute then lookups, ``2**(lut_k-1) + B`` cycles."""
    pre, look = precompute_cost(params), lookup_cost(params)
    return PECost(step_cycles=pre.step_cycles + look.step_cycles, actions=_merge(pre.actions, look.actions))


# --- LUT tile cost view -----------------------------------------------------------------------

@dataclass(frozen=True)
class LutTileParams:
    """A LUT tile of ``m x n`` lookup units over a reduction slice of ``k`` activations.

    Each of the ``m`` activation rows has a precompute unit that builds ``k // lut_k`` tables once;
    the ``n`` lookup units of that row read the same tables (so a wide ``n`` amortizes the
    precompute, the elongated M2·N64·K4 tile of LUT Tensor Core). Each lookup unit is a
    :class:`LutPE` with ``lanes = k`` that reuses its row's tables.
    """

    m: int
    n: int
    k: int
    lut_k: int = 4
    act_bits: int = 8
    weight_format: str = "int4"
    acc_bits: int = 32
    table_bits: Optional[int] = None

    def __post_init__(self):
        for name in ("m", "n", "k", "lut_k"):
            check_positive_int(name, getattr(self, name))
        if self.lut_k > MAX_LUT_K:
            raise SpecError(f"lut_k must be between 1 and {MAX_LUT_K}, not {self.lut_k!r}")
        if self.k % self.lut_k:
            raise SpecError(f"lut_k {self.lut_k} does not divide tile k {self.k}")
        self.pe_params  # validates the formats and widths

    @property
    def pe_params(self):
        """The :class:`LutParams` of one lookup unit (``lanes = k``)."""
        return LutParams(act_bits=self.act_bits, weight_format=self.weight_format, acc_bits=self.acc_bits,
                         lanes=self.k, lut_k=self.lut_k, table_bits=self.table_bits)


@dataclass(frozen=True)
class LutTileCost:
    """Cost of one tile step: ``precompute_cycles`` once per activation slice (``m`` rows x ``k``),
    then ``lookup_cycles`` per ``n``-column weight slice; actions of each part; ``table_bits_stored``:
    table storage of the tile in bits."""

    precompute_cycles: int
    lookup_cycles: int
    precompute_actions: dict
    lookup_actions: dict
    table_bits_stored: int


def tile_cost(tile):
    """The :class:`LutTileCost` of a :class:`LutTileParams`."""
    if not isinstance(tile, LutTileParams):
        raise TypeError(f"tile must be LutTileParams, not {tile!r}")
    pe = tile.pe_params
    pre, look = precompute_cost(pe), lookup_cost(pe)
    return LutTileCost(
        precompute_cycles=pre.step_cycles,
        lookup_cycles=look.step_cycles,
        precompute_actions=pre.scaled(tile.m),
        lookup_actions=look.scaled(tile.m * tile.n),
        table_bits_stored=tile.m * pe.tables * pe.table_entries * pe.stored_table_bits,
    )


def tile_gemm_cycles(tile, m, n, k):
    """Cycles of an ``m x n x k`` GEMM on one tile, N innermost so each activation slice's tables
    are built once and reused across all ``ceil(n / tile.n)`` column blocks:
    ``ceil(m/tm) * ceil(k/tk) * (precompute + ceil(n/tn) * lookup)``."""
    for name, value in (("m", m), ("n", n), ("k", k)):
        check_positive_int(name, value)
    c = tile_cost(tile)
    blocks = -(-m // tile.m) * -(-k // tile.k)
    return blocks * (c.precompute_cycles + -(-n // tile.n) * c.lookup_cycles)


# --- RTL view ---------------------------------------------------------------------------------

class TableBank:
    """The precompute and lookup hardware of ``tables`` symmetric tables (shared by the LUT and
    shift-add PEs and the LUT tile). ``entries[t][p]`` are the stored table registers."""

    def __init__(self, params, prefix=""):
        self.params = params
        self.entries = [Array(Signal(signed(params.stored_table_bits), name=f"{prefix}table{t}_{p}")
                              for p in range(params.table_entries)) for t in range(params.tables)]

    def write(self, m, activations, index):
        """Compute entry ``index`` of every table from ``activations`` (lanes signed values) and
        write it at the clock edge (call under the enabling ``If``)."""
        p = self.params
        shift = getattr(p, "table_shift", 0)
        for t in range(p.tables):
            total = 0
            for l in range(p.lut_k):
                a = activations[t * p.lut_k + l]
                bit = index[l] if l < p.lut_k - 1 else Const(0, 1)
                total = total + Mux(bit, a, -a)
            exact = Signal(signed(p.exact_table_bits), name=f"entry{t}")
            m.d.comb += exact.eq(total)
            stored = exact if not shift else (exact + (1 << (shift - 1))) >> shift
            if p.table_entries == 1:
                m.d.sync += self.entries[t][0].eq(stored)
            else:
                m.d.sync += self.entries[t][index].eq(stored)

    def read(self, m, table, pattern):
        """``T[pattern]`` of table ``table`` with the symmetry ``T[~p] = -T[p]`` (a signed Value)."""
        p = self.params
        if p.lut_k == 1:
            entry = self.entries[table][0]
            return Mux(pattern[0], -entry, entry)
        top = pattern[p.lut_k - 1]
        low = pattern[:p.lut_k - 1]
        entry = self.entries[table][Mux(top, ~low, low)]
        return Mux(top, -entry, entry)


class StepTimer:
    """The step sequencer shared by the multi-cycle PEs: a step of ``first_cycles`` cycles of phase 0
    (skipped when ``skip_first``) then ``second_cycles`` of phase 1. ``index`` is the cycle number in
    the current phase, ``phase0``/``phase1`` say which phase this cycle belongs to, ``last`` marks
    the final cycle (``acc`` is written at its closing edge and ``done`` rises after it)."""

    def __init__(self, m, start, first_cycles, second_cycles, skip_first=None):
        busy = Signal(name="busy")
        in_first = Signal(name="in_first")
        count = Signal(range(max(first_cycles, second_cycles, 1) + 1), name="count")
        launch = Signal(name="launch")
        m.d.comb += launch.eq(start & ~busy)
        self.active = Signal(name="active")
        m.d.comb += self.active.eq(launch | busy)
        first_phase = Signal(name="first_phase")
        if first_cycles:
            skip = Const(0, 1) if skip_first is None else skip_first
            m.d.comb += first_phase.eq(Mux(launch, ~skip, in_first))
        self.index = Signal.like(count, name="index")
        m.d.comb += self.index.eq(Mux(launch, 0, count))
        self.phase0 = Signal(name="phase0")
        self.phase1 = Signal(name="phase1")
        m.d.comb += [self.phase0.eq(self.active & first_phase), self.phase1.eq(self.active & ~first_phase)]
        self.last = Signal(name="last")
        m.d.comb += self.last.eq(self.phase1 & (self.index == second_cycles - 1))
        with m.If(self.phase0):
            with m.If(self.index == first_cycles - 1):
                m.d.sync += [busy.eq(1), in_first.eq(0), count.eq(0)]
            with m.Else():
                m.d.sync += [busy.eq(1), in_first.eq(1), count.eq(self.index + 1)]
        with m.If(self.phase1):
            with m.If(self.last):
                m.d.sync += [busy.eq(0), count.eq(0)]
            with m.Else():
                m.d.sync += [busy.eq(1), in_first.eq(0), count.eq(self.index + 1)]


class LutPE(wiring.Component):
    """LUT tensor-core PE (contract: :mod:`hw.pe.base`; extra input ``reuse_table``).

    A step with ``reuse_table = 0`` takes ``2**(lut_k-1) + B`` cycles (:func:`cost`): the tables are
    rebuilt from ``a`` (one entry per table per cycle), then the ``B`` weight bit-planes are looked
    up, one per cycle. With ``reuse_table = 1`` the step takes ``B`` cycles (:func:`lookup_cost`)
    and uses the tables built by an earlier step (``a`` is not read). ``acc`` is written at the
    edge ending the step's last cycle and ``done`` is high in the next cycle.
    """

    def __init__(self, params):
        if not isinstance(params, LutParams):
            raise TypeError(f"params must be LutParams, not {params!r}")
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
        timer = StepTimer(m, self.start, p.precompute_cycles, p.lookup_cycles, skip_first=self.reuse_table)
        activations = [self.a[l] for l in range(p.lanes)]
        with m.If(timer.phase0):
            bank.write(m, activations, timer.index[:max(p.lut_k - 1, 1)])

        bits = p.weight_bits
        flip = (1 << (bits - 1)) if p.weight_signed else 0
        codes = [self.w[l * bits:(l + 1) * bits] ^ flip for l in range(p.lanes)]
        plane = timer.index[:max((bits - 1).bit_length(), 1)]
        looked = 0
        for t in range(p.tables):
            pattern = Cat(*(codes[t * p.lut_k + l].bit_select(plane, 1) for l in range(p.lut_k)))
            looked = looked + bank.read(m, t, pattern)
        zero = sum(bank.entries[t][0] for t in range(p.tables))
        correction = Signal(signed(p.raw_bits), name="correction")
        m.d.comb += correction.eq(zero if p.weight_signed else zero - (zero << bits))

        run = Signal(signed(p.raw_bits), name="run")
        total = Signal(signed(p.raw_bits), name="total")
        m.d.comb += total.eq(Mux(timer.index == 0, correction, run) + (looked << plane))
        shift = p.table_shift
        contribution = total >> 1 if shift == 0 else total << (shift - 1)
        base = Mux(self.clear, self.psum_in, self.acc)
        with m.If(timer.phase1):
            m.d.sync += run.eq(total)
        with m.If(timer.last):
            m.d.sync += self.acc.eq(base + contribution)
        m.d.sync += self.done.eq(timer.last)
        return m


class LutTile(wiring.Component):
    """An ``m x n`` LUT tile (:class:`LutTileParams`): ``m`` precompute units, each building the
    ``k // lut_k`` tables of its activation row once, shared by the ``n`` lookup units of the row.

    Ports: ``a`` In ``[m][k]`` signed activations; ``w`` In ``[n]`` weight payloads (``k`` codes
    each, as :class:`LutPE`); ``start``, ``clear``, ``reuse_table`` In; ``acc`` Out ``[m][n]``;
    ``done`` Out. A step takes ``precompute + B`` cycles, or ``B`` with ``reuse_table``
    (:func:`tile_cost`); ``acc[i][j]`` follows the :class:`LutPE` contract with ``psum_in = 0``.
    """

    def __init__(self, tile):
        if not isinstance(tile, LutTileParams):
            raise TypeError(f"tile must be LutTileParams, not {tile!r}")
        self._tile = tile
        pe = tile.pe_params
        super().__init__({
            "a": In(data.ArrayLayout(data.ArrayLayout(signed(pe.act_bits), tile.k), tile.m)),
            "w": In(data.ArrayLayout(unsigned(pe.weight_payload_bits), tile.n)),
            "start": In(1), "clear": In(1), "reuse_table": In(1),
            "acc": Out(data.ArrayLayout(data.ArrayLayout(signed(pe.acc_bits), tile.n), tile.m)),
            "done": Out(1),
        })

    @property
    def tile(self):
        return self._tile

    def elaborate(self, platform):
        m = Module()
        tile, p = self._tile, self._tile.pe_params
        timer = StepTimer(m, self.start, p.precompute_cycles, p.lookup_cycles, skip_first=self.reuse_table)
        bits = p.weight_bits
        flip = (1 << (bits - 1)) if p.weight_signed else 0
        plane = timer.index[:max((bits - 1).bit_length(), 1)]
        for row in range(tile.m):
            bank = TableBank(p, prefix=f"r{row}_")
            with m.If(timer.phase0):
                bank.write(m, [self.a[row][l] for l in range(p.lanes)], timer.index[:max(p.lut_k - 1, 1)])
            zero = sum(bank.entries[t][0] for t in range(p.tables))
            for col in range(tile.n):
                codes = [self.w[col][l * bits:(l + 1) * bits] ^ flip for l in range(p.lanes)]
                looked = 0
                for t in range(p.tables):
                    pattern = Cat(*(codes[t * p.lut_k + l].bit_select(plane, 1) for l in range(p.lut_k)))
                    looked = looked + bank.read(m, t, pattern)
                correction = zero if p.weight_signed else zero - (zero << bits)
                run = Signal(signed(p.raw_bits), name=f"run_{row}_{col}")
                total = Signal(signed(p.raw_bits), name=f"total_{row}_{col}")
                m.d.comb += total.eq(Mux(timer.index == 0, correction, run) + (looked << plane))
                contribution = total >> 1 if p.table_shift == 0 else total << (p.table_shift - 1)
                acc = self.acc[row][col]
                with m.If(timer.phase1):
                    m.d.sync += run.eq(total)
                with m.If(timer.last):
                    m.d.sync += acc.eq(Mux(self.clear, 0, acc) + contribution)
        m.d.sync += self.done.eq(timer.last)
        return m
