"""One bench for the bit-serial, LUT and shift-add PEs, run on the Amaranth simulator (fast tier)
and by cocotb on the exported Verilog (Icarus and Verilator).

Split as in cocotb's ``matrix_multiplier`` example:

* **driver** (:func:`run_pe`): random idle gaps between steps (garbage on every input while idle,
  back-to-back starts too), inputs held for the whole step as the contract requires;
* **monitor**: reads back, in the start cycle, what the DUT sees on its ports (activations, payload,
  clear, psum_in, extra controls) and watches ``done``/``acc`` in every cycle;
* **model** (:class:`PEModel`): the kind's golden functions fed from the monitored inputs (the
  payload is unpacked with this file's own reading of the documented layout);
* **checker**: ``acc`` bit-exact and unchanged until ``done``; ``done`` for one cycle exactly
  ``cost`` cycles after ``start`` (measured, per step, against the cost view).

The bench talks to the DUT through :mod:`hw.verify`'s port-access interface (``set``/``get``/
``width`` of unsigned integers by port name, ``settle``, ``tick``), so it runs on that module's two
back-ends unchanged. A job (:func:`make_job`) holds several PE configurations; the DUT is a
:class:`hw.verify.Bank` of their PEs (Verilog ports ``u<i>__<port>``), so one simulator build covers
every configuration of a kind, and :func:`run_instances` drives all of them at once.
"""

import random

import numpy as np

from hw.pe import get_kind
from hw.verify import PrefixIO, params_from_dict, params_to_dict

# --- configurations ------------------------------------------------------------------------------


def bitserial_configs():
    """Every supported weight format, each with the rescale unit; activations of 8, 6 and 4 bits
    and signed and unsigned scales spread over the formats; plus a PE without the rescale unit and
    a 2-lane PE."""
    from hw.pe.bitserial import SUPPORTED_WEIGHT_FORMATS, BitSerialParams

    narrow = {"int2": 4, "int5": 4, "uint3": 4, "uint6": 4, "e2m0": 4, "bitmod-fp3": 4,
              "int3": 6, "int7": 6, "uint4": 6, "uint8": 6}
    configs = []
    for index, weight_format in enumerate(SUPPORTED_WEIGHT_FORMATS):
        act_bits = narrow.get(weight_format, 8)
        configs.append(BitSerialParams(weight_format=weight_format, act_bits=act_bits, acc_bits=4 * act_bits + 8,
                                       scale_bits=act_bits, scale_signed=index % 4 != 3))
    configs += [BitSerialParams(weight_format="int4", act_bits=8, acc_bits=24),
                BitSerialParams(weight_format="bitmod-fp4", act_bits=8, acc_bits=24, lanes=2)]
    return configs


def lut_configs():
    """Every supported weight format with exact tables (activations of 8, 6 and 4 bits; lut_k 2
    and 4); INT8-rounded tables; lut_k 1 and 3; several tables per step."""
    from hw.pe.lut import SUPPORTED_WEIGHT_FORMATS, LutParams

    narrow = {"int2": 4, "uint2": 4, "int3": 6, "uint4": 6}
    configs = [LutParams(weight_format=f, act_bits=narrow.get(f, 8), acc_bits=32, lanes=4,
                         lut_k=2 if narrow.get(f) == 4 else 4)
               for f in SUPPORTED_WEIGHT_FORMATS]
    configs += [LutParams(weight_format="int4", act_bits=8, acc_bits=32, lanes=8, lut_k=4, table_bits=8),
                LutParams(weight_format="uint2", act_bits=8, acc_bits=32, lanes=4, lut_k=4, table_bits=8),
                LutParams(weight_format="int3", act_bits=8, acc_bits=24, lanes=3, lut_k=1),
                LutParams(weight_format="int1", act_bits=6, acc_bits=24, lanes=6, lut_k=3, table_bits=5)]
    return configs


def shiftadd_configs():
    """Every supported weight format (uint1..uint8 = 1..8 binary matrices); activations of 8, 6
    and 4 bits; exp_bits 1..5; lut_k 1..4; one and two tables per step."""
    from hw.pe.shiftadd import ShiftAddParams

    return [
        ShiftAddParams(weight_format="uint1", act_bits=8, acc_bits=16, lanes=3, lut_k=1, exp_bits=1),
        ShiftAddParams(weight_format="uint2", act_bits=8, acc_bits=48, lanes=8, lut_k=4, exp_bits=5),
        ShiftAddParams(weight_format="uint3", act_bits=4, acc_bits=24, lanes=4, lut_k=2, exp_bits=3),
        ShiftAddParams(weight_format="uint4", act_bits=8, acc_bits=40, lanes=4, lut_k=4, exp_bits=4),
        ShiftAddParams(weight_format="uint5", act_bits=6, acc_bits=24, lanes=6, lut_k=3, exp_bits=2),
        ShiftAddParams(weight_format="uint6", act_bits=8, acc_bits=40, lanes=4, lut_k=4, exp_bits=4),
        ShiftAddParams(weight_format="uint7", act_bits=4, acc_bits=32, lanes=4, lut_k=4, exp_bits=4),
        ShiftAddParams(weight_format="uint8", act_bits=8, acc_bits=40, lanes=4, lut_k=4, exp_bits=4),
    ]


def config_id(params):
    """A short test id naming what a configuration varies."""
    p = params
    if p.kind == "bitserial":
        return f"{p.weight_format}-a{p.act_bits}-l{p.lanes}-s{p.scale_bits}{'' if p.scale_signed else 'u'}"
    if p.kind == "lut":
        return f"{p.weight_format}-a{p.act_bits}-k{p.lut_k}-l{p.lanes}-t{p.table_bits}"
    return f"{p.weight_format}-a{p.act_bits}-k{p.lut_k}-e{p.exp_bits}"


# --- payload layout (this bench's own reading of the documented layouts) ----------------------------

def _field(value, at, bits):
    return (int(value) >> at) & ((1 << bits) - 1)


def _signed(raw, bits):
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def unpack_payload(params, payload):
    """``{"codes": [lanes], ...extras}`` from a payload integer."""
    bits = params.weight_bits
    out = {"codes": [_field(payload, lane * bits, bits) for lane in range(params.lanes)]}
    at = params.lanes * bits
    if params.kind == "bitserial":
        if params.scale_bits:
            raw = _field(payload, at, params.scale_bits)
            out["scale"] = _signed(raw, params.scale_bits) if params.scale_signed else raw
            at += params.scale_bits
        if params.specials:
            select = _field(payload, at, params.select_bits)
            out["special"] = params.specials[min(select, len(params.specials) - 1)]
    elif params.kind == "shiftadd":
        out["exponents"] = [_signed(_field(payload, at + i * params.exp_bits, params.exp_bits), params.exp_bits)
                            for i in range(params.planes)]
    return out


def controls(params):
    """Names of the PE's extra control inputs."""
    if params.kind == "bitserial":
        return ["rescale"] if params.scale_bits else []
    return ["reuse_table"]


# --- stimulus ------------------------------------------------------------------------------------

def _valid_codes(params):
    from dataflow.formats import get_format

    if params.kind == "bitserial":
        return list(range(1 << params.weight_bits))   # BitMoD's special code included
    return [int(c) for c in get_format(params.weight_format).codes()]


def make_steps(params, *, seed=0, random_steps=24, gap_probability=0.3):
    """Steps (JSON-able dicts): every weight code against max, min and random activations; zero
    activations and zero weights; every special value, the extreme scales and exponents; then
    random steps, with random clear/psum_in, extra controls and idle gaps."""
    from hw.pe import pack_weights

    rng = np.random.default_rng(seed)
    lanes = params.lanes
    low, high = -(1 << (params.act_bits - 1)), (1 << (params.act_bits - 1)) - 1
    acc_low, acc_high = -(1 << (params.acc_bits - 1)), (1 << (params.acc_bits - 1)) - 1
    codes = _valid_codes(params)
    steps = []
    specials = list(getattr(params, "specials", ()))

    def extras(special=None, scale=None, exponents=None):
        out = {}
        if params.kind == "bitserial":
            if params.specials:
                out["specials"] = [[special if special is not None else float(rng.choice(specials))]]
            if params.scale_bits:
                bits = params.scale_bits
                lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if params.scale_signed else (0, (1 << bits) - 1)
                out["scales"] = [[int(scale) if scale is not None else int(rng.integers(lo, hi + 1))]]
        elif params.kind == "shiftadd":
            lo, hi = -params.exp_offset, params.exp_offset - 1
            e = exponents if exponents is not None else rng.integers(lo, hi + 1, params.planes)
            out["exponents"] = [[int(x)] for x in e]
        return out

    def step(a, w, *, control=0, extra=None, clear=None, psum=None):
        extra = extras() if extra is None else extra
        payload = int(pack_weights(params, np.asarray(w, dtype=np.int64)[:, None],
                                   **{k: np.asarray(v) for k, v in extra.items()})[0, 0])
        gap = 0
        while rng.random() < gap_probability:
            gap += 1
        if clear is None:
            clear = 1 if not steps else int(rng.random() < 0.3)
        if psum is None:
            psum = int(rng.choice([acc_low, acc_high, 0])) if rng.random() < 0.2 else int(rng.integers(acc_low, acc_high + 1))
        names = controls(params)
        steps.append({"a": [int(x) for x in a], "payload": payload, "clear": int(clear), "psum_in": psum,
                      "controls": {name: int(control) for name in names}, "gap": gap})

    for index in range(0, len(codes), lanes):
        chunk = np.resize(codes[index:index + lanes], lanes)
        corner = (index // lanes) % 3
        a = np.full(lanes, high) if corner == 0 else np.full(lanes, low) if corner == 1 else \
            rng.integers(low, high + 1, lanes)
        step(a, chunk)
        if corner == 1 and params.kind != "bitserial":
            step(rng.integers(low, high + 1, lanes), chunk[::-1], control=1)   # reuse the min tables
    step(np.zeros(lanes), rng.choice(codes, lanes))
    step(rng.integers(low, high + 1, lanes), np.zeros(lanes, dtype=np.int64) + codes[0])
    if params.kind == "bitserial" and params.specials:
        for special in specials:
            step(np.full(lanes, low), np.full(lanes, params.special_code), extra=extras(special=special))
            step(rng.integers(low, high + 1, lanes), np.full(lanes, params.special_code),
                 extra=extras(special=special))
    if params.kind == "bitserial" and params.scale_bits:
        bits = params.scale_bits
        for scale in ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1, 0, 1) if params.scale_signed
                      else (0, (1 << bits) - 1, 1)):
            step(np.full(lanes, low), np.full(lanes, codes[-1]), clear=1, psum=0)
            step(np.full(lanes, high), rng.choice(codes, lanes))
            step(rng.integers(low, high + 1, lanes), rng.choice(codes, lanes), control=1,
                 extra=extras(scale=scale))
    if params.kind == "shiftadd":
        lo, hi = -params.exp_offset, params.exp_offset - 1
        for e in (lo, hi):
            step(np.full(lanes, low), np.full(lanes, (1 << params.planes) - 1),
                 extra=extras(exponents=[e] * params.planes))
            step(np.full(lanes, high), np.zeros(lanes, dtype=np.int64), control=1,
                 extra=extras(exponents=[e] * params.planes))
    for _ in range(random_steps):
        control = int(rng.random() < 0.3)
        step(rng.integers(low, high + 1, lanes), rng.choice(codes, lanes), control=control)
    return steps


def make_job(configs, *, seed=0, random_steps=24):
    """A JSON-able job: instance ``i`` is ``configs[i]`` with :func:`make_steps` (seed ``seed + i``),
    driven with seed ``seed + i``."""
    return {"bench": "pe-instances", "seed": seed, "instances": [
        {"params": params_to_dict(p), "steps": make_steps(p, seed=seed + i, random_steps=random_steps)}
        for i, p in enumerate(configs)]}


# --- model -----------------------------------------------------------------------------------------

def cost_cycles(params):
    """Start-to-done cycles of every kind of step the cost view defines for this PE: ``cost`` and
    ``rescale_cost`` (bit-serial with a rescale unit), ``cost`` and ``lookup_cost`` (table reuse)."""
    module = get_kind(params.kind).module
    if params.kind == "bitserial":
        extra = [module.rescale_cost(params)] if params.scale_bits else []
    else:
        extra = [module.lookup_cost(params)]
    return {cost.step_cycles for cost in [module.cost(params), *extra]}


class PEModel:
    """The expected behaviour of one PE, step by step, from the monitored inputs."""

    def __init__(self, params):
        self.params = params
        self.module = get_kind(params.kind).module
        self.acc = 0
        self.group_base = 0
        self.table_activations = np.zeros(params.lanes, dtype=np.int64)  # tables after reset: zero

    def step(self, a, payload, clear, psum_in, control):
        """Apply one step; returns ``(expected acc, expected cycles)``."""
        p, mod = self.params, self.module
        fields_ = unpack_payload(p, payload)
        codes = np.asarray(fields_["codes"], dtype=np.int64)
        a = np.asarray(a, dtype=np.int64)
        base = psum_in if clear else self.acc
        if p.kind == "bitserial":
            if control.get("rescale"):
                self.acc = int(mod.golden_rescale(p, self.acc, self.group_base, fields_["scale"]))
                self.group_base = self.acc
                return self.acc, mod.rescale_cost(p).step_cycles
            if clear:
                self.group_base = psum_in
            self.acc = int(mod.golden_step(p, a, codes, base, special=fields_.get("special")))
            return self.acc, mod.cost(p).step_cycles
        reuse = bool(control.get("reuse_table"))
        if not reuse:
            self.table_activations = a
        kwargs = {"exponents": np.asarray(fields_["exponents"])} if p.kind == "shiftadd" else {}
        self.acc = int(mod.golden_step(p, self.table_activations, codes, base, **kwargs))
        return self.acc, (mod.lookup_cost(p) if reuse else mod.cost(p)).step_cycles


# --- driver + monitor + checker --------------------------------------------------------------------

async def run_pe(io, params, steps, *, seed=0):
    """Drive ``steps`` into one PE and check every cycle; returns a JSON-able result dict."""
    rng = random.Random(seed)
    model = PEModel(params)
    names = controls(params)
    act_bits, lanes, acc_bits = params.act_bits, params.lanes, params.acc_bits
    failures, measured, expected_cycles = [], [], []
    # the bench reads the DUT's parameters back from its port widths
    for port, bits in (("w", params.weight_payload_bits), ("a", act_bits * lanes), ("acc", acc_bits)):
        if io.width(port) != bits:
            failures.append(f"port {port} is {io.width(port)} bits wide, expected {bits}")
    shown, done_due, last_start, cycle = 0, None, None, 0

    def garbage():
        io.set("a", rng.getrandbits(act_bits * lanes))
        io.set("w", rng.getrandbits(params.weight_payload_bits))
        io.set("clear", rng.getrandbits(1))
        io.set("psum_in", rng.getrandbits(acc_bits))
        io.set("start", 0)
        for name in names:
            io.set(name, rng.getrandbits(1))

    def check():
        done = io.get("done")
        got = _signed(io.get("acc"), acc_bits)
        if done:
            measured.append(cycle - last_start if last_start is not None else -1)
        if done != int(cycle == done_due):
            failures.append(f"cycle {cycle}: done={done}, expected {int(cycle == done_due)}")
        if got != shown:
            failures.append(f"cycle {cycle}: acc={got}, expected {shown}")

    for step in steps:
        for _ in range(step["gap"]):
            garbage()
            await io.settle()
            check()
            await io.tick()
            cycle += 1
        io.set("a", sum((x & ((1 << act_bits) - 1)) << (lane * act_bits) for lane, x in enumerate(step["a"])))
        io.set("w", step["payload"])
        io.set("clear", step["clear"])
        io.set("psum_in", step["psum_in"] & ((1 << acc_bits) - 1))
        for name in names:
            io.set(name, step["controls"][name])
        io.set("start", 1)
        await io.settle()
        check()
        # monitor: the model sees what the DUT's ports carry
        raw_a = io.get("a")
        seen_a = [_signed(raw_a >> (lane * act_bits), act_bits) for lane in range(lanes)]
        seen = model.step(seen_a, io.get("w"), io.get("clear"), _signed(io.get("psum_in"), acc_bits),
                          {name: io.get(name) for name in names})
        result, cycles = seen
        expected_cycles.append(cycles)
        last_start, done_due = cycle, cycle + cycles
        await io.tick()
        cycle += 1
        io.set("start", 0)
        while cycle < done_due:
            await io.settle()
            check()
            await io.tick()
            cycle += 1
        shown = result
        if len(failures) > 20:
            break
    for _ in range(2):
        garbage()
        await io.settle()
        check()
        await io.tick()
        cycle += 1
    if measured != expected_cycles:
        failures.append(f"start-to-done cycles {measured[:8]}, cost view {expected_cycles[:8]}")
    return {"passed": not failures and measured == expected_cycles, "failures": failures[:20],
            "steps": len(expected_cycles), "measured": measured, "expected_cycles": expected_cycles,
            "cycles": cycle}


async def run_instances(io, job, *, start_soon=None):
    """:func:`run_pe` on every instance of ``job`` (unit ``u<i>`` of the bank); with ``start_soon``
    (``cocotb.start_soon``) side by side, else one after the other. Returns ``{"passed", "runs",
    "failures"}`` with one :func:`run_pe` result per instance."""
    benches = [run_pe(PrefixIO(io, f"u{index}."), params_from_dict(instance["params"]), instance["steps"],
                      seed=job["seed"] + index)
               for index, instance in enumerate(job["instances"])]
    if start_soon is not None:
        benches = [start_soon(bench) for bench in benches]
    runs = [await bench for bench in benches]
    return {"passed": all(run["passed"] for run in runs), "runs": runs,
            "failures": [f"u{index}: {failure}" for index, run in enumerate(runs)
                         for failure in run["failures"][:3]][:20]}
