"""``run_sim(cascade, arch, mapping)``: simulate a mapped cascade and build its :class:`Report`.

Time advances in cycles; the resources are the DRAM channel, the 2D array, the 1D array and the
GLB ports. The engine (:mod:`sim.engine`) works per tile class in closed form; energy is action
counts priced by the architecture's energy reference table (:mod:`hw.energy`).
"""
from __future__ import annotations

import math

from dataflow.analysis import compulsory_bytes
from sim.engine import UNIT_NAMES, make_context, simulate_group
from sim.report import EnergyBreakdown, GroupReport, Report

__all__ = ["run_sim", "simulate"]


def run_sim(cascade, arch, mapping=None, energy_table=None):
    """Simulate ``cascade`` on ``arch`` under ``mapping`` (default: :func:`mapper.default_mapping`).

    ``arch`` may be an :class:`hw.spec.Architecture`, a preset name or a YAML path; ``mapping`` a
    :class:`mapper.mapping.Mapping` or a YAML path/text; ``energy_table`` overrides the
    architecture's table (a built-in name, a YAML path or an :class:`hw.energy.EnergyTable`).
    Raises :class:`dataflow.errors.MappingError` for an invalid mapping.
    """
    from hw.energy import load_energy_table
    from hw.spec import load_architecture
    from mapper.mapping import Mapping, default_mapping, load_mapping

    arch = load_architecture(arch)
    if mapping is None:
        mapping = default_mapping(cascade, arch)
    elif not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    mapping.validate(cascade, arch)
    table = load_energy_table(energy_table or arch.energy_table)
    groups = mapping.groups(cascade)
    ctx = make_context(cascade, arch, mapping, groups)
    results = [simulate_group(ctx, i, g) for i, g in enumerate(groups)]
    return _report(cascade, arch, mapping, table, ctx, results)


simulate = run_sim


def _sum(results, key):
    out = {}
    for r in results:
        for k, v in r.totals.get(key, {}).items():
            out[k] = out.get(k, 0) + v
    return out


def _report(cascade, arch, mapping, table, ctx, results):
    cycles = sum(r.cycles for r in results)
    busy = {u: 0 for u in UNIT_NAMES}
    useful = {u: 0 for u in UNIT_NAMES}
    for r in results:
        for u, v in r.totals.get("busy", {}).items():
            busy[u] += v
        for u, v in r.totals.get("useful_cycles", {}).items():
            useful[u] += v
    dram_read = sum(r.totals.get("dram_read_bytes", 0) for r in results)
    dram_write = sum(r.totals.get("dram_write_bytes", 0) for r in results)
    dram_busy = sum(r.totals.get("dram_busy", 0) for r in results)
    glb_read = -(-sum(r.totals.get("glb_read_bits", 0) for r in results) // 8)   # whole bytes
    glb_write = -(-sum(r.totals.get("glb_write_bits", 0) for r in results) // 8)

    pes = {"array": arch.array.rows * arch.array.cols, "vector": arch.vector.lanes if arch.vector else 0}
    utilization = {}
    for u in UNIT_NAMES:
        if pes[u]:
            utilization[u] = useful[u] / (pes[u] * cycles) if cycles else 0.0
    utilization["dram"] = dram_busy / cycles if cycles else 0.0
    busy["dram"] = dram_busy

    stalls = {"dram_bandwidth": 0, "bank_conflict": 0, "dependency": 0}
    groups = []
    for r in results:
        bc = r.totals.get("busy_compute", {})
        top = max(bc.values(), default=0)
        g = {"dram_bandwidth": r.cycles - r.cycles_no_dram_stall,
             "bank_conflict": r.cycles_no_dram_stall - r.cycles_no_glb_stall,
             "dependency": max(0, r.cycles_no_glb_stall - top)}
        for k, v in g.items():
            stalls[k] += v
        groups.append(GroupReport(r.einsums, r.cycles, g))

    # memory accesses: GLB traffic of the slices plus the DMA's fills (DRAM reads) and drains
    port = arch.memory.glb_port_bits
    glb_reads = math.ceil((glb_read + dram_write) * 8 / port)
    glb_writes = math.ceil((glb_write + dram_read) * 8 / port)
    rf_reads = _sum(results, "rf_reads")
    rf_writes = _sum(results, "rf_writes")
    accesses = {
        "dram": {"read_bytes": dram_read, "write_bytes": dram_write},
        "glb": {"read_bytes": glb_read + dram_write, "write_bytes": glb_write + dram_read,
                "reads": glb_reads, "writes": glb_writes},
        "rf": {"reads": sum(rf_reads.values()), "writes": sum(rf_writes.values())},
    }

    # energy: compute actions per unit, memory actions per memory
    actions = {}
    for r in results:
        for unit, acts in r.totals.get("actions", {}).items():
            d = actions.setdefault(unit, {})
            for a, n in acts.items():
                d[a] = d.get(a, 0) + n
    actions["glb"] = {"glb_read": glb_reads, "glb_write": glb_writes}
    actions["dram"] = {"dram_read_bit": dram_read * 8, "dram_write_bit": dram_write * 8}
    glb_mem = (arch.memory.glb_bank_bytes, port)
    components = {}
    for unit in UNIT_NAMES:
        if unit in actions:
            components[unit] = table.energy(actions[unit])
        rf_mem = ((arch.vector.rf_words * arch.vector.bits // 8, arch.vector.bits) if unit == "vector" and arch.vector
                  else (arch.memory.rf_words_per_pe * arch.memory.word_bits // 8, arch.memory.word_bits))
        counts = {"rf_read": rf_reads.get(unit, 0), "rf_write": rf_writes.get(unit, 0)}
        if any(counts.values()):
            actions[f"{unit}_rf"] = counts
            components[f"{unit}_rf"] = table.energy(counts, {"rf_read": rf_mem, "rf_write": rf_mem})
    components["glb"] = table.energy(actions["glb"], {"glb_read": glb_mem, "glb_write": glb_mem})
    components["dram"] = table.energy(actions["dram"])
    energy = EnergyBreakdown(table.name, {c: dict(v) for c, v in components.items() if v})

    ops = {}
    for r in results:
        for name, cats in r.totals.get("ops", {}).items():
            d = ops.setdefault(name, {})
            for c, n in cats.items():
                d[c] = d.get(c, 0) + n
    einsum_cycles = _sum(results, "einsum_cycles")
    tile_ops = _sum(results, "tile_ops")
    einsums = {}
    for e in cascade.einsums:
        em = mapping.einsums[e.name]
        einsums[e.name] = {"unit": em.unit, "kind": ctx.plans[e.name].view.kind,
                           "busy_cycles": einsum_cycles.get(e.name, 0), "tile_ops": tile_ops.get(e.name, 0),
                           "ops": ops.get(e.name, {})}
    return Report(cascade=cascade.name, arch=arch.name, cycles=cycles, clock_mhz=arch.clock_mhz,
                  utilization=utilization, busy=busy, accesses=accesses, dram_read_bytes=dram_read,
                  dram_write_bytes=dram_write, energy=energy, stalls=stalls, ops=ops, actions=actions,
                  einsums=einsums, groups=tuple(groups), mapping=mapping,
                  compulsory_bytes=compulsory_bytes(cascade))
