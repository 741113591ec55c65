"""ZigZag side by side (issue 5): the ILP mapper against ZigZag's LOMA on the SCALE-Sim bench GEMMs.

Run:  .venv/bin/python bench/zigzag_compare.py [--quick] [--out bench/results/zigzag.md]

ZigZag (``zigzag-dse``, which imports ``six`` without declaring it) lives in its own virtual
environment ``.bench_venvs/zigzag``, created here on first use with pip. Both tools map the same
GEMMs (``Z[m,n] = A[m,k] B[k,n]``, int8 operands, int32 outputs) onto the same machine: a 32 x 32
weight-stationary int8 MAC array (rows = reduction, cols = output columns), a 192 KiB global buffer
with 768 bits/cycle of ports, 10 B/cycle of DRAM, 1 GHz, and the same per-access energies (a MAC
0.3 pJ = Horowitz int8 mul + int32 add, a 256-bit GLB access 113 pJ = Horowitz's 8 KB SRAM scaled to
a 64 KiB bank, DRAM 20 pJ/bit; register files free, as einsynth's GEMM PEs price none).

Each tool minimizes latency. Every mapping is priced by both models where it can be expressed:

* einsynth's ILP mapping in einsynth's simulator, and in ZigZag's cost model (the ILP's spatial
  unrolling and loop order given to ZigZag as a fixed ``temporal_ordering``; ZigZag's allocator then
  places the loops in its memories itself);
* ZigZag's best (LOMA) mapping in ZigZag's model, and translated into an einsynth ``Mapping``
  (:func:`zigzag_to_einsynth`) and run in einsynth's simulator;
* ZigZag searched again with half the GLB (96 KiB): einsynth reserves two copies of every GLB tile
  (double buffering), ZigZag's allocator one (its ``force_double_buffering`` memory option would
  still keep one copy of a tensor held whole), so ZigZag's tiles under 96 KiB are exactly what fits
  einsynth's 192 KiB; that mapping is the like-for-like one for the mapper comparison in einsynth's
  simulator.

The DRAM roofline is ``max(MACs / PEs, compulsory DRAM bytes / DRAM bytes per cycle)``.
Time-to-solution is the mapping call alone (ZigZag: ``get_hardware_performance_zigzag`` with the
192 KiB GLB; einsynth: ``map_cascade``), imports excluded, in wall time and in CPU time (the process
and its children: CBC runs as one), the fastest of ``--repeat`` calls (3) of each tool.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataflow import load_cascade  # noqa: E402
from dataflow.analysis import compulsory_bytes  # noqa: E402
from dataflow.errors import EinsynthError  # noqa: E402
from hw.spec import architecture_from_dict  # noqa: E402
from mapper.api import map_cascade  # noqa: E402
from mapper.mapping import Mapping  # noqa: E402
from sim import run_sim  # noqa: E402
from bench.scalesim_compare import SHAPES  # noqa: E402  (the same GEMMs as the SCALE-Sim bench)

QUICK = ["square-256", "odd-100x70x300"]
VENV = ROOT / ".bench_venvs" / "zigzag"
GLB_KIB = 192

ZIGZAG_HW_TEMPLATE = """name: ws32
memories:
  rf_w:
    size: 8
    r_cost: 0.0
    w_cost: 0.0
    area: 0
    latency: 1
    operands: [I2]
    ports:
      - name: r_port_1
        type: read
        bandwidth_min: 8
        bandwidth_max: 8
        allocation:
          - I2, tl
      - name: w_port_1
        type: write
        bandwidth_min: 8
        bandwidth_max: 8
        allocation:
          - I2, fh
    served_dimensions: []
  rf_o:
    size: 32
    r_cost: 0.0
    w_cost: 0.0
    area: 0
    latency: 1
    operands: [O]
    ports:
      - name: r_port_1
        type: read
        bandwidth_min: 32
        bandwidth_max: 32
        allocation:
          - O, tl
      - name: r_port_2
        type: read
        bandwidth_min: 32
        bandwidth_max: 32
        allocation:
          - O, th
      - name: w_port_1
        type: write
        bandwidth_min: 32
        bandwidth_max: 32
        allocation:
          - O, fh
      - name: w_port_2
        type: write
        bandwidth_min: 32
        bandwidth_max: 32
        allocation:
          - O, fl
    served_dimensions: []
  glb:
    size: GLB_BITS
    r_cost: 113.1
    w_cost: 113.1
    area: 0
    latency: 1
    operands: [I1, I2, O]
    ports:
      - name: r_port_1
        type: read
        bandwidth_min: 256
        bandwidth_max: 768
        allocation:
          - I1, tl
          - I2, tl
          - O, tl
          - O, th
      - name: w_port_1
        type: write
        bandwidth_min: 256
        bandwidth_max: 768
        allocation:
          - I1, fh
          - I2, fh
          - O, fh
          - O, fl
    served_dimensions: [D1, D2]
  dram:
    size: 10000000000
    r_cost: 1600
    w_cost: 1600
    area: 0
    latency: 1
    operands: [I1, I2, O]
    ports:
      - name: rw_port_1
        type: read_write
        bandwidth_min: 80
        bandwidth_max: 80
        allocation:
          - I1, fh
          - I1, tl
          - I2, fh
          - I2, tl
          - O, fh
          - O, tl
          - O, fl
          - O, th
    served_dimensions: [D1, D2]
operational_array:
  unit_energy: 0.3
  unit_area: 1
  dimensions: [D1, D2]
  sizes: [32, 32]
"""

ZIGZAG_MAPPING = """- name: default
  spatial_mapping:
    D1:
      - K, 32
    D2:
      - C, 32
  memory_operand_links:
    O: O
    W: I2
    I: I1
"""
MEMORY_OPERAND_LINKS = {"O": "O", "W": "I2", "I": "I1"}

# ZigZag's GEMM (O[d][k] += I[d][c] * W[c][k]) in einsynth's names (Z[m,n] = A[m,k] * B[k,n]).
RANK_OF = {"D": "M", "C": "K", "K": "N"}
DIM_OF = {rank: dim for dim, rank in RANK_OF.items()}
TENSOR_OF = {"I": "A", "W": "B", "O": "Z"}
# Weight-stationary placement: rows <- k (ZigZag C on D2), cols <- n (ZigZag K on D1); M is temporal.
ARRAY_DIM_OF = {"C": "rows", "K": "cols"}
OA_DIM_OF = {"rows": "D2", "cols": "D1"}


def zigzag_hw(glb_kib=GLB_KIB):
    """ZigZag's accelerator YAML for the bench machine with a ``glb_kib`` KiB global buffer."""
    return ZIGZAG_HW_TEMPLATE.replace("GLB_BITS", str(glb_kib * 1024 * 8))


def architecture():
    return architecture_from_dict({
        "name": "mac-int8-32x32-ws", "clock_mhz": 1000, "energy_table": "horowitz45",
        "array": {"rows": 32, "cols": 32, "dataflow": "weight-stationary"},
        "pe": {"kind": "mac", "act_format": "int8", "weight_formats": ["int8"], "acc_bits": 32},
        "memory": {"rf_words_per_pe": 1, "word_bits": 8, "glb_kib": GLB_KIB, "glb_banks": 3, "glb_port_bits": 256,
                   "dram_gbps": 10},
    })


# --- translations (pure) -------------------------------------------------------------------------

@dataclass(frozen=True)
class Translation:
    """One tool's mapping in the other tool's format: ``mapping`` (an einsynth mapping dict, or a
    ZigZag mapping list), or ``None`` with the ``reason`` it cannot be expressed; ``notes`` say what
    the target format changed on the way."""

    mapping: object
    notes: tuple = ()
    reason: str | None = None


def merged_loops(ordering):
    """``[[dim, size], ...]`` with adjacent loops of one dim multiplied together."""
    merged = []
    for dim, size in ordering:
        if merged and merged[-1][0] == dim:
            merged[-1][1] *= size
        else:
            merged.append([dim, size])
    return merged


RELEVANT = {"I": {"D", "C"}, "W": {"C", "K"}, "O": {"D", "K"}}  # the loop dims each operand depends on


def _loops_text(loops):
    """Loops as ``M16 K8`` (adjacent loops of one rank multiplied together)."""
    return " ".join(f"{RANK_OF.get(dim, dim)}{size}" for dim, size in merged_loops(loops))


def _level(loops, level, notes):
    """Per-rank trip counts and order (outermost first) of one level's loops (given innermost first)."""
    factors, outermost = {}, {}
    runs = []
    for position, (dim, size) in enumerate(loops):
        rank = RANK_OF[dim]
        factors[rank] = factors.get(rank, 1) * size
        outermost[rank] = position
        if not runs or runs[-1] != rank:
            runs.append(rank)
    split = sorted({rank for rank in runs if runs.count(rank) > 1})
    if split:
        notes.append(f"{level} loops ({_loops_text(loops)}, innermost first) split {', '.join(split)} around "
                     f"another rank; einsynth has one loop per rank and level, so each sits at its outermost place")
    order = sorted(factors, key=lambda rank: -outermost[rank])
    return factors, order


def zigzag_to_einsynth(zigzag, sizes):
    """Translate ZigZag's best mapping (the worker's ``mapping``: ``spatial``, per-operand
    ``temporal`` loops per memory level, innermost first) of the GEMM ``sizes`` (``{"M", "N", "K"}``)
    into an einsynth mapping dict for the weight-stationary array.

    The loop nest is ZigZag's; W's register-file loops become the ``rf`` (M streamed through the
    stationary weights), the loops under the lowest GLB/DRAM boundary of any operand ``glb``, the rest
    ``dram``. Spatial factors are ZigZag's unrolling (its uneven mapping pads the last tile op, as
    einsynth does); a DRAM trip count is what einsynth's rule ``ceil(size / inner extent)`` gives.
    """
    notes = []
    spatial = {"rows": {}, "cols": {}}
    for oa_dim, unrolled in zigzag["spatial"].items():
        for dim, unroll in unrolled.items():
            if unroll <= 1:
                continue
            if dim not in ARRAY_DIM_OF:
                return Translation(None, reason=f"ZigZag unrolls {RANK_OF.get(dim, dim)} on {oa_dim}; the "
                                                f"weight-stationary array keeps M temporal (rows <- K, cols <- N)")
            spatial[ARRAY_DIM_OF[dim]][RANK_OF[dim]] = unroll
    nests = {op: [tuple(loop) for level in levels for loop in level] for op, levels in zigzag["temporal"].items()}
    nest = nests["O"]
    if any(other != nest for other in nests.values()):
        return Translation(None, reason="ZigZag's operands do not share one loop nest")
    for dim_name, factors in spatial.items():
        for rank in factors:  # ZigZag's "uneven" mapping: the last tile op of a rank may be partial
            factors[rank] = min(factors[rank], sizes[rank])

    def inner_count(op):  # loops below the operand's GLB level (its register file)
        return sum(len(level) for level in zigzag["temporal"][op][:-2])

    def glb_top(op):  # loops below the operand's top (DRAM) level
        return len(nest) - len(zigzag["temporal"][op][-1])

    rf_loops = nest[:inner_count("W")]
    if any(dim != "D" for dim, _ in rf_loops):
        return Translation(None, reason=f"W's register-file loops {_loops_text(rf_loops)} are not all M")
    if inner_count("O"):
        reduction = nest[:inner_count("O")]
        notes.append(f"ZigZag accumulates {_loops_text(reduction)} in the PE's output register; a weight-stationary "
                     f"tile op streams only M, so these are GLB-level tile ops in einsynth")
    boundary = min(glb_top(op) for op in nests)
    for op in sorted(nests):
        if glb_top(op) > boundary:
            moved = nest[boundary:glb_top(op)]
            depends = sorted({RANK_OF[dim] for dim, _ in moved if dim in RELEVANT[op]})
            effect = (f"{TENSOR_OF[op]} depends on {', '.join(depends)}: a smaller GLB tile" if depends
                      else f"{TENSOR_OF[op]} does not depend on them")
            notes.append(f"ZigZag keeps {TENSOR_OF[op]}'s GLB tile across {_loops_text(moved)}; einsynth has one "
                         f"GLB/DRAM boundary, so they are DRAM loops for {TENSOR_OF[op]} too ({effect})")
    rf = {"M": math.prod(size for _, size in rf_loops)} if rf_loops else {}
    glb, glb_order = _level(nest[len(rf_loops):boundary], "GLB", notes)
    dram, dram_order = _level(nest[boundary:], "DRAM", notes)
    for rank, size in sizes.items():
        inner = glb.get(rank, 1) * spatial["rows"].get(rank, 1) * spatial["cols"].get(rank, 1) * rf.get(rank, 1)
        need = -(-size // inner)
        if need != dram.get(rank, 1):
            notes.append(f"{rank}: DRAM trips {dram.get(rank, 1)} -> {need} (einsynth has no empty DRAM tiles)")
        dram[rank] = need
    dram = {rank: trip for rank, trip in dram.items() if trip > 1}
    dram_order = [rank for rank in dram_order if rank in dram] + [rank for rank in dram if rank not in dram_order]
    einsum = {"unit": "array", "spatial": {dim: f for dim, f in spatial.items() if f},
              "tiles": {"dram": dram, "glb": glb, "rf": rf}, "order": {"dram": dram_order, "glb": glb_order}}
    return Translation({"cascade": "gemm", "einsums": {"Z": einsum}}, tuple(notes))


def _prime_factors(n):
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def einsynth_to_zigzag(einsum_mapping, sizes):
    """Translate einsynth's mapping of the GEMM (an ``EinsumMapping`` on the weight-stationary array)
    into a ZigZag mapping with a fixed spatial unrolling and a complete ``temporal_ordering``
    (innermost first: rf, then the glb loops, then the dram loops, each trip split into primes).

    ZigZag accepts an ordering only when each dim's trips multiply to ``ceil(size / unrolling)``
    (otherwise it silently searches), so a padded einsynth tiling is reported as not expressible."""
    em = einsum_mapping
    if em.unit != "array" or em.pe_ranks or em.k_per_point != 1:
        return Translation(None, reason="not a plain GEMM on the array")
    unrolling = {}
    for dim_name, factors in em.spatial.items():
        for rank, factor in factors.items():
            if factor > 1 and ARRAY_DIM_OF.get(DIM_OF.get(rank)) != dim_name:
                return Translation(None, reason=f"{rank} on {dim_name} has no ZigZag spatial dimension here")
            if factor > 1:
                unrolling[rank] = factor
    ranks = tuple(sizes)
    ordering = []
    for level in ("rf", "glb", "dram"):
        for rank, trip in reversed(em.loop_order(level, ranks)):
            ordering += [[DIM_OF[rank], p] for p in _prime_factors(trip)]
    for rank, size in sizes.items():
        trips = math.prod(p for dim, p in ordering if dim == DIM_OF[rank])
        need = -(-size // unrolling.get(rank, 1))
        if trips != need:
            return Translation(None, reason=f"{rank}: einsynth's temporal trips {trips} != ceil({size}/"
                                            f"{unrolling.get(rank, 1)}) = {need}, the only ones ZigZag accepts")
    spatial = {OA_DIM_OF[ARRAY_DIM_OF[DIM_OF[rank]]]: [f"{DIM_OF[rank]}, {unrolling.get(rank, 1)}"]
               for rank in ("N", "K")}
    mapping = [{"name": "default", "spatial_mapping": spatial, "temporal_ordering": ordering,
                "memory_operand_links": dict(MEMORY_OPERAND_LINKS)}]
    return Translation(mapping, ("ZigZag's allocator places the loops in its memories itself (einsynth's "
                                 "GLB/DRAM boundary is not imposed)",))


@dataclass(frozen=True)
class Roofline:
    """The machine's lower bound on a cascade: ideal compute and compulsory DRAM traffic."""

    compute_cycles: int
    dram_bytes: int
    dram_cycles: int

    @property
    def cycles(self):
        return max(self.compute_cycles, self.dram_cycles)


def roofline(cascade, arch, macs):
    """``max(macs / PEs, compulsory DRAM bytes / DRAM bytes per cycle)``, both rounded up."""
    dram = compulsory_bytes(cascade)
    return Roofline(compute_cycles=-(-macs // (arch.array.rows * arch.array.cols)), dram_bytes=dram,
                    dram_cycles=math.ceil(dram / arch.dram_bytes_per_cycle))


# --- running the tools ---------------------------------------------------------------------------

def zigzag_python():
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "zigzag-dse", "six"], check=True)
    return python


def run_zigzag(python, tmp, m, n, k, hw_text, mapping_text, tag):
    """Run the worker; its JSON, or ``{"error": last stderr line}``."""
    hw, mapping = tmp / f"hw-{tag}.yaml", tmp / f"mapping-{tag}.yaml"
    hw.write_text(hw_text)
    mapping.write_text(mapping_text)
    out = subprocess.run([str(python), str(ROOT / "bench" / "_zigzag_worker.py"), str(hw), str(mapping),
                          str(m), str(n), str(k), str(tmp / f"out-{tag}-{m}-{n}-{k}")],
                         capture_output=True, text=True, cwd=tmp)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_seconds():
    """CPU time of this process and its finished children (CBC runs as a child), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_einsynth(cascade, arch, repeat=1):
    """Map (``repeat`` times: the fastest wall and CPU times count) and simulate the ILP's mapping."""
    seconds, cpu = math.inf, math.inf
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), cpu_seconds()
        result = map_cascade(cascade, arch)
        seconds, cpu = min(seconds, time.perf_counter() - start), min(cpu, cpu_seconds() - cpu_start)
    report = run_sim(cascade, arch, result.mapping)
    return {"seconds": seconds, "cpu_seconds": cpu, "predicted": result.predicted.cycles, "cycles": report.cycles,
            "energy_pj": report.energy.total, "dram_bytes": report.dram_bytes, "mapping": result.mapping}


def simulate_translation(cascade, arch, translation):
    """Run einsynth's simulator on a translated mapping; ``{"error": why}`` when it is not expressible."""
    if translation.mapping is None:
        return {"error": translation.reason}
    try:
        mapping = Mapping.from_dict(translation.mapping, source="zigzag")
        mapping.validate(cascade, arch)
        report = run_sim(cascade, arch, mapping)
    except EinsynthError as error:
        return {"error": str(error).removeprefix("zigzag: ")}
    except Exception as error:  # noqa: BLE001 - a simulator bug on a foreign mapping: report it in the table
        return {"error": f"simulator failed: {type(error).__name__}: {error}"}
    return {"cycles": report.cycles, "energy_pj": report.energy.total, "dram_bytes": report.dram_bytes,
            "mapping": mapping}


def price_in_zigzag(python, tmp, m, n, k, translation):
    """ZigZag's model on a translated einsynth mapping; checks that ZigZag kept the given loops."""
    if translation.mapping is None:
        return {"error": translation.reason}
    out = run_zigzag(python, tmp, m, n, k, zigzag_hw(), yaml.safe_dump(translation.mapping, sort_keys=False),
                     "einsynth")
    if "error" in out:
        return out
    given = merged_loops(translation.mapping[0]["temporal_ordering"])
    kept = merged_loops([loop for level in out["mapping"]["temporal"]["O"] for loop in level])
    if given != kept:
        return {"error": f"ZigZag did not keep the ordering ({kept} instead of {given})"}
    return out


# --- the report ----------------------------------------------------------------------------------

def describe_zigzag(zigzag):
    """ZigZag's allocation per tensor, e.g. ``B: rf[M4 M25] glb[N3 K10]`` (loops innermost first)."""
    parts = []
    for op in ("I", "W", "O"):
        levels = zigzag["temporal"][op]
        names = ["rf"] * (len(levels) - 2) + ["glb", "dram"]
        text = " ".join(f"{name}[{_loops_text(loops)}]" for name, loops in zip(names, levels) if loops)
        parts.append(f"{TENSOR_OF[op]}: {text or '-'}")
    spatial = ", ".join(f"{ARRAY_DIM_OF.get(dim, oa)} {RANK_OF.get(dim, dim)}{size}"
                        for oa, unrolled in sorted(zigzag["spatial"].items(), reverse=True)
                        for dim, size in unrolled.items())
    return f"{spatial}; " + "; ".join(parts)


def describe_einsynth(mapping):
    """An einsynth GEMM mapping in one line, loops outermost first per level."""
    em = mapping.einsums["Z"]
    ranks = ("M", "N", "K")
    spatial = ", ".join(f"{dim} {rank}{factor}" for dim, factors in em.spatial.items()
                        for rank, factor in factors.items() if factor > 1)
    levels = [f"{level}[{' '.join(f'{rank}{trip}' for rank, trip in em.loop_order(level, ranks)) or '-'}]"
              for level in ("dram", "glb", "rf")]
    return f"{spatial}; " + " ".join(levels)


def _cell(result, key="cycles", scale=1.0, floor=None):
    if result is None:
        return "-"
    if "error" in result:
        return f"n/a: {result['error']}"
    value = result[key] / scale
    text = f"{value:.0f}" if scale == 1.0 else f"{value:.1f}"
    if floor is not None and result[key] < floor:
        text += " (below roofline)"
    return text


def _ratio(ours, theirs, key="cycles"):
    if ours is None or theirs is None or "error" in ours or "error" in theirs:
        return None
    return ours[key] / theirs[key]


def _span(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    low, high = f"{min(values):.2f}", f"{max(values):.2f}"
    return low if low == high else f"{low} to {high}"


def _count(values, better):
    values = [v for v in values if v is not None]
    wins = sum(1 for v in values if v < 1.0 - 1e-9)
    losses = sum(1 for v in values if v > 1.0 + 1e-9)
    return f"{better} on {wins} of {len(values)}, worse on {losses}, equal on {len(values) - wins - losses}"


def _translation_findings(rows, glb_kib, half):
    """One bullet: which ZigZag mappings einsynth could run, and what the translations changed."""
    def names(predicate):
        return [row["name"] for row in rows if predicate(row)]

    ran = {key: names(lambda row, key=key: "error" not in row[f"{key}_in_ours"]) for key in ("zz", "zz_half")}
    failed = {key: [f"{row['name']} ({row[f'{key}_in_ours']['error']})" for row in rows
                    if "error" in row[f"{key}_in_ours"]] for key in ("zz", "zz_half")}
    noted = {what: names(lambda row, what=what: any(what in note for key in ("zz_tr", "zz_half_tr")
                                                      for note in row[key].notes))
             for what in ("keeps", "accumulates", "split", "DRAM trips")}
    text = (f"* **ZigZag's mappings in einsynth's format:** the {glb_kib} KiB mapping runs in einsynth's simulator "
            f"on {len(ran['zz'])} of {len(rows)} GEMMs" + (f"; not on {'; '.join(failed['zz'])}" if failed["zz"] else "")
            + f". The {half} mapping runs on {len(ran['zz_half'])} of {len(rows)}"
            + (f" (not on {'; '.join(failed['zz_half'])})" if failed["zz_half"] else "") + ". ")
    text += ("Translations keep ZigZag's spatial unrolling, loop order and trip counts; what einsynth's format "
             "cannot hold is listed under each mapping below")
    changes = []
    if noted["keeps"]:
        changes.append(f"per-tensor GLB/DRAM boundaries (einsynth has one for all tensors: {', '.join(noted['keeps'])})")
    if noted["accumulates"]:
        changes.append("reduction loops accumulated in the PE's output register (GLB-level tile ops in einsynth: "
                       f"{', '.join(noted['accumulates'])})")
    if noted["split"]:
        changes.append(f"one rank's loops split around another within a level ({', '.join(noted['split'])})")
    if noted["DRAM trips"]:
        changes.append(f"DRAM trip counts recomputed ({', '.join(noted['DRAM trips'])})")
    return text + (": " + "; ".join(changes) + "." if changes else ": nothing on these GEMMs.")


def _target(speedups, target=5.0):
    if min(speedups) >= target:
        return "met"
    return f"NOT met on {sum(1 for s in speedups if s < target)} of {len(speedups)} GEMMs"


def render(rows, glb_kib=GLB_KIB, load=None, cpus=None, repeat=1):
    """The markdown report; ``load``: the 1-minute load average before and after the runs."""
    half = f"{glb_kib // 2} KiB"
    lines = ["## einsynth's ILP mapper vs ZigZag (LOMA)", "",
             "Reproduce: `.venv/bin/python bench/zigzag_compare.py` (creates `.bench_venvs/zigzag` with "
             "`zigzag-dse` and `six` on first use).", "",
             f"Machine (both tools): 32x32 weight-stationary int8 MAC array, {glb_kib} KiB GLB (768 bits/cycle), "
             "10 B/cycle DRAM, 1 GHz; same per-access energies (see the script's docstring). Both minimize latency.",
             "",
             "Each mapping is priced by both models where it can be expressed: *einsynth sim* is einsynth's "
             "cycle-level simulator, *ZigZag model* ZigZag's analytical cost model. *ZigZag's mapping* is "
             f"LOMA's best on the {glb_kib} KiB machine, translated into an einsynth `Mapping` "
             "(`zigzag_to_einsynth`). einsynth reserves two copies of every GLB tile (double buffering) and "
             f"ZigZag's allocator one, so ZigZag was also run with a {half} GLB: its tiles then fit einsynth's "
             f"{glb_kib} KiB double-buffered, and *ZigZag's {half} mapping* in einsynth's simulator is the like-for-like "
             "mapper comparison. *einsynth's mapping* in ZigZag's model: the ILP's spatial unrolling and loop "
             "order given to ZigZag as a fixed `temporal_ordering` (`einsynth_to_zigzag`); ZigZag's allocator "
             "places the loops in its memories itself. The DRAM roofline is max(MACs / 1024 PEs, compulsory "
             "DRAM bytes / 10 B per cycle).", "",
             "### Latency (cycles)", "",
             "| GEMM (MxNxK) | DRAM roofline (compute, DRAM) | einsynth's mapping, einsynth sim (mapper's prediction) "
             f"| ZigZag's mapping, einsynth sim | ZigZag's {half} mapping, einsynth sim | ZigZag's mapping, ZigZag model "
             f"| einsynth's mapping, ZigZag model (ZigZag's memory allocation) | ZigZag's {half} mapping, ZigZag model "
             f"({half} GLB) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        roof = row["roofline"]
        floor = roof.cycles
        lines.append(
            f"| {row['name']} ({row['m']}x{row['n']}x{row['k']}) | {roof.cycles} ({roof.compute_cycles}, "
            f"{roof.dram_cycles}) | {_cell(row['ours'], floor=floor)} ({row['ours']['predicted']:.0f}) | "
            f"{_cell(row['zz_in_ours'], floor=floor)} | {_cell(row['zz_half_in_ours'], floor=floor)} | "
            f"{_cell(row['zz'], floor=floor)} | {_cell(row['ours_in_zz'], floor=floor)} | "
            f"{_cell(row['zz_half'], floor=floor)} |")
    lines += ["", "### Energy (nJ)", "",
              f"| GEMM (MxNxK) | einsynth's mapping, einsynth sim | ZigZag's mapping, einsynth sim | ZigZag's {half} "
              "mapping, einsynth sim | ZigZag's mapping, ZigZag model | einsynth's mapping, ZigZag model |",
              "|---|---|---|---|---|---|"]
    for row in rows:
        cells = [_cell(row[key], "energy_pj", 1e3) for key in ("ours", "zz_in_ours", "zz_half_in_ours", "zz",
                                                                "ours_in_zz")]
        lines.append(f"| {row['name']} ({row['m']}x{row['n']}x{row['k']}) | " + " | ".join(
            "n/a" if cell.startswith("n/a") else cell for cell in cells) + " |")
    ratios = {"sim_full": [], "sim_half": [], "zz": [], "energy_sim_half": [], "energy_zz": []}
    lines += ["", "### Latency ratios: einsynth's mapping / ZigZag's mapping, in the same model", "",
              f"| GEMM (MxNxK) | einsynth sim, vs ZigZag's mapping | einsynth sim, vs ZigZag's {half} mapping | "
              "ZigZag model, vs ZigZag's mapping |", "|---|---|---|---|"]
    for row in rows:
        sim_full = _ratio(row["ours"], row["zz_in_ours"])
        sim_half = _ratio(row["ours"], row["zz_half_in_ours"])
        in_zz = _ratio(row["ours_in_zz"], row["zz"])
        ratios["sim_full"].append(sim_full)
        ratios["sim_half"].append(sim_half)
        ratios["zz"].append(in_zz)
        ratios["energy_sim_half"].append(_ratio(row["ours"], row["zz_half_in_ours"], "energy_pj"))
        ratios["energy_zz"].append(_ratio(row["ours_in_zz"], row["zz"], "energy_pj"))
        lines.append(f"| {row['name']} ({row['m']}x{row['n']}x{row['k']}) | " + " | ".join(
            "n/a" if r is None else f"{r:.2f}" for r in (sim_full, sim_half, in_zz)) + " |")
    lines += ["", "### Time to solution (s)", "",
              "| GEMM (MxNxK) | ZigZag LOMA, wall | einsynth ILP, wall | speed-up, wall | ZigZag LOMA, CPU | "
              "einsynth ILP, CPU | speed-up, CPU |", "|---|---|---|---|---|---|---|"]
    speedups, cpu_speedups = [], []
    for row in rows:
        zz, ours = row["zz"], row["ours"]
        if "error" in zz:
            lines.append(f"| {row['name']} ({row['m']}x{row['n']}x{row['k']}) | failed | {ours['seconds']:.2f} | | "
                         f"failed | {ours['cpu_seconds']:.2f} | |")
            continue
        speedups.append(zz["seconds"] / ours["seconds"])
        cpu_speedups.append(zz["cpu_seconds"] / ours["cpu_seconds"])
        lines.append(f"| {row['name']} ({row['m']}x{row['n']}x{row['k']}) | {zz['seconds']:.2f} | "
                     f"{ours['seconds']:.2f} | {speedups[-1]:.1f}x | {zz['cpu_seconds']:.2f} | "
                     f"{ours['cpu_seconds']:.2f} | {cpu_speedups[-1]:.1f}x |")
    lines += ["", "### Findings", ""]
    if speedups:
        lines.append(f"* **Time to solution:** ZigZag's LOMA time / einsynth's ILP time = {min(speedups):.1f}x to "
                     f"{max(speedups):.1f}x in wall time (target >= 5x: {_target(speedups)}), "
                     f"{min(cpu_speedups):.1f}x to {max(cpu_speedups):.1f}x in CPU time (target: "
                     f"{_target(cpu_speedups)}). " + (f"Fastest of {repeat} calls each" if repeat > 1 else "One call each") + (
                         f", measured with a load average of {load[0]:.1f} to {load[1]:.1f} on {cpus} cores (wall "
                         "times on a busy machine are noisy; CPU time includes CBC's)" if load else "") + ".")
    lines.append(f"* **Mapper comparison in one model (einsynth's simulator), like for like:** einsynth's mapping / "
                 f"ZigZag's {half} mapping = {_span(ratios['sim_half'])} in latency "
                 f"({_count(ratios['sim_half'], 'better')}), {_span(ratios['energy_sim_half'])} in energy. Against "
                 f"ZigZag's {glb_kib} KiB mapping, where its tiles fit einsynth's double-buffered GLB: "
                 f"{_span(ratios['sim_full'])} "
                 f"({_count(ratios['sim_full'], 'better')}).")
    lines.append(_translation_findings(rows, glb_kib, half))
    lines.append(f"* **Mapper comparison in ZigZag's model:** einsynth's mapping (its spatial unrolling and loop "
                 f"order; ZigZag allocates the loops to its memories) / ZigZag's = {_span(ratios['zz'])} "
                 f"in latency ({_count(ratios['zz'], 'better')}), {_span(ratios['energy_zz'])} in energy.")
    labels = {"ours": "einsynth's mapping", "zz_in_ours": "ZigZag's mapping", "zz_half_in_ours":
              f"ZigZag's {half} mapping", "zz": "ZigZag's mapping", "ours_in_zz": "einsynth's mapping",
              "zz_half": f"ZigZag's {half} mapping on the {half} machine"}
    below = {"einsynth sim": [], "ZigZag model": []}
    for row in rows:
        floor = row["roofline"].cycles
        for key, model in (("ours", "einsynth sim"), ("zz_in_ours", "einsynth sim"),
                           ("zz_half_in_ours", "einsynth sim"), ("zz", "ZigZag model"),
                           ("ours_in_zz", "ZigZag model"), ("zz_half", "ZigZag model")):
            if "error" not in row[key] and row[key]["cycles"] < floor:
                below[model].append(f"{row['name']}, {labels[key]} ({row[key]['cycles']:.0f} < {floor})")
    own = {key: [row[key]["cycles"] / row["roofline"].cycles for row in rows if "error" not in row[key]]
           for key in ("ours", "zz")}
    lines.append(f"* **Roofline:** each tool's own answer over the DRAM roofline: einsynth (simulator) "
                 f"{_span(own['ours'])}, ZigZag (its model) {_span(own['zz'])}. "
                 + ("einsynth's simulator is at or above the roofline on every mapping it ran" if not
                    below["einsynth sim"] else
                    f"einsynth's simulator is below it on {'; '.join(below['einsynth sim'])}") + "; "
                 + ("so is ZigZag's model." if not below["ZigZag model"] else
                    f"ZigZag's model is below it on {'; '.join(below['ZigZag model'])}."))
    short = []
    for row in rows:
        if "error" in row["zz"]:
            continue
        terms, m, n, k = row["zz"]["latency"], row["m"], row["n"], row["k"]
        inputs, outputs = math.ceil((m * k + k * n) / 10), math.ceil(m * n * 4 / 10)
        if terms["onloading"] + terms["offloading"] < inputs + outputs:
            short.append(f"{row['name']} ({terms['onloading']:.0f} + {terms['offloading']:.0f} for "
                         f"{inputs} + {outputs})")
    if short:
        lines.append("* **ZigZag's DRAM terms:** its latency is mapped compute + stall + on-loading + off-loading; "
                     "on-loading and off-loading together count fewer cycles than the compulsory inputs and "
                     f"outputs need at 10 B/cycle on {len(short)} of {len(rows)} GEMMs: {'; '.join(short)}. The "
                     "remaining traffic can only show up in its stall term, and where that term is small the total "
                     "falls below the roofline (terms below).")
    zz_gap = [_ratio(row["zz"], row["zz_in_ours"]) for row in rows]
    ours_gap = [_ratio(row["ours_in_zz"], row["ours"]) for row in rows]
    cross = [_ratio(row["ours"], row["zz"]) for row in rows]
    lines.append(f"* **Model gap:** ZigZag's mapping priced by ZigZag's model / by einsynth's simulator = "
                 f"{_span(zz_gap)} (where einsynth can run it); einsynth's mapping (ZigZag allocating its loops) "
                 f"= {_span(ours_gap)}. ZigZag has no array fill and drain per tile op and prices DRAM transfers "
                 "with its memory-port stall model; einsynth's simulator uses the RTL's tile-op timing and a "
                 "double-buffered DRAM pipeline. A ratio of one tool's own number to the other's (e.g. einsynth "
                 f"sim on einsynth's mapping / ZigZag model on ZigZag's = {_span(cross)}) mixes both effects and "
                 "is not a mapper comparison.")
    searched = [f"{row['name']} ({row['zz_half']['cycles']:.0f} < {row['zz']['cycles']:.0f})" for row in rows
                if "error" not in row["zz"] and "error" not in row["zz_half"]
                and row["zz_half"]["cycles"] < row["zz"]["cycles"]]
    if searched:
        lines.append(f"* **LOMA is a heuristic search:** with half the GLB, ZigZag finds a mapping its own model "
                     f"prices faster than its {glb_kib} KiB answer on {', '.join(searched)}: LOMA orders at most "
                     "`lpf_limit` = 6 merged prime-factor loops and fills the memories bottom-up, so its search "
                     "is not exhaustive and its answer need not improve with a larger buffer.")
    lines += ["", "ZigZag's latency terms on its own mapping (cycles): `latency_total2` = mapped compute + stall + "
              "on-loading + off-loading (+ systolic drain, 0 here), next to the compulsory DRAM traffic's time.", "",
              "| GEMM (MxNxK) | ideal | mapped compute | stall | on-loading | off-loading | total | compulsory inputs "
              "/ 10 B | compulsory outputs / 10 B |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row["zz"]:
            continue
        terms = row["zz"]["latency"]
        m, n, k = row["m"], row["n"], row["k"]
        lines.append(f"| {row['name']} ({m}x{n}x{k}) | {terms['ideal']:.0f} | {terms['mapped_compute']:.0f} | "
                     f"{terms['stall']:.0f} | {terms['onloading']:.0f} | {terms['offloading']:.0f} | "
                     f"{row['zz']['cycles']:.0f} | {math.ceil((m * k + k * n) / 10)} | {math.ceil(m * n * 4 / 10)} |")
    lines += ["", "### The mappings", "",
              "Loops per level, outermost first for einsynth (`dram[...] glb[...] rf[...]`), innermost first for "
              "ZigZag (per tensor: A = ZigZag's I, B = W, Z = O; ranks in einsynth's names, M = D, K = C, N = K).", ""]
    for row in rows:
        lines.append(f"**{row['name']} ({row['m']}x{row['n']}x{row['k']})**")
        lines.append("")
        lines.append(f"* einsynth: `{describe_einsynth(row['ours']['mapping'])}`; DRAM {row['ours']['dram_bytes']} B "
                     f"(compulsory {row['roofline'].dram_bytes} B)")
        for key, sim_key, tr_key, label in (("zz", "zz_in_ours", "zz_tr", f"ZigZag ({glb_kib} KiB)"),
                                            ("zz_half", "zz_half_in_ours", "zz_half_tr", f"ZigZag ({half})")):
            if "error" in row[key]:
                lines.append(f"* {label}: failed: {row[key]['error']}")
                continue
            text = f"* {label}: `{describe_zigzag(row[key]['mapping'])}`"
            done = row[sim_key]
            if "error" in done:
                text += f"; **not run in einsynth's simulator:** {done['error']}"
                if row[tr_key].mapping is not None:
                    text += f" (translated: `{describe_einsynth(Mapping.from_dict(row[tr_key].mapping))}`)"
            else:
                text += f" -> einsynth: `{describe_einsynth(done['mapping'])}`; DRAM {done['dram_bytes']} B"
            if row[tr_key].notes:
                text += ". Translation: " + "; ".join(row[tr_key].notes)
            lines.append(text)
        priced = row["ours_in_zz"]
        if "error" in priced:
            lines.append(f"* einsynth's mapping in ZigZag: not expressible: {priced['error']}")
        else:
            lines.append(f"* einsynth's mapping as ZigZag allocated it: `{describe_zigzag(priced['mapping'])}`")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two GEMMs only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "zigzag.md"))
    ap.add_argument("--repeat", type=int, default=3, help="time each mapper's call this many times (fastest counts)")
    args = ap.parse_args(argv)
    python = zigzag_python()
    arch = architecture()
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, m, n, k in SHAPES:
            if args.quick and name not in QUICK:
                continue
            cascade = load_cascade("gemm", M=m, N=n, K=k)
            sizes = {var.upper(): cascade.shapes[var.upper()] for var in cascade.einsums[0].iteration_vars}
            row = {"name": name, "m": m, "n": n, "k": k, "roofline": roofline(cascade, arch, m * n * k)}
            runs = [run_zigzag(python, tmp, m, n, k, zigzag_hw(), ZIGZAG_MAPPING, "loma") for _ in range(args.repeat)]
            row["zz"] = runs[0]
            if "error" not in runs[0]:  # LOMA is deterministic: the runs differ only in time
                for key in ("seconds", "cpu_seconds"):
                    row["zz"][key] = min(run[key] for run in runs if "error" not in run)
            row["zz_half"] = run_zigzag(python, tmp, m, n, k, zigzag_hw(GLB_KIB // 2), ZIGZAG_MAPPING, "loma-half")
            row["ours"] = run_einsynth(cascade, arch, args.repeat)
            row["ours_in_zz"] = price_in_zigzag(python, tmp, m, n, k,
                                                einsynth_to_zigzag(row["ours"]["mapping"].einsums["Z"], sizes))
            for key in ("zz", "zz_half"):
                failed = "error" in row[key]
                row[f"{key}_tr"] = (Translation(None, reason="ZigZag failed") if failed
                                    else zigzag_to_einsynth(row[key]["mapping"], sizes))
                row[f"{key}_in_ours"] = simulate_translation(cascade, arch, row[f"{key}_tr"])
            rows.append(row)
            print(name, {key: {field: value for field, value in row[key].items() if field in
                               ("cycles", "energy_pj", "seconds", "error")}
                         for key in ("zz", "zz_half", "ours", "ours_in_zz", "zz_in_ours", "zz_half_in_ours")},
                  flush=True)
    text = render(rows, load=(load_before, os.getloadavg()[0]), cpus=os.cpu_count(), repeat=args.repeat)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
