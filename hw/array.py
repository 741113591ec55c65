"""The 2D systolic PE array: any PE kind (through :mod:`hw.pe.base`), output- or weight-stationary.

A GEMM tile computes ``C[m, n] = A[m, k] . W[k, n]`` on a ``rows`` x ``cols`` array (every tile
starts from zero: the partial sums of several ``k`` tiles of one output, needed when a WS tile's
``k`` exceeds ``rows * lanes``, are added outside the array) whose PEs consume ``lanes`` consecutive ``k`` elements per step.
``k`` is split into ``steps = ceil(k / lanes)`` steps; the driver zero-pads ``A`` along ``k`` (the
pad weight code is don't-care, code 0 by convention).

Output-stationary (OS) tile: ``m <= rows``, ``n <= cols``, any ``k``. PE(r, c) accumulates
``C[r, c]``. Activations move right along the rows, weights move down the columns, both skewed
at the array edge so that PE(r, c) sees step ``s`` in slot ``s + 1 + r + c``. After the last step
the rows leave the array one by one through ``out``; row ``r`` is emitted as soon as its last PE
has finished.

Weight-stationary (WS) tile: ``ceil(k / lanes) <= rows``, ``n <= cols``, any ``m``. First ``rows``
weight beats load the stationary weights (beat ``r`` = step ``r`` of every column), then one
activation beat per output row ``m`` flows through; partial sums move down a systolic chain
(``psum_in`` = the ``acc`` of the PE above, ``clear`` on every step) and are de-skewed at the
bottom, so each ``out`` beat is one full row of ``C``.

Timing. The array advances in *slots* of ``S = step_cycles`` cycles; every PE with work starts its
step in the first cycle of a slot. A slot ends with a *fire* that needs its input beat (OS: one
``act`` and one ``weight`` beat; WS: one ``act`` beat) and a free output register; while either is
missing the array freezes (``stall`` is high in each such cycle, and each such cycle delays the
tile by exactly one cycle). Tiles do not overlap: the next tile's first beat is accepted in the
cycle after the previous tile's last ``out`` transfer. Without stalls a tile takes exactly
(counted from the cycle of its first input transfer to the cycle of its last output transfer,
inclusive)::

    OS: cycles = steps*S + (rows + cols - 2)*S + 2            steps = ceil(k / lanes)
    WS: cycles = rows + m*S + (rows + cols - 1)*S + 2         (rows cycles of weight load)
    IS: as WS with m and n swapped (input-stationary has no RTL; the simulator uses this formula)

which :func:`array_tile_cost` returns as ``fill + compute + drain``.
"""

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from amaranth.hdl import (Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, Value,
                         signed, unsigned)
from amaranth.lib.memory import Memory
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from dataflow.errors import MappingError, SpecError
from hw.pe import get_kind, make_pe, pe_cost
from hw.spec import DATAFLOWS, RTL_DATAFLOWS, ArraySpec

__all__ = ["TileCost", "array_tile_cost", "array_signature", "SystolicArray", "ArrayGroup", "ArrayRow", "ArrayCell",
           "act_layout", "weight_layout", "out_layout"]


# --- cost view --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TileCost:
    """Cost of one GEMM tile on the array (see the module docstring for the formula).

    ``fill``: cycles before the first step's input beat (WS/IS: the stationary load);
    ``compute``: ``steps * step_cycles``; ``drain``: cycles from the end of the last input slot to
    the last output transfer; ``cycles = fill + compute + drain``. ``steps``: input beats (slots
    that take an input). ``pe_steps``: PE steps doing useful work (PEs inside the ``m x n`` tile;
    idle PEs are assumed clock-gated); ``actions`` = per-step PE actions x ``pe_steps``.
    """

    cycles: int
    fill: int
    compute: int
    drain: int
    steps: int
    pe_steps: int
    step_cycles: int
    actions: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "actions", MappingProxyType(dict(self.actions)))


def _tile_extent(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise MappingError(f"tile {name} must be a positive integer, not {value!r}")


def array_tile_cost(array_params, pe_params, m, n, k):
    """Cost of the tile ``C[m, n] += A[m, k] . W[k, n]`` on ``array_params`` (an :class:`ArraySpec`
    or anything with ``rows``, ``cols``, ``dataflow``) built from PEs ``pe_params``.

    Raises :class:`MappingError` when the tile does not fit the dataflow's stationary extent.
    """
    rows, cols, dataflow = array_params.rows, array_params.cols, array_params.dataflow
    if dataflow not in DATAFLOWS:
        raise SpecError(f"dataflow must be one of {', '.join(DATAFLOWS)}, not {dataflow!r}")
    for name, value in (("m", m), ("n", n), ("k", k)):
        _tile_extent(name, value)
    cost = pe_cost(pe_params)
    step_cycles, lanes = cost.step_cycles, pe_params.lanes
    k_steps = -(-k // lanes)
    if dataflow == "output-stationary":
        if m > rows:
            raise MappingError(f"output-stationary tile m={m} exceeds rows={rows}")
        if n > cols:
            raise MappingError(f"output-stationary tile n={n} exceeds cols={cols}")
        steps, fill = k_steps, 0
        drain = (rows + cols - 2) * step_cycles + 2
    else:
        stationary = "weight" if dataflow == "weight-stationary" else "input"
        streamed, other = (m, n) if stationary == "weight" else (n, m)
        if k_steps > rows:
            raise MappingError(f"{dataflow} tile k={k} needs {k_steps} steps of {lanes} lanes, "
                               f"more than rows={rows}")
        if other > cols:
            raise MappingError(f"{dataflow} tile {'n' if stationary == 'weight' else 'm'}={other} "
                               f"exceeds cols={cols}")
        steps, fill = streamed, rows
        drain = (rows + cols - 1) * step_cycles + 2
    compute = steps * step_cycles
    pe_steps = m * n * k_steps
    return TileCost(cycles=fill + compute + drain, fill=fill, compute=compute, drain=drain,
                    steps=steps, pe_steps=pe_steps, step_cycles=step_cycles,
                    actions=cost.scaled(pe_steps))


# --- RTL view ---------------------------------------------------------------------------------

def act_layout(rows, pe_params):
    """``act`` payload: ``data[r]`` = the ``lanes`` activations row ``r`` takes, and ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(data.ArrayLayout(signed(pe_params.act_bits), pe_params.lanes), rows),
        "last": unsigned(1),
    })


def weight_layout(cols, pe_params):
    """``weight`` payload: one PE weight payload per column."""
    return data.ArrayLayout(unsigned(pe_params.weight_payload_bits), cols)


def out_layout(cols, pe_params):
    """``out`` payload: one row of ``C`` and ``last`` (the tile's final row)."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(pe_params.acc_bits), cols),
        "last": unsigned(1),
    })


def array_signature(rows, cols, pe_params):
    return wiring.Signature({
        "act": In(stream.Signature(act_layout(rows, pe_params))),
        "weight": In(stream.Signature(weight_layout(cols, pe_params))),
        "out": Out(stream.Signature(out_layout(cols, pe_params))),
        "stall": Out(1),
    })


_TOKEN = data.StructLayout({"valid": 1, "first": 1, "last": 1})


def _child(m, name, component, module_name):
    """Add ``component`` as submodule ``name``; or, when exporting hierarchically (``module_name``
    given), an :class:`Instance` of the separately exported module ``module_name``. Returns the
    object whose ports the parent connects to."""
    if module_name is None:
        m.submodules[name] = component
        return component
    component._MustUse__silence = True   # only its signature is used
    ports = component.signature.create(path=(name,))
    connections = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
    for path, member, value in component.signature.flatten(ports):
        port = "__".join(map(str, path))
        connections[("i_" if member.flow == In else "o_") + port] = Value.cast(value)
    m.submodules[name] = Instance(module_name, **connections)
    return ports


def _delay(m, name, value, depth, fire):
    """``value`` delayed by ``depth`` fires: a register, or for ``depth > 1`` a circular buffer
    (a memory with an asynchronous read port), so skew lines cost O(width) netlist bits."""
    value = Value.cast(value)
    if depth == 0:
        return value
    if depth == 1:
        register = Signal(len(value), name=name)
        with m.If(fire):
            m.d.sync += register.eq(value)
        return register
    memory = Memory(shape=unsigned(len(value)), depth=depth, init=[])
    m.submodules[name] = memory
    write, read = memory.write_port(), memory.read_port(domain="comb")
    pointer = Signal(range(depth), name=f"{name}_ptr")
    m.d.comb += [write.addr.eq(pointer), read.addr.eq(pointer), write.data.eq(value), write.en.eq(fire)]
    with m.If(fire):
        m.d.sync += pointer.eq(Mux(pointer == depth - 1, 0, pointer + 1))
    return read.data


class ArrayCell(wiring.Component):
    """One PE of the array with its pipeline registers: the activation/token stage it computes on
    (shifted in from the left at every ``fire``) and its weight (OS: a stage shifted in from above
    at every ``fire``; WS: held, loaded from ``w_in`` when ``load``). The PE starts a step in the
    first cycle of a slot (``slot_start``) when its token is valid."""

    def __init__(self, pe_params, dataflow, pe_module=None):
        self._pe_params, self._dataflow, self._pe_module = pe_params, dataflow, pe_module
        p = pe_params
        a_shape = data.ArrayLayout(signed(p.act_bits), p.lanes)
        w_shape = unsigned(p.weight_payload_bits)
        members = {
            "fire": In(1), "slot_start": In(1),
            "act_in": In(a_shape), "tok_in": In(_TOKEN), "act_out": Out(a_shape), "tok_out": Out(_TOKEN),
            "w_in": In(w_shape), "acc": Out(signed(p.acc_bits)),
        }
        if dataflow == "output-stationary":
            members["w_out"] = Out(w_shape)
        else:
            members.update({"load": In(1), "psum_in": In(signed(p.acc_bits))})
        super().__init__(wiring.Signature(members))

    def elaborate(self, platform):
        m = Module()
        pe = _child(m, "pe", make_pe(self._pe_params), self._pe_module)
        with m.If(self.fire):
            m.d.sync += [self.act_out.eq(self.act_in), self.tok_out.eq(self.tok_in)]
        if self._dataflow == "output-stationary":
            with m.If(self.fire):
                m.d.sync += self.w_out.eq(self.w_in)
            weight = self.w_out
            m.d.comb += [pe.clear.eq(self.tok_out.first), pe.psum_in.eq(0)]
        else:
            weight = Signal.like(self.w_in, name="w_hold")
            with m.If(self.load):
                m.d.sync += weight.eq(self.w_in)
            m.d.comb += [pe.clear.eq(1), pe.psum_in.eq(self.psum_in)]
        m.d.comb += [
            pe.a.eq(self.act_out), pe.w.eq(weight),
            pe.start.eq(self.slot_start & self.tok_out.valid), self.acc.eq(pe.acc),
        ]
        return m


class ArrayRow(wiring.Component):
    """``cols`` cells chained left to right (activations and tokens); every row is identical.
    ``done`` is high when the last cell holds a valid token that ends a tile."""

    def __init__(self, cols, pe_params, dataflow, cell_module=None, pe_module=None):
        self._cols, self._pe_params, self._dataflow = cols, pe_params, dataflow
        self._cell_module, self._pe_module = cell_module, pe_module
        p = pe_params
        w_shape = unsigned(p.weight_payload_bits)
        accs = data.ArrayLayout(signed(p.acc_bits), cols)
        members = {
            "fire": In(1), "slot_start": In(1),
            "act_in": In(data.ArrayLayout(signed(p.act_bits), p.lanes)), "tok_in": In(_TOKEN),
            "tok_out": Out(_TOKEN), "w_in": In(data.ArrayLayout(w_shape, cols)), "acc": Out(accs),
        }
        if dataflow == "output-stationary":
            members["w_out"] = Out(data.ArrayLayout(w_shape, cols))
        else:
            members.update({"load": In(1), "psum_in": In(accs)})
        super().__init__(wiring.Signature(members))

    def elaborate(self, platform):
        m = Module()
        os_flow = self._dataflow == "output-stationary"
        act, tok = self.act_in, self.tok_in
        for c in range(self._cols):
            cell = _child(m, f"cell_{c}", ArrayCell(self._pe_params, self._dataflow, self._pe_module),
                          self._cell_module)
            m.d.comb += [cell.fire.eq(self.fire), cell.slot_start.eq(self.slot_start),
                         cell.act_in.eq(act), cell.tok_in.eq(tok), cell.w_in.eq(self.w_in[c]),
                         self.acc[c].eq(cell.acc)]
            if os_flow:
                m.d.comb += self.w_out[c].eq(cell.w_out)
            else:
                m.d.comb += [cell.load.eq(self.load), cell.psum_in.eq(self.psum_in[c])]
            act, tok = cell.act_out, cell.tok_out
        m.d.comb += self.tok_out.eq(tok)
        return m


class ArrayGroup(wiring.Component):
    """``rows`` consecutive rows of the array, chained top to bottom (OS weights, WS partial sums).

    OS: ``out_out`` is the accumulators of the row selected by the one-hot ``out_sel``, else
    ``out_in`` (a chained output multiplexer), and ``done`` is high when some row's last cell holds
    a tile's last valid token. Both dataflows: ``bottom`` is the last row's accumulators and
    ``bottom_tok`` its last cell's token. Groups keep every Verilog module small."""

    def __init__(self, rows, cols, pe_params, dataflow, module_names=None):
        self._rows, self._cols, self._pe_params, self._dataflow = rows, cols, pe_params, dataflow
        self._module_names = dict(module_names or {})
        p = pe_params
        w_shape = unsigned(p.weight_payload_bits)
        accs = data.ArrayLayout(signed(p.acc_bits), cols)
        members = {
            "fire": In(1), "slot_start": In(1),
            "act_in": In(data.ArrayLayout(data.ArrayLayout(signed(p.act_bits), p.lanes), rows)),
            "tok_in": In(data.ArrayLayout(_TOKEN, rows)),
            "w_in": In(data.ArrayLayout(w_shape, cols)),
            "bottom": Out(accs), "bottom_tok": Out(_TOKEN),
        }
        if dataflow == "output-stationary":
            members.update({"w_out": Out(data.ArrayLayout(w_shape, cols)), "out_sel": In(rows),
                            "out_in": In(accs), "out_out": Out(accs), "done": Out(1)})
        else:
            members.update({"load": In(rows), "psum_in": In(accs)})
        super().__init__(wiring.Signature(members))

    def row_component(self):
        names = self._module_names
        return ArrayRow(self._cols, self._pe_params, self._dataflow, names.get("cell"), names.get("pe"))

    def elaborate(self, platform):
        m = Module()
        os_flow = self._dataflow == "output-stationary"
        above = None
        selected = Value.cast(self.out_in) if os_flow else None
        done = Const(0)
        for r in range(self._rows):
            row = _child(m, f"row_{r}", self.row_component(), self._module_names.get("row"))
            m.d.comb += [row.fire.eq(self.fire), row.slot_start.eq(self.slot_start),
                         row.act_in.eq(self.act_in[r]), row.tok_in.eq(self.tok_in[r])]
            if os_flow:
                m.d.comb += row.w_in.eq(self.w_in if above is None else above.w_out)
                selected = Mux(self.out_sel[r], Value.cast(row.acc), selected)
                done = done | (row.tok_out.valid & row.tok_out.last)
            else:
                m.d.comb += [row.w_in.eq(self.w_in), row.load.eq(self.load[r]),
                             row.psum_in.eq(self.psum_in if above is None else above.acc)]
            above = row
        m.d.comb += [self.bottom.eq(above.acc), self.bottom_tok.eq(above.tok_out)]
        if os_flow:
            m.d.comb += [self.w_out.eq(above.w_out), Value.cast(self.out_out).eq(selected), self.done.eq(done)]
        return m


def _group_sizes(rows):
    """Rows per group: about sqrt(rows) each, so that no Verilog module grows with rows * cols."""
    size = max(1, math.isqrt(rows - 1) + 1) if rows > 4 else rows
    sizes = [size] * (rows // size)
    if rows % size:
        sizes.append(rows % size)
    return sizes


class SystolicArray(wiring.Component):
    """A ``rows`` x ``cols`` systolic array of PEs ``pe_params``, output- or weight-stationary.

    Ports
    -----
    ``act``    In stream, payload :func:`act_layout`. OS: one beat per step (``data[r]`` = step's
               activations of output row ``r``), ``last`` on the tile's final step. WS: one beat per
               output row ``m`` (``data[r]`` = its activations of step ``r``), ``last`` on the final row.
    ``weight`` In stream, payload :func:`weight_layout`. OS: one beat per step, consumed together
               with its ``act`` beat (each ``ready`` waits for the other stream's ``valid``). WS:
               exactly ``rows`` beats at the start of a tile (beat ``r`` = step ``r``), one per cycle.
    ``out``    Out stream, payload :func:`out_layout`. OS: ``rows`` beats (row ``r`` of ``C``); WS: one
               beat per ``act`` beat. ``last`` marks the tile's final beat.
    ``stall``  Out: high in each cycle the array waits for an input beat or for ``out`` to be taken.

    ``valid`` never depends on ``ready``. Throughput: one step slot per ``step_cycles`` cycles.
    Latency and tile cycles: see the module docstring and :func:`array_tile_cost`.

    Structure: groups of about sqrt(rows) rows (:class:`ArrayGroup`), rows of ``cols`` cells
    (:class:`ArrayRow`), cells (:class:`ArrayCell`: a PE and its pipeline registers); the edge skew
    lines are circular buffers. ``module_names`` (used by :mod:`hw.export`) maps ``"pe"``,
    ``"cell"``, ``"row"`` and ``"group<size>"`` to names of separately exported Verilog modules,
    which are then instantiated by name, so no Verilog module grows with ``rows * cols``.
    """

    def __init__(self, *, rows, cols, pe_params, dataflow="output-stationary", module_names=None):
        spec = ArraySpec(rows=rows, cols=cols, dataflow=dataflow)  # raises "rows: must be ..."
        if dataflow not in RTL_DATAFLOWS:
            raise SpecError(f"dataflow: {dataflow} has no RTL array (only "
                            f"{', '.join(RTL_DATAFLOWS)}); the simulator models it analytically")
        get_kind(getattr(pe_params, "kind", None))
        self._spec = spec
        self._pe_params = pe_params
        self._step_cycles = pe_cost(pe_params).step_cycles
        self._module_names = dict(module_names or {})
        super().__init__(array_signature(rows, cols, pe_params))

    @classmethod
    def from_architecture(cls, arch, weight_format=None, rows=None, cols=None):
        """The array of ``arch`` (optionally a smaller ``rows`` x ``cols`` instance of it)."""
        return cls(rows=rows or arch.array.rows, cols=cols or arch.array.cols,
                   dataflow=arch.array.dataflow, pe_params=arch.pe_params(weight_format))

    rows = property(lambda self: self._spec.rows)
    cols = property(lambda self: self._spec.cols)
    dataflow = property(lambda self: self._spec.dataflow)
    pe_params = property(lambda self: self._pe_params)
    step_cycles = property(lambda self: self._step_cycles)
    group_sizes = property(lambda self: _group_sizes(self.rows))

    def tile_cost(self, m, n, k):
        return array_tile_cost(self._spec, self._pe_params, m, n, k)

    def group_component(self, size):
        return ArrayGroup(size, self.cols, self._pe_params, self.dataflow, self._module_names)

    def row_component(self):
        return self.group_component(1).row_component()

    def cell_component(self):
        return ArrayCell(self._pe_params, self.dataflow, self._module_names.get("pe"))

    def elaborate(self, platform):
        m = Module()
        rows, cols, S = self.rows, self.cols, self._step_cycles
        p = self._pe_params
        os_flow = self.dataflow == "output-stationary"

        # --- slot sequencer: phase counts the cycles of a slot and saturates at S-1.
        phase = Signal(range(S), init=S - 1)
        slot_done = Signal()
        slot_start = Signal()      # first cycle of a slot: PEs with work start their step
        waited = Signal()          # a slot_done cycle passed without a fire (the slot is extended)
        fire = Signal()
        m.d.comb += slot_done.eq(phase == S - 1)
        m.d.sync += slot_start.eq(fire)
        with m.If(fire):
            m.d.sync += [phase.eq(0), waited.eq(0)]
        with m.Else():
            with m.If(phase != S - 1):
                m.d.sync += phase.eq(phase + 1)
            with m.If(slot_done):
                m.d.sync += waited.eq(1)

        FEED, FLUSH, LOAD = 0, 1, 2
        state = Signal(range(3), init=FEED if os_flow else LOAD)
        out_pending = Signal()
        out_take = Signal()
        m.d.comb += [self.out.valid.eq(out_pending), out_take.eq(self.out.valid & self.out.ready)]
        out_ok = Signal()
        m.d.comb += out_ok.eq(~out_pending | self.out.ready)
        with m.If(out_take):
            m.d.sync += out_pending.eq(0)

        accept = Signal()          # an act beat is consumed this cycle (it fires)
        can_feed = Signal()
        m.d.comb += can_feed.eq((state == FEED) & slot_done & out_ok)
        if os_flow:
            m.d.comb += [
                self.act.ready.eq(can_feed & self.weight.valid),
                self.weight.ready.eq(can_feed & self.act.valid),
                accept.eq(can_feed & self.act.valid & self.weight.valid),
            ]
        else:
            m.d.comb += [self.act.ready.eq(can_feed), accept.eq(can_feed & self.act.valid),
                         self.weight.ready.eq(state == LOAD)]
        m.d.comb += fire.eq(accept | ((state == FLUSH) & slot_done & out_ok))
        with m.If(accept & self.act.payload.last):
            m.d.sync += state.eq(FLUSH)

        # --- the token that enters with a beat (bubbles enter as invalid tokens)
        first_next = Signal(init=1)  # the next accepted beat starts a tile (OS clear)
        with m.If(accept):
            m.d.sync += first_next.eq(self.act.payload.last)
        token = Signal(_TOKEN)
        m.d.comb += [token.valid.eq(accept), token.first.eq(first_next),
                     token.last.eq(self.act.payload.last)]

        # --- one-hot row pointers: OS, the row out shows; WS, the row the next weight beat loads
        row_pointer = Signal(rows, init=1)
        weight_take = Signal()
        m.d.comb += weight_take.eq(self.weight.valid & self.weight.ready)
        if os_flow:
            with m.If(out_take):
                m.d.sync += row_pointer.eq(row_pointer.rotate_left(1))
        else:
            with m.If(weight_take):
                m.d.sync += row_pointer.eq(row_pointer.rotate_left(1))
                with m.If(row_pointer[rows - 1]):
                    m.d.sync += [state.eq(FEED), phase.eq(S - 1)]

        # --- groups of rows; activations/tokens of row r are delayed r fires at the left edge, OS
        # weights of column c by c fires at the top edge.
        a_bits = p.act_bits * p.lanes
        group_ports = []
        first_row = 0
        for index, size in enumerate(self.group_sizes):
            group = _child(m, f"group_{index}", self.group_component(size),
                           self._module_names.get(f"group{size}"))
            m.d.comb += [group.fire.eq(fire), group.slot_start.eq(slot_start)]
            for i in range(size):
                r = first_row + i
                skewed = _delay(m, f"skew_{r}", Cat(Value.cast(self.act.payload.data[r]), Value.cast(token)),
                                r, fire)
                m.d.comb += [Value.cast(group.act_in[i]).eq(skewed[:a_bits]),
                             Value.cast(group.tok_in[i]).eq(skewed[a_bits:])]
            previous = group_ports[-1] if group_ports else None
            if os_flow:
                if previous is None:
                    for c in range(cols):
                        m.d.comb += group.w_in[c].eq(_delay(m, f"wskew_{c}", self.weight.payload[c], c, fire))
                else:
                    m.d.comb += [group.w_in.eq(previous.w_out), group.out_in.eq(previous.out_out)]
                m.d.comb += group.out_sel.eq(row_pointer[first_row:first_row + size])
            else:
                m.d.comb += [group.w_in.eq(self.weight.payload), group.load.eq(
                    Mux(weight_take, row_pointer[first_row:first_row + size], 0))]
                if previous is not None:
                    m.d.comb += group.psum_in.eq(previous.bottom)
            group_ports.append(group)
            first_row += size
        bottom = group_ports[-1]

        if os_flow:
            # Row r is complete after the slot in which its last PE ran the tile's last step; its
            # PEs' accumulators stay put until the next tile, so out reads them through the groups'
            # chained multiplexer, one row per beat.
            with m.If(fire):
                for group in group_ports:
                    with m.If(group.done):
                        m.d.sync += out_pending.eq(1)
            m.d.comb += [self.out.payload.data.eq(bottom.out_out),
                         self.out.payload.last.eq(row_pointer[rows - 1])]
            with m.If(out_take & row_pointer[rows - 1]):
                m.d.sync += [state.eq(FEED), phase.eq(S - 1)]
        else:
            # At a fire the bottom PEs' results of the previous slot are acc (the slot was not
            # extended) or the copy taken when the slot's step ended (it was). Column c is then
            # delayed cols-1-c fires so that a whole row of C reaches the out register together.
            out_data = Signal(data.ArrayLayout(signed(p.acc_bits), cols))
            out_last = Signal()
            m.d.comb += [self.out.payload.data.eq(out_data), self.out.payload.last.eq(out_last)]
            copy = Signal(data.ArrayLayout(signed(p.acc_bits), cols))
            with m.If(slot_done & ~waited):
                m.d.sync += copy.eq(bottom.bottom)
            previous = Signal(data.ArrayLayout(signed(p.acc_bits), cols))
            m.d.comb += Value.cast(previous).eq(Mux(waited, Value.cast(copy), Value.cast(bottom.bottom)))
            with m.If(fire):
                for c in range(cols):
                    m.d.sync += out_data[c].eq(_delay(m, f"deskew_{c}", previous[c], cols - 1 - c, fire))
            done_token = Signal(_TOKEN)   # the token of the bottom-right PE's previous step
            with m.If(fire):
                m.d.sync += [done_token.eq(bottom.bottom_tok), out_last.eq(done_token.last)]
                with m.If(done_token.valid):
                    m.d.sync += out_pending.eq(1)
            with m.If(out_take & out_last):
                m.d.sync += state.eq(LOAD)

        # --- stall: a cycle in which a slot could end but an input or the out slot is missing,
        # or the tile's final out beat waits.
        waiting_in = Signal()
        if os_flow:
            m.d.comb += waiting_in.eq(can_feed & ~(self.act.valid & self.weight.valid))
        else:
            m.d.comb += waiting_in.eq((can_feed & ~self.act.valid) | ((state == LOAD) & ~self.weight.valid))
        waiting_out = Signal()
        m.d.comb += waiting_out.eq(self.out.valid & ~self.out.ready
                                   & ((slot_done & (state != LOAD)) | self.out.payload.last))
        m.d.comb += self.stall.eq(waiting_in | waiting_out)
        return m
