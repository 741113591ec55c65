"""Energy reference tables (ERTs): the price in pJ of every energy-bearing action.

The hardware cost views name their actions ``<op>_<type><bits>`` (``mul_int8``, ``add_int32``,
``shift_int32``, ``lut_read_int8``, ``reg_write_int32``, ...; see :mod:`hw.pe.base`); memories add
``dram_read_bit`` / ``dram_write_bit`` (per bit), ``glb_read`` / ``glb_write`` (per access of one
GLB port width) and ``rf_read`` / ``rf_write`` (per register-file word). Both the simulator and the
mapper price action counts with :meth:`EnergyTable.energy`, so they agree by construction.

Built-in tables (``hw/energy_tables/<name>.yaml``, documented in ``docs/energy.md``):

* ``horowitz45`` (default): Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm;
* ``fusemax45``: a FuseMax-like 45 nm table (MICRO 2024 artifact: a 16-bit MAC costs 17 pJ).

Pricing rules, in order: an exact entry; else, for ``<op>_<type><bits>``, log-log interpolation
between the table's entries of the same op and type (extrapolating along the nearest segment, or
along the op's ``exponent`` from a single entry); else a per-bit price of the op. SRAM accesses
follow a CACTI-like rule anchored at a 32-bit read of an 8 KB SRAM::

    E(capacity, width) = E_anchor * (width / anchor_bits) * (capacity / anchor_bytes) ** capacity_exponent

with ``capacity_exponent = 0.5`` (energy grows with the bit-line and word-line length, i.e. the
square root of the capacity). Users may load their own table (same YAML schema) or import an
Accelergy ERT (:func:`import_accelergy`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import yaml

from dataflow.errors import SpecError

__all__ = ["EnergyTable", "SramModel", "BUILTIN_TABLES", "load_energy_table", "table_from_dict",
           "import_accelergy", "parse_action", "MEMORY_ACTIONS"]

BUILTIN_TABLES = ("horowitz45", "fusemax45")
_TABLE_DIR = Path(__file__).parent / "energy_tables"

MEMORY_ACTIONS = ("dram_read_bit", "dram_write_bit", "glb_read", "glb_write", "rf_read", "rf_write")
"""Memory actions the simulator and mapper count; GLB/RF ones need the memory's size and width."""

_ACTION_RE = re.compile(r"^(?P<op>[a-z][a-z0-9_]*?)_(?P<type>int|uint|fp|bf)(?P<bits>\d+)$")


def parse_action(name):
    """``"mul_int8"`` -> ``("mul", "int", 8)``; ``None`` when the name has no ``_<type><bits>`` suffix."""
    m = _ACTION_RE.match(name)
    if not m:
        return None
    return m.group("op"), m.group("type"), int(m.group("bits"))


def _number(where, value, positive=True):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise SpecError(f"{where}: must be a {'positive' if positive else 'non-negative'} number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class SramModel:
    """CACTI-like SRAM access energy: ``read_pj`` / ``write_pj`` for an ``anchor_bits``-wide access
    of an ``anchor_bytes`` SRAM, scaled linearly in width and by ``capacity ** capacity_exponent``."""

    read_pj: float = 5.0
    write_pj: float = 5.0
    anchor_bytes: int = 8192
    anchor_bits: int = 32
    capacity_exponent: float = 0.5

    def access_pj(self, kind, capacity_bytes, width_bits):
        base = self.read_pj if kind == "read" else self.write_pj
        return base * (width_bits / self.anchor_bits) * (capacity_bytes / self.anchor_bytes) ** self.capacity_exponent


@dataclass(frozen=True)
class EnergyTable:
    """A named energy reference table.

    ``actions``: exact prices (pJ per action); ``exponents``: op -> exponent of the bits scaling used
    when only one entry of that op and type exists; ``per_bit``: op -> pJ per bit for ops priced by
    width (``lut_read``, ``reg_write``, ...); ``sram``: the SRAM model (GLB and register files);
    ``dram_pj_per_bit``: DRAM read/write energy per bit.
    """

    name: str
    actions: Mapping[str, float]
    exponents: Mapping[str, float] = field(default_factory=dict)
    per_bit: Mapping[str, float] = field(default_factory=dict)
    sram: SramModel = field(default_factory=SramModel)
    dram_read_pj_per_bit: float = 20.0
    dram_write_pj_per_bit: float = 20.0
    description: str = ""
    source: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "actions", MappingProxyType(dict(self.actions)))
        object.__setattr__(self, "exponents", MappingProxyType(dict(self.exponents)))
        object.__setattr__(self, "per_bit", MappingProxyType(dict(self.per_bit)))

    def price(self, action, *, capacity_bytes=None, width_bits=None):
        """pJ of one ``action``. GLB / RF actions need the memory's ``capacity_bytes`` and the access
        ``width_bits``. Raises :class:`SpecError` when the table cannot price the action."""
        if action in self.actions:
            return self.actions[action]
        if action == "dram_read_bit":
            return self.dram_read_pj_per_bit
        if action == "dram_write_bit":
            return self.dram_write_pj_per_bit
        if action in ("glb_read", "glb_write", "rf_read", "rf_write"):
            if capacity_bytes is None or width_bits is None:
                raise SpecError(f"energy table {self.name}: {action} needs the memory's capacity and width")
            return self.sram.access_pj(action.split("_")[1], max(capacity_bytes, 1), width_bits)
        parsed = parse_action(action)
        if parsed is None:
            raise SpecError(f"energy table {self.name}: no price for action {action!r}")
        op, typ, bits = parsed
        for t in (typ, "int" if typ == "uint" else None, "fp" if typ == "bf" else None):
            if t is None:
                continue
            anchors = sorted((b, v) for (o, tt, b), v in self._parsed().items() if o == op and tt == t)
            if len(anchors) >= 2:
                return _loglog(anchors, bits)
            if len(anchors) == 1 and op in self.exponents:
                b0, v0 = anchors[0]
                return v0 * (bits / b0) ** self.exponents[op]
        if op in self.per_bit:
            return self.per_bit[op] * bits
        raise SpecError(f"energy table {self.name}: no price for action {action!r} "
                        f"(no entry, no {op}_{typ}<bits> anchors, no per-bit price for {op!r})")

    def _parsed(self):
        out = {}
        for name, value in self.actions.items():
            p = parse_action(name)
            if p is not None:
                out[p] = value
        return out

    def energy(self, counts, memories=None):
        """Energy in pJ of ``counts`` (action -> count): a dict action -> pJ.

        ``memories`` maps the memory actions ``glb_read`` etc. to ``(capacity_bytes, width_bits)``.
        """
        memories = memories or {}
        out = {}
        for action, count in counts.items():
            if not count:
                continue
            cap, width = memories.get(action, (None, None))
            out[action] = count * self.price(action, capacity_bytes=cap, width_bits=width)
        return out

    def to_dict(self):
        return {
            "name": self.name, "description": self.description,
            "actions": dict(self.actions), "exponents": dict(self.exponents), "per_bit": dict(self.per_bit),
            "sram": {"read_pj": self.sram.read_pj, "write_pj": self.sram.write_pj,
                     "anchor_bytes": self.sram.anchor_bytes, "anchor_bits": self.sram.anchor_bits,
                     "capacity_exponent": self.sram.capacity_exponent},
            "dram": {"read_pj_per_bit": self.dram_read_pj_per_bit, "write_pj_per_bit": self.dram_write_pj_per_bit},
        }


def _loglog(anchors, bits):
    """Piecewise log-log interpolation through ``(bits, pJ)`` anchors, extrapolating the end segments."""
    if bits <= anchors[0][0]:
        (b0, v0), (b1, v1) = anchors[0], anchors[1]
    elif bits >= anchors[-1][0]:
        (b0, v0), (b1, v1) = anchors[-2], anchors[-1]
    else:
        i = next(i for i in range(len(anchors) - 1) if anchors[i][0] <= bits <= anchors[i + 1][0])
        (b0, v0), (b1, v1) = anchors[i], anchors[i + 1]
    if b0 == bits:
        return v0
    slope = math.log(v1 / v0) / math.log(b1 / b0)
    return v0 * (bits / b0) ** slope


_KEYS = ("name", "description", "actions", "exponents", "per_bit", "sram", "dram")


def table_from_dict(data, source=None):
    """Build an :class:`EnergyTable` from parsed YAML (an einsynth ERT or an Accelergy ERT)."""
    label = source or "energy table"
    if isinstance(data, dict) and "ERT" in data:
        return _accelergy_from_dict(data, source, rename=data.get("einsynth_actions") or {})
    if not isinstance(data, dict):
        raise SpecError(f"{label}: must be a mapping with 'name' and 'actions', not {data!r}")
    for key in data:
        if key not in _KEYS:
            raise SpecError(f"{label}: {key}: unknown field (expected one of {', '.join(_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{label}: name: must be a non-empty string, not {name!r}")
    actions = data.get("actions") or {}
    if not isinstance(actions, dict):
        raise SpecError(f"{label}: actions: must map action names to pJ, not {actions!r}")
    actions = {str(k): _number(f"{label}: actions.{k}", v, positive=False) for k, v in actions.items()}
    exponents = {str(k): _number(f"{label}: exponents.{k}", v) for k, v in (data.get("exponents") or {}).items()}
    per_bit = {str(k): _number(f"{label}: per_bit.{k}", v, positive=False) for k, v in (data.get("per_bit") or {}).items()}
    sram_raw = data.get("sram") or {}
    sram_keys = ("read_pj", "write_pj", "anchor_bytes", "anchor_bits", "capacity_exponent")
    for k in sram_raw:
        if k not in sram_keys:
            raise SpecError(f"{label}: sram.{k}: unknown field (expected one of {', '.join(sram_keys)})")
    sram = SramModel(**{k: _number(f"{label}: sram.{k}", v, positive=k != "capacity_exponent") for k, v in sram_raw.items()})
    dram = data.get("dram") or {}
    for k in dram:
        if k not in ("read_pj_per_bit", "write_pj_per_bit"):
            raise SpecError(f"{label}: dram.{k}: unknown field (expected read_pj_per_bit, write_pj_per_bit)")
    return EnergyTable(
        name=name, actions=actions, exponents=exponents, per_bit=per_bit, sram=sram,
        dram_read_pj_per_bit=_number(f"{label}: dram.read_pj_per_bit", dram.get("read_pj_per_bit", 20.0), False),
        dram_write_pj_per_bit=_number(f"{label}: dram.write_pj_per_bit", dram.get("write_pj_per_bit", 20.0), False),
        description=str(data.get("description") or ""), source=source)


def load_energy_table(source="horowitz45"):
    """An :class:`EnergyTable` from a built-in name, a YAML file path, or an :class:`EnergyTable`."""
    if isinstance(source, EnergyTable):
        return source
    if isinstance(source, str) and source in BUILTIN_TABLES:
        path = _TABLE_DIR / f"{source}.yaml"
    else:
        path = Path(source)
        if not path.is_file():
            raise SpecError(f"energy_table: must be one of {', '.join(BUILTIN_TABLES)} or a YAML file, "
                            f"not {str(source)!r}")
    stat = path.stat()
    return _load_table_file(str(path), source in BUILTIN_TABLES, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _load_table_file(path, builtin, mtime_ns, size):
    """Parse a table file (cached per file version: tables are immutable)."""
    path = Path(path)
    source = path.stem if builtin else str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path.name if source in BUILTIN_TABLES else path}{line}: invalid YAML") from None
    return table_from_dict(data, source=path.name if source in BUILTIN_TABLES else str(path))


def import_accelergy(path, rename=None, name=None, base="horowitz45"):
    """Import an Accelergy ERT (``ERT: {version, tables: [{name, actions: [{name, energy}]}]}``).

    Every entry becomes the action ``<component>.<action>`` where ``<component>`` is the last part
    of the table name without its ``[..]`` range (``system.PE[0..255].mac`` -> ``mac``). ``rename``
    maps those names to einsynth action names (``{"mac.mac_random": "mac_int16"}``); a MAC entry
    renamed to ``mac_<type><bits>`` prices ``mul_<type><bits>`` and ``add_<type><bits>`` as 2/3 and 1/3
    of it. Actions the file does not give fall back to the ``base`` table's rules.
    """
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise SpecError(f"{path}: invalid YAML") from None
    table = _accelergy_from_dict(data, str(path), rename or {}, base=base)
    if name:
        table = EnergyTable(**{**table.__dict__, "name": name})
    return table


def _accelergy_from_dict(data, source, rename, base="horowitz45"):
    label = source or "accelergy ERT"
    ert = data.get("ERT") if isinstance(data, dict) else None
    if not isinstance(ert, dict) or "tables" not in ert:
        raise SpecError(f"{label}: ERT: must hold 'tables' (an Accelergy ERT), not {ert!r}")
    tables = ert["tables"]
    entries = {}
    if isinstance(tables, dict):  # Accelergy 0.2: {component: {action: energy or [{energy}]}}
        tables = [{"name": k, "actions": [{"name": a, "energy": v} for a, v in (acts or {}).items()]}
                  for k, acts in tables.items()]
    if not isinstance(tables, list):
        raise SpecError(f"{label}: ERT.tables: must be a list of components, not {tables!r}")
    for i, comp in enumerate(tables):
        if not isinstance(comp, dict) or "name" not in comp:
            raise SpecError(f"{label}: ERT.tables[{i}]: must have a name and actions, not {comp!r}")
        leaf = re.sub(r"\[.*?\]", "", str(comp["name"]).split(".")[-1])
        for j, act in enumerate(comp.get("actions") or []):
            energy = act.get("energy") if isinstance(act, dict) else None
            if isinstance(energy, list) and energy:
                energy = energy[0].get("energy") if isinstance(energy[0], dict) else energy[0]
            energy = _number(f"{label}: ERT.tables[{i}].actions[{j}].energy", energy, positive=False)
            entries[f"{leaf}.{act.get('name')}"] = energy
    actions = {}
    for key, energy in entries.items():
        target = rename.get(key, key)
        parsed = parse_action(target)
        if parsed and parsed[0] == "mac":
            _, typ, bits = parsed
            actions[f"mul_{typ}{bits}"] = energy * 2 / 3
            actions[f"add_{typ}{bits}"] = energy / 3
        actions[target] = energy
    fallback = load_energy_table(base)
    merged = {**fallback.actions, **actions}
    return EnergyTable(name=f"accelergy:{Path(source).stem if source else 'ert'}", actions=merged,
                       exponents=fallback.exponents, per_bit=fallback.per_bit, sram=fallback.sram,
                       dram_read_pj_per_bit=fallback.dram_read_pj_per_bit,
                       dram_write_pj_per_bit=fallback.dram_write_pj_per_bit,
                       description=f"imported from Accelergy ERT {source}; other actions from {base}",
                       source=source)
