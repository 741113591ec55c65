"""The architecture spec: frozen dataclasses loaded from (and written back to) YAML.

An :class:`Architecture` describes one accelerator tile: a 2D array of PEs of one kind
(:class:`ArraySpec`, :class:`PESpec`), an optional 1D vector array (:class:`VectorSpec`, the FuseMax
1D array), the memories (:class:`MemorySpec`), the clock and the name of the energy table that
prices the blocks' actions. ``docs/architecture-spec.md`` documents every field and its unit.

Every field is validated on construction; an invalid value raises
:class:`~dataflow.errors.SpecError` with a one-line message naming the field and the value, and
:func:`load_architecture` adds the file name, e.g.
``arch.yaml: array.rows: must be a positive integer, not 0``.
"""

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Optional

import yaml

from dataflow.errors import SpecError

__all__ = [
    "DATAFLOWS", "RTL_DATAFLOWS", "PRESETS", "VECTOR_PRIMITIVES", "ArraySpec", "PESpec",
    "VectorOp", "VectorSpec", "MemorySpec", "Architecture", "load_architecture",
    "architecture_from_dict", "preset_path",
]

DATAFLOWS = ("output-stationary", "weight-stationary", "input-stationary")
"""Dataflow names. The RTL array implements the first two; input-stationary is simulator-only."""

RTL_DATAFLOWS = ("output-stationary", "weight-stationary")

PRESETS = ("mac-int8-32x32", "mac-dequant", "bitmod", "lut-tc", "shiftadd", "fusemax", "flat")
"""Built-in architecture names; each is ``hw/presets/<name>.yaml``."""

VECTOR_PRIMITIVES = ("mac", "add", "mul", "max", "div", "shift", "lut")
"""Primitive operations a 1D-array op is priced in (a compare counts as ``max``)."""

_PRESET_DIR = Path(__file__).parent / "presets"


# --- field checks: raise SpecError("<field>: <detail>") ---------------------------------------

def _fail(field_name, detail):
    raise SpecError(f"{field_name}: {detail}")


def _positive_int(field_name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        _fail(field_name, f"must be a positive integer, not {value!r}")
    return value


def _non_negative_int(field_name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(field_name, f"must be a non-negative integer, not {value!r}")
    return value


def _positive_number(field_name, value):
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        _fail(field_name, f"must be a positive number, not {value!r}")
    return value


def _name(field_name, value):
    if not isinstance(value, str) or not value.strip():
        _fail(field_name, f"must be a non-empty string, not {value!r}")
    return value


def _choice(field_name, value, choices):
    if value not in choices:
        _fail(field_name, f"must be one of {', '.join(choices)}, not {value!r}")
    return value


def _prefixed(prefix, error):
    """Re-raise a field error one level up: ``rows: ...`` becomes ``array.rows: ...``."""
    return SpecError(f"{prefix}.{error}")


# --- the spec ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArraySpec:
    """The 2D PE array: ``rows`` x ``cols`` PEs and its dataflow (one of :data:`DATAFLOWS`)."""

    rows: int
    cols: int
    dataflow: str = "output-stationary"

    def __post_init__(self):
        _positive_int("rows", self.rows)
        _positive_int("cols", self.cols)
        _choice("dataflow", self.dataflow, DATAFLOWS)

    @property
    def pes(self):
        return self.rows * self.cols


@dataclass(frozen=True)
class PESpec:
    """The PE kind and its parameters.

    ``kind``: a registered PE kind (:data:`hw.pe.PE_KINDS`); ``act_format``: the activation number
    format (a signed integer format, e.g. ``int8``); ``weight_formats``: the weight formats the PE
    supports (the bit-widths follow from the formats); ``acc_bits``: accumulator width;
    ``lanes``: activations per step (``None``: the kind's default); ``group_size``: quantization
    group along the reduction rank (``None``: per-channel); ``lut_k``: LUT group K (LUT kinds);
    ``scale_bits``: width of the integer group scale (dequantizing kinds); ``options``: further
    parameters of the kind, passed through as keywords (e.g. ``table_bits`` of the LUT PE).
    """

    kind: str
    act_format: str = "int8"
    weight_formats: tuple = ("int8",)
    acc_bits: int = 32
    lanes: Optional[int] = None
    group_size: Optional[int] = None
    lut_k: Optional[int] = None
    scale_bits: Optional[int] = None
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        from hw.pe import PE_KINDS

        _choice("kind", self.kind, tuple(PE_KINDS))
        act = self._format("act_format", self.act_format)
        if not (act.is_integer and act.signed):
            _fail("act_format", f"must be a signed integer format, not {self.act_format!r}")
        formats = self.weight_formats
        if isinstance(formats, str):
            formats = (formats,)
        if not isinstance(formats, (list, tuple)) or not formats:
            _fail("weight_formats", f"must be a non-empty list of format names, not {self.weight_formats!r}")
        formats = tuple(formats)
        for index, name in enumerate(formats):
            self._format(f"weight_formats[{index}]", name)
        if len(set(formats)) != len(formats):
            _fail("weight_formats", f"must not repeat a format, not {list(formats)!r}")
        object.__setattr__(self, "weight_formats", formats)
        _positive_int("acc_bits", self.acc_bits)
        for name in ("lanes", "group_size", "lut_k", "scale_bits"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if not isinstance(self.options, Mapping):
            _fail("options", f"must be a mapping of kind parameters, not {self.options!r}")
        for key, value in self.options.items():
            if not isinstance(key, str) or not isinstance(value, (bool, int, float, str, type(None))):
                _fail(f"options.{key}", f"must be a scalar, not {value!r}")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        # Let the kind validate its own parameters, for every weight format it must support.
        if PE_KINDS[self.kind].is_available:
            for index, name in enumerate(formats):
                try:
                    self.params(name)
                except SpecError as error:
                    if str(error).startswith("options."):
                        raise
                    _fail(*self._kind_error(str(error), index))

    def _kind_error(self, message, index):
        """Map a kind's "<param> must ..." message onto the spec field it came from."""
        spec_field = {"weight_format": f"weight_formats[{index}]", "act_bits": "act_format"}
        spec_field.update({key: f"options.{key}" for key in self.options})
        for param in ("weight_format", "act_bits", "acc_bits", "lanes", "group_size", "lut_k",
                      "scale_bits", *self.options):
            if message.startswith(param + " ") or message.startswith(param + ":"):
                return spec_field.get(param, param), message[len(param):].lstrip(": ")
        return f"weight_formats[{index}]", message

    @staticmethod
    def _format(field_name, name):
        from dataflow.errors import FormatError
        from dataflow.formats import get_format

        _name(field_name, name)
        try:
            return get_format(name)
        except FormatError as error:
            _fail(field_name, str(error))

    @property
    def act_bits(self):
        from dataflow.formats import get_format

        return get_format(self.act_format).bits

    def params(self, weight_format=None):
        """The kind's validated params object for ``weight_format`` (default: the first one)."""
        from hw.pe import get_kind

        if weight_format is None:
            weight_format = self.weight_formats[0]
        params_type = get_kind(self.kind).params_type
        offered = {
            "act_bits": self.act_bits, "acc_bits": self.acc_bits, "weight_format": weight_format,
            "lanes": self.lanes, "group_size": self.group_size, "lut_k": self.lut_k,
            "scale_bits": self.scale_bits,
        }
        names = {f.name for f in fields(params_type) if f.init}
        for key in self.options:
            if key not in names or key in offered:
                raise SpecError(f"options.{key}: not a parameter of the {self.kind} PE beyond the "
                                f"spec's own fields (its parameters: {', '.join(sorted(names))})")
        chosen = {k: v for k, v in offered.items() if k in names and v is not None}
        return params_type(**chosen, **self.options)

    def __hash__(self):
        return hash((self.kind, self.act_format, self.weight_formats, self.acc_bits, self.lanes,
                     self.group_size, self.lut_k, self.scale_bits, tuple(sorted(self.options.items()))))

    def __eq__(self, other):
        return (isinstance(other, PESpec)
                and all(getattr(self, f.name) == getattr(other, f.name) for f in fields(PESpec)
                        if f.name != "options")
                and dict(self.options) == dict(other.options))


@dataclass(frozen=True)
class VectorOp:
    """One op of the 1D array, per element on one lane: ``cycles`` and primitive op counts.

    ``primitives`` maps names of :data:`VECTOR_PRIMITIVES` to counts (FuseMax: exp = 6 mac + 1 add);
    ``cycles`` defaults to the sum of the counts (one primitive per lane per cycle).
    """

    name: str
    primitives: Mapping[str, int]
    cycles: Optional[int] = None

    def __post_init__(self):
        _name("name", self.name)
        if not isinstance(self.primitives, Mapping) or not self.primitives:
            _fail(self.name, f"must map primitives ({', '.join(VECTOR_PRIMITIVES)}) to counts, "
                             f"not {self.primitives!r}")
        for primitive, count in self.primitives.items():
            _choice(f"{self.name}.{primitive}" if isinstance(primitive, str) else self.name,
                    primitive, VECTOR_PRIMITIVES)
            _positive_int(f"{self.name}.{primitive}", count)
        object.__setattr__(self, "primitives", MappingProxyType(dict(self.primitives)))
        if self.cycles is None:
            object.__setattr__(self, "cycles", sum(self.primitives.values()))
        _positive_int(f"{self.name}.cycles", self.cycles)

    def __hash__(self):
        return hash((self.name, tuple(sorted(self.primitives.items())), self.cycles))

    def __eq__(self, other):
        return (isinstance(other, VectorOp) and self.name == other.name and self.cycles == other.cycles
                and dict(self.primitives) == dict(other.primitives))


@dataclass(frozen=True)
class VectorSpec:
    """The optional 1D vector array: ``lanes`` PEs of ``bits``-bit datapath, a shared register file
    of ``rf_words`` words, and the ops it supports (:class:`VectorOp`)."""

    lanes: int
    ops: tuple
    rf_words: int = 0
    bits: int = 16

    def __post_init__(self):
        _positive_int("lanes", self.lanes)
        _non_negative_int("rf_words", self.rf_words)
        _positive_int("bits", self.bits)
        if not isinstance(self.ops, (tuple, list)) or not all(isinstance(op, VectorOp) for op in self.ops):
            _fail("ops", f"must be a list of VectorOp, not {self.ops!r}")
        names = [op.name for op in self.ops]
        if len(set(names)) != len(names):
            _fail("ops", f"must not repeat an op, not {names!r}")
        object.__setattr__(self, "ops", tuple(self.ops))

    def op(self, name):
        for op in self.ops:
            if op.name == name:
                return op
        raise SpecError(f"vector.ops: op {name!r} is not supported (supported: "
                        f"{', '.join(op.name for op in self.ops)})")

    def supports(self, name):
        return any(op.name == name for op in self.ops)

    def op_actions(self, name, acc_bits=32):
        """Energy-bearing actions of one element of op ``name`` on one lane (named like PE actions)."""
        bits = self.bits
        names = {"mac": (f"mul_int{bits}", f"add_int{acc_bits}"), "add": (f"add_int{acc_bits}",),
                 "mul": (f"mul_int{bits}",), "max": (f"add_int{bits}",), "div": (f"div_int{bits}",),
                 "shift": (f"shift_int{bits}",), "lut": (f"lut_read_int{bits}",)}
        actions = {}
        for primitive, count in self.op(name).primitives.items():
            for action in names[primitive]:
                actions[action] = actions.get(action, 0) + count
        return actions


@dataclass(frozen=True)
class MemorySpec:
    """Memories. Units: words of ``word_bits`` bits, KiB, bits, GB/s (10^9 bytes per second)."""

    rf_words_per_pe: int
    glb_kib: int
    glb_banks: int = 1
    glb_port_bits: int = 64
    dram_gbps: float = 16.0
    word_bits: int = 16

    def __post_init__(self):
        _positive_int("rf_words_per_pe", self.rf_words_per_pe)
        _positive_int("glb_kib", self.glb_kib)
        _positive_int("glb_banks", self.glb_banks)
        _positive_int("glb_port_bits", self.glb_port_bits)
        _positive_number("dram_gbps", self.dram_gbps)
        _positive_int("word_bits", self.word_bits)
        if self.glb_kib * 1024 % self.glb_banks:
            _fail("glb_banks", f"must divide the global buffer ({self.glb_kib} KiB) evenly, not {self.glb_banks!r}")

    @property
    def glb_bytes(self):
        return self.glb_kib * 1024

    @property
    def glb_bank_bytes(self):
        return self.glb_bytes // self.glb_banks


@dataclass(frozen=True)
class Architecture:
    """One accelerator: a 2D array of one PE kind, an optional 1D array, memories, clock, energy table."""

    name: str
    array: ArraySpec
    pe: PESpec
    memory: MemorySpec
    vector: Optional[VectorSpec] = None
    clock_mhz: float = 1000.0
    energy_table: str = "horowitz45"
    description: str = ""

    def __post_init__(self):
        _name("name", self.name)
        for name, kind in (("array", ArraySpec), ("pe", PESpec), ("memory", MemorySpec)):
            if not isinstance(getattr(self, name), kind):
                _fail(name, f"must be a {kind.__name__}, not {getattr(self, name)!r}")
        if self.vector is not None and not isinstance(self.vector, VectorSpec):
            _fail("vector", f"must be a VectorSpec or None, not {self.vector!r}")
        _positive_number("clock_mhz", self.clock_mhz)
        _name("energy_table", self.energy_table)
        if not isinstance(self.description, str):
            _fail("description", f"must be a string, not {self.description!r}")

    # --- conveniences used by the mapper and the simulator
    @property
    def clock_hz(self):
        return self.clock_mhz * 1e6

    @property
    def dram_bytes_per_cycle(self):
        return self.memory.dram_gbps * 1e9 / self.clock_hz

    def pe_params(self, weight_format=None):
        """The PE params object for ``weight_format`` (default: the first supported format)."""
        if weight_format is not None and weight_format not in self.pe.weight_formats:
            raise SpecError(f"pe.weight_formats: {weight_format!r} is not supported by {self.name} "
                            f"(supported: {', '.join(self.pe.weight_formats)})")
        return self.pe.params(weight_format)

    def to_dict(self):
        pe = {"kind": self.pe.kind, "act_format": self.pe.act_format,
              "weight_formats": list(self.pe.weight_formats), "acc_bits": self.pe.acc_bits}
        for name in ("lanes", "group_size", "lut_k", "scale_bits"):
            if getattr(self.pe, name) is not None:
                pe[name] = getattr(self.pe, name)
        if self.pe.options:
            pe["options"] = dict(self.pe.options)
        out = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out.update({
            "clock_mhz": self.clock_mhz,
            "energy_table": self.energy_table,
            "array": {"rows": self.array.rows, "cols": self.array.cols, "dataflow": self.array.dataflow},
            "pe": pe,
        })
        if self.vector is not None:
            ops = {}
            for op in self.vector.ops:
                entry = dict(op.primitives)
                if op.cycles != sum(op.primitives.values()):
                    entry["cycles"] = op.cycles
                ops[op.name] = entry
            out["vector"] = {"lanes": self.vector.lanes, "bits": self.vector.bits,
                             "rf_words": self.vector.rf_words, "ops": ops}
        memory = self.memory
        out["memory"] = {"rf_words_per_pe": memory.rf_words_per_pe, "word_bits": memory.word_bits,
                         "glb_kib": memory.glb_kib, "glb_banks": memory.glb_banks,
                         "glb_port_bits": memory.glb_port_bits, "dram_gbps": memory.dram_gbps}
        return out

    def to_yaml(self):
        """YAML text that :func:`load_architecture` turns back into an equal object."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


# --- loading ----------------------------------------------------------------------------------

_SECTIONS = {
    "top": ("name", "description", "clock_mhz", "energy_table", "array", "pe", "vector", "memory"),
    "array": tuple(f.name for f in fields(ArraySpec)),
    "pe": tuple(f.name for f in fields(PESpec)),
    "vector": ("lanes", "bits", "rf_words", "ops"),
    "memory": tuple(f.name for f in fields(MemorySpec)),
}
_REQUIRED = {"top": ("name", "array", "pe", "memory"), "array": ("rows", "cols"), "pe": ("kind",),
             "vector": ("lanes", "ops"), "memory": ("rf_words_per_pe", "glb_kib")}


def _section(data, section, prefix):
    if not isinstance(data, dict):
        _fail(prefix or "document", f"must be a mapping, not {data!r}")
    known = _SECTIONS[section]
    for key in data:
        if key not in known:
            _fail(f"{prefix}{key}", f"unknown field (expected one of {', '.join(known)})")
    for key in _REQUIRED[section]:
        if key not in data:
            _fail(f"{prefix}{key}", "missing")
    return data


def _build(prefix, constructor, **kwargs):
    try:
        return constructor(**kwargs)
    except SpecError as error:
        raise _prefixed(prefix, error) from None


def architecture_from_dict(data):
    """Build an :class:`Architecture` from parsed YAML (errors name the field, not the file)."""
    _section(data, "top", "")
    array = _build("array", ArraySpec, **_section(data["array"], "array", "array."))
    pe = _build("pe", PESpec, **_section(data["pe"], "pe", "pe."))
    vector = None
    if data.get("vector") is not None:
        section = _section(data["vector"], "vector", "vector.")
        ops = section["ops"]
        if not isinstance(ops, dict) or not ops:
            _fail("vector.ops", f"must map op names to primitive counts, not {ops!r}")
        op_list = []
        for name, entry in ops.items():
            if not isinstance(entry, dict):
                _fail(f"vector.ops.{name}", f"must map primitives to counts, not {entry!r}")
            entry = dict(entry)
            cycles = entry.pop("cycles", None)
            op_list.append(_build("vector.ops", VectorOp, name=name, primitives=entry, cycles=cycles))
        vector = _build("vector", VectorSpec, **{**section, "ops": tuple(op_list)})
    memory = _build("memory", MemorySpec, **_section(data["memory"], "memory", "memory."))
    top = {key: data[key] for key in ("name", "description", "clock_mhz", "energy_table") if key in data}
    return Architecture(array=array, pe=pe, vector=vector, memory=memory, **top)


def preset_path(name):
    """The YAML file of preset ``name``."""
    if name not in PRESETS:
        raise SpecError(f"architecture preset must be one of {', '.join(PRESETS)}, not {name!r}")
    return _PRESET_DIR / f"{name}.yaml"


def load_architecture(source):
    """Load an :class:`Architecture` from a preset name, a YAML file path, or YAML text.

    Errors are :class:`SpecError` naming the file, the field and the value.
    """
    if isinstance(source, Architecture):
        return source
    if isinstance(source, str) and source in PRESETS:
        path = preset_path(source)
        label, text = path.name, path.read_text()
    elif isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                      and (source.endswith((".yaml", ".yml")) or Path(source).exists())):
        path = Path(source)
        if not path.is_file():
            raise SpecError(f"{path}: no such architecture file (presets: {', '.join(PRESETS)})")
        label, text = str(path), path.read_text()
    elif isinstance(source, str):
        label, text = "<string>", source
    else:
        raise SpecError(f"architecture must be a preset name, a path or YAML text, not {source!r}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise SpecError(f"{label}{where}: {problem}") from None
    try:
        return architecture_from_dict(data)
    except SpecError as error:
        raise SpecError(f"{label}: {error}") from None
