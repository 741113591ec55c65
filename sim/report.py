"""The simulation Report: cycles, utilization, accesses, DRAM bytes, energy and stall breakdowns."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

__all__ = ["Report", "EnergyBreakdown", "GroupReport"]


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy in pJ by component and by action (``components[c][a]``); ``table``: the ERT used."""

    table: str
    components: Mapping[str, Mapping[str, float]]

    @property
    def by_component(self):
        return {c: math.fsum(a.values()) for c, a in self.components.items()}

    @property
    def by_action(self):
        out = {}
        for acts in self.components.values():
            for a, v in acts.items():
                out[a] = out.get(a, 0.0) + v
        return out

    @property
    def total(self):
        return math.fsum(v for acts in self.components.values() for v in acts.values())

    def to_dict(self):
        return {"total": self.total, "table": self.table, "by_component": self.by_component,
                "by_action": self.by_action,
                "by_component_action": {c: dict(a) for c, a in self.components.items()}}


@dataclass(frozen=True)
class GroupReport:
    einsums: tuple
    cycles: int
    stalls: Mapping[str, int]

    def to_dict(self):
        return {"einsums": list(self.einsums), "cycles": self.cycles, "stalls": dict(self.stalls)}


@dataclass(frozen=True)
class Report:
    """The result of :func:`sim.run_sim`. ``utilization[unit]``: useful PE-cycles / (PEs x cycles)
    (``dram``: busy fraction of the channel); ``busy[unit]``: cycles the unit is occupied;
    ``stalls``: cycles by cause (dram_bandwidth, bank_conflict, dependency)."""

    cascade: str
    arch: str
    cycles: int
    clock_mhz: float
    utilization: Mapping[str, float]
    busy: Mapping[str, int]
    accesses: Mapping[str, Mapping[str, int]]
    dram_read_bytes: int
    dram_write_bytes: int
    energy: EnergyBreakdown
    stalls: Mapping[str, int]
    ops: Mapping[str, Mapping[str, int]]
    actions: Mapping[str, Mapping[str, int]]
    einsums: Mapping[str, Mapping[str, object]]
    groups: tuple
    mapping: object = field(default=None, compare=False)
    compulsory_bytes: int = 0

    @property
    def dram_bytes(self):
        return self.dram_read_bytes + self.dram_write_bytes

    @property
    def seconds(self):
        return self.cycles / (self.clock_mhz * 1e6)

    def op_totals(self):
        """Useful operator applications by category over the whole cascade."""
        out = {}
        for cats in self.ops.values():
            for c, n in cats.items():
                out[c] = out.get(c, 0) + n
        return out

    def to_dict(self):
        return {
            "cascade": self.cascade, "arch": self.arch,
            "cycles": self.cycles, "seconds": self.seconds, "clock_mhz": self.clock_mhz,
            "utilization": dict(self.utilization), "busy_cycles": dict(self.busy),
            "energy_pj": self.energy.to_dict(), "energy_table": self.energy.table,
            "dram_bytes": self.dram_bytes,
            "dram": {"read_bytes": self.dram_read_bytes, "write_bytes": self.dram_write_bytes,
                     "compulsory_bytes": self.compulsory_bytes},
            "accesses": {k: dict(v) for k, v in self.accesses.items()},
            "stalls": dict(self.stalls),
            "ops": {k: dict(v) for k, v in self.ops.items()},
            "actions": {k: dict(v) for k, v in self.actions.items()},
            "einsums": {k: dict(v) for k, v in self.einsums.items()},
            "groups": [g.to_dict() for g in self.groups],
            "mapping": self.mapping.to_dict() if self.mapping is not None else None,
        }

    def to_json(self, indent=2):
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)

    def render_table(self):
        """A plain terminal table."""
        lines = [f"cascade {self.cascade} on {self.arch}   (energy table: {self.energy.table})"]
        rows = [("cycles", f"{self.cycles:,}"),
                ("time", f"{self.seconds * 1e6:,.2f} us at {self.clock_mhz:g} MHz")]
        for u, v in self.utilization.items():
            rows.append((f"utilization {u}", f"{100 * v:.1f} %"))
        rows.append(("DRAM bytes", f"{self.dram_bytes:,} (read {self.dram_read_bytes:,}, write "
                                   f"{self.dram_write_bytes:,}; compulsory {self.compulsory_bytes:,})"))
        for level, acc in self.accesses.items():
            rows.append((f"accesses {level}", ", ".join(f"{k} {v:,}" for k, v in acc.items())))
        for cause, n in self.stalls.items():
            rows.append((f"stall {cause}", f"{n:,} cycles"))
        rows.append(("energy total", f"{self.energy.total / 1e6:,.3f} uJ"))
        for c, v in sorted(self.energy.by_component.items(), key=lambda kv: -kv[1]):
            rows.append((f"  energy {c}", f"{v / 1e6:,.3f} uJ ({100 * v / max(self.energy.total, 1e-30):.1f} %)"))
        width = max(len(k) for k, _ in rows)
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        lines.append("")
        head = f"  {'einsum':<10} {'unit':<7} {'busy cycles':>14} {'tile ops':>10}"
        lines.append(head)
        for name, info in self.einsums.items():
            lines.append(f"  {name:<10} {info['unit']:<7} {info['busy_cycles']:>14,} {info['tile_ops']:>10,}")
        return "\n".join(lines)


def _json_default(obj):
    if isinstance(obj, MappingProxyType):
        return dict(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {obj!r}")
