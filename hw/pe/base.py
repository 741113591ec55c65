"""The processing-element (PE) contract shared by every PE kind.

Every PE kind lives in one module ``hw/pe/<kind>.py`` and gives the three views of DESIGN.md:
a bit-exact NumPy golden model, a cost view (:class:`PECost`) and an Amaranth
:class:`~amaranth.lib.wiring.Component` whose signature is :func:`pe_signature`. The 2D array
(:mod:`hw.array`) composes any kind through this contract only.

Ports (:func:`pe_signature`)
----------------------------
``a``        In  ``data.ArrayLayout(signed(act_bits), lanes)``: the activations of this step.
``w``        In  ``unsigned(weight_payload_bits)``: the packed weight payload of this step. Lane *i*'s
             code sits at bits ``[i*wb, (i+1)*wb)`` (``wb`` = the weight format's bits); a kind may put
             side information above ``lanes*wb`` (the dequantizing MAC puts its group scale there).
``start``    In  1: begin a step in this cycle.
``clear``    In  1: with ``start``, the step's base is ``psum_in`` instead of the PE's own ``acc``.
``psum_in``  In  ``signed(acc_bits)``.
``acc``      Out ``signed(acc_bits)``: the result register.
``done``     Out 1: high for exactly one cycle, the first cycle in which ``acc`` shows a new result.

Timing (S = ``cost(params).step_cycles``, data-independent)
-----------------------------------------------------------
* A step starts in the cycle *t* where ``start`` is high. The array holds ``a``, ``w``, ``clear``
  and ``psum_in`` stable from cycle *t* through cycle *t+S-1* (the whole step), so the PE may read
  them in any cycle of the step and need not latch them.
* The array raises ``start`` again at the earliest in cycle *t+S* (back-to-back steps are allowed,
  overlapping steps are not). ``start`` in cycle *t+S* may coincide with ``done``.
* ``acc`` is a register that changes **only** at the clock edge ending cycle *t+S-1*; it then holds
  ``wrap(base + dot(a, decode(w)), acc_bits)`` where ``base = psum_in if clear else acc`` (the
  value ``acc`` showed during the step). Partial sums of a multi-cycle step live in other
  registers. Hence another PE may read ``acc`` as its ``psum_in`` for a whole step.
* ``done`` is high in cycle *t+S* only (it is ``start`` delayed by S cycles).
* Reset: ``acc = 0``, ``done = 0``. Extra ``In`` ports of a kind are tied to 0 by the array.

How the array uses it: output-stationary, each PE keeps its own ``acc`` (``clear=1`` on the first
step of a tile, ``psum_in=0``); weight-stationary, the PE's weight payload is held by the array and
``psum_in`` is the ``acc`` of the PE above (``clear=1`` on every step): a systolic chain.

Golden models
-------------
``golden_step(params, a[..., lanes], w_codes[..., lanes], base[...]) -> acc[...]`` (int64, wrapped)
and ``golden_gemm(params, A[m, k], w_codes[k, n], base=None, **extra) -> C[m, n]``, the exact
matrix product the array computes when ``k`` is split into steps of ``lanes`` consecutive elements,
``A`` is zero-padded along ``k`` to a multiple of ``lanes`` and ``w_codes`` padded with code 0.

Cost actions are named ``<op>_<type><bits>``, e.g. ``mul_int8`` (multiplier whose wider operand has 8
bits), ``add_int32`` (32-bit adder), ``shift_int32``, ``lut_read_int8``, ``reg_write_int32``; the energy
tables price them by these names.
"""

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Protocol

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dataflow.errors import SpecError

__all__ = [
    "PECost", "PEParams", "pe_signature", "wrap", "pack_lanes", "unpack_lanes", "weight_steps",
    "pack_weights", "activation_steps", "check_positive_int", "check_choice", "check_act_bits",
    "check_acc_bits",
]


@dataclass(frozen=True)
class PECost:
    """The cost view of one PE step.

    ``step_cycles``: cycles one step occupies; the PE accepts a new step every ``step_cycles``
    cycles, independently of the data. ``actions``: energy-bearing actions performed per step
    (name -> count), e.g. ``{"mul_int8": 1, "add_int32": 1}``.
    """

    step_cycles: int
    actions: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self):
        check_positive_int("step_cycles", self.step_cycles)
        actions = {}
        for name, count in dict(self.actions).items():
            if not isinstance(name, str) or not name:
                raise SpecError(f"action names must be non-empty strings, not {name!r}")
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
                raise SpecError(f"action {name} count must be a non-negative integer, not {count!r}")
            actions[name] = int(count)
        object.__setattr__(self, "actions", MappingProxyType(actions))

    def scaled(self, steps):
        """The actions of ``steps`` steps (a plain dict)."""
        return {name: count * steps for name, count in self.actions.items()}


class PEParams(Protocol):
    """What every kind's frozen parameter dataclass provides (it may add more fields)."""

    kind: str
    act_bits: int
    acc_bits: int
    lanes: int                 # activations consumed per step
    weight_format: str
    weight_payload_bits: int   # bits of the packed ``w`` payload of one step


def pe_signature(params):
    """The :class:`wiring.Signature` every PE kind implements (see the module docstring)."""
    return wiring.Signature({
        "a": In(data.ArrayLayout(signed(params.act_bits), params.lanes)),
        "w": In(unsigned(params.weight_payload_bits)),
        "start": In(1),
        "clear": In(1),
        "psum_in": In(signed(params.acc_bits)),
        "acc": Out(signed(params.acc_bits)),
        "done": Out(1),
    })


# --- numeric helpers -------------------------------------------------------------------------

def wrap(values, bits):
    """Two's-complement wrap of integers to ``bits`` bits (int64 result)."""
    values = np.asarray(values, dtype=np.int64)
    mask = np.int64((1 << bits) - 1)
    half = np.int64(1 << (bits - 1))
    return ((values & mask) ^ half) - half


def pack_lanes(codes, bits):
    """Pack ``codes[..., lanes]`` (unsigned, ``bits`` each) into Python ints, lane i at ``[i*bits, (i+1)*bits)``."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << bits)):
        raise SpecError(f"weight codes must lie in [0, {1 << bits}), not {codes.min()}..{codes.max()}")
    flat = codes.reshape(-1, codes.shape[-1])
    out = np.empty(flat.shape[0], dtype=object)
    for row, lane_codes in enumerate(flat):
        value = 0
        for lane, code in enumerate(lane_codes):
            value |= int(code) << (lane * bits)
        out[row] = value
    return out.reshape(codes.shape[:-1])


def unpack_lanes(payloads, bits, lanes):
    """Inverse of :func:`pack_lanes` (ignores bits above ``lanes*bits``)."""
    payloads = np.asarray(payloads, dtype=object)
    out = np.empty(payloads.shape + (lanes,), dtype=np.int64)
    for index in np.ndindex(payloads.shape):
        value = int(payloads[index])
        for lane in range(lanes):
            out[index + (lane,)] = (value >> (lane * bits)) & ((1 << bits) - 1)
    return out


def weight_steps(w_codes, lanes):
    """Split ``w_codes[k, n]`` into steps: ``[steps, n, lanes]``, padding ``k`` with code 0."""
    w_codes = np.asarray(w_codes, dtype=np.int64)
    k, n = w_codes.shape
    steps = -(-k // lanes)
    padded = np.zeros((steps * lanes, n), dtype=np.int64)
    padded[:k] = w_codes
    return padded.reshape(steps, lanes, n).transpose(0, 2, 1)


def activation_steps(a, lanes):
    """Split ``A[m, k]`` into steps: ``[steps, m, lanes]``, zero-padding ``k``."""
    a = np.asarray(a, dtype=np.int64)
    m, k = a.shape
    steps = -(-k // lanes)
    padded = np.zeros((m, steps * lanes), dtype=np.int64)
    padded[:, :k] = a
    return padded.reshape(m, steps, lanes).transpose(1, 0, 2)


def pack_weights(params, w_codes):
    """Default payloads ``[steps, n]`` (Python ints) for ``w_codes[k, n]``: lanes packed, no side data.

    Kinds with side information in the payload export their own ``pack_weights(params, w_codes,
    **extra)`` with the same result shape.
    """
    from dataflow.formats import get_format

    bits = get_format(params.weight_format).bits
    return pack_lanes(weight_steps(w_codes, params.lanes), bits)


# --- validation helpers (messages follow STYLE.md) -------------------------------------------

def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise SpecError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def check_choice(name, value, choices):
    if value not in choices:
        raise SpecError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
    return value


def check_act_bits(act_bits):
    check_positive_int("act_bits", act_bits)
    if not 2 <= act_bits <= 16:
        raise SpecError(f"act_bits must be between 2 and 16, not {act_bits!r}")
    return int(act_bits)


def check_acc_bits(acc_bits, minimum=2):
    check_positive_int("acc_bits", acc_bits)
    if not minimum <= acc_bits <= 48:
        raise SpecError(f"acc_bits must be between {minimum} and 48, not {acc_bits!r}")
    return int(acc_bits)
