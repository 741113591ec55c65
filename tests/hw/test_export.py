"""hw.export: hierarchical Verilog, file list, Yosys resource reports, and the exported Verilog
itself simulated by cocotb (bit-exact and cycle-exact, like the flat Verilog of test_array)."""

import json
import re

import pytest

from cocotb_benches.harness import SIMULATOR_PARAMS, run_rtl, tile_rows
from dataflow.errors import SpecError
from hw.export import FPGAS, array_verilog, export_rtl, to_verilog
from hw.pe import make_pe
from hw.pe.mac import MacParams
from hw.spec import Architecture, ArraySpec, MemorySpec, PESpec, load_architecture
from hw.verify import array_job

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _arch(rows, cols, dataflow="output-stationary", kind="mac", weight_formats=("int8",), **pe):
    return Architecture(name=f"test-{rows}x{cols}", array=ArraySpec(rows=rows, cols=cols, dataflow=dataflow),
                        pe=PESpec(kind=kind, weight_formats=weight_formats, **pe),
                        memory=MemorySpec(rf_words_per_pe=1, glb_kib=64))


def _modules(text):
    return re.findall(r"^module\s+(\S+)\s*\(", text, flags=re.M)


def test_to_verilog_ports():
    text = to_verilog(make_pe(MacParams()), name="mac_pe")
    assert _modules(text) == ["mac_pe"]
    for port in ("a", "w", "start", "clear", "psum_in", "acc", "done", "clk", "rst"):
        assert re.search(rf"\b(input|output)\b[^;]*\b{port};", text), port


def test_array_verilog_is_hierarchical():
    files = array_verilog(_arch(7, 3), top="arr")
    assert list(files) == ["arr_pe.v", "arr_cell.v", "arr_row.v", "arr_group1.v", "arr_group3.v", "arr.v"]
    for name, text in files.items():
        assert _modules(text)[0] == name[:-2]
    top = files["arr.v"]
    # the top instantiates row groups by name and holds no PE or cell logic of its own
    assert len(re.findall(r"^\s*arr_group3\s+group_\d", top, flags=re.M)) == 2
    assert len(re.findall(r"^\s*arr_group1\s+group_\d", top, flags=re.M)) == 1
    assert "arr_cell" not in top and "arr_pe" not in top
    assert len(re.findall(r"^\s*arr_cell\s+cell_\d", files["arr_row.v"], flags=re.M)) == 3
    for port in ("act__valid", "act__ready", "act__payload", "weight__payload", "out__payload", "out__valid",
                 "out__ready", "stall"):
        assert re.search(rf"\b{port}\b", top), port


@pytest.mark.parametrize("simulator, arch, dataflow", [
    pytest.param("icarus", (7, 2), "weight-stationary", marks=SIMULATOR_PARAMS[0].marks),
    pytest.param("verilator", (7, 2), "output-stationary", marks=SIMULATOR_PARAMS[1].marks),
], ids=["icarus-7x2-ws", "verilator-7x2-os"])
def test_exported_verilog_runs(simulator, arch, dataflow, cocotb_workdir):
    """cocotb on the files einsynth rtl writes (modules instantiated by name, row groups of 3, 3
    and 1 for seven rows), with back-pressure."""
    rows, cols = arch
    architecture = _arch(rows, cols, dataflow, weight_formats=("int4",))
    files = array_verilog(architecture, top="exported")
    job = array_job(rows, cols, dataflow, architecture.pe_params(), seed=rows, valid_probability=0.7,
                    ready_probability=0.7)
    result = run_rtl(job, simulator, cocotb_workdir, verilog=files, toplevel="exported")
    tiles = tile_rows(result)
    assert all(t["measured"] == t["cost"] + t["stalls"] for t in tiles)


def test_export_rtl_ice40(tmp_path):
    result = export_rtl(_arch(2, 2), tmp_path / "rtl", fpga="ice40", top="tiny")
    outdir = tmp_path / "rtl"
    assert [path.name for path in result.verilog_files] == ["tiny_pe.v", "tiny_cell.v", "tiny_row.v",
                                                           "tiny_group2.v", "tiny.v"]
    assert result.filelist.read_text().split() == [path.name for path in result.verilog_files]
    report = json.loads((outdir / "resources.json").read_text())
    counts = result.resources.counts
    assert report["counts"] == dict(counts) and set(counts) == {"LUT4", "DFF", "DSP", "CARRY"}
    assert counts["LUT4"] > 0 and counts["DFF"] >= 4 * (8 + 8 + 32)   # act, weight, accumulator per PE
    assert counts["DSP"] == 4                                         # one SB_MAC16 per int8 MAC
    assert result.resources.generic_cells > counts["LUT4"]
    assert not result.resources.reduced and result.notes == ()
    assert "| LUT4 |" in result.report_text.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("fpga", ["xilinx", "generic"])
def test_export_rtl_other_fpgas(fpga, tmp_path):
    result = export_rtl(_arch(1, 2, weight_formats=("int4",)), tmp_path, fpga=fpga)
    counts = result.resources.counts
    if fpga == "xilinx":
        assert set(counts) == {"LUT", "FF", "DSP", "CARRY"} and counts["LUT"] > 0 and counts["FF"] > 0
    else:
        assert set(counts) == {"cells", "DFF"} and counts["cells"] == result.resources.generic_cells
        assert counts["DFF"] > 0


def test_export_rtl_reduces_big_arrays(tmp_path):
    result = export_rtl(_arch(5, 3, weight_formats=("int4",)), tmp_path, fpga="ice40", max_synth_pes=4,
                        synth_tile=(1, 2))
    assert (result.resources.rows, result.resources.cols, result.resources.reduced) == (1, 2, True)
    assert result.notes == ("the 5 x 3 array has more than 4 PEs; Yosys synthesized a 1 x 2 tile of it "
                            "(same PE and cell), so the full array's counts are about 15 x the per-PE figures",)
    assert result.resources.counts["LUT4"] > 0
    assert "(reduced tile)" in result.report_text.read_text()
    # the full-size Verilog is still written
    assert "group" in " ".join(path.name for path in result.verilog_files)


def test_export_rtl_without_synthesis(tmp_path):
    arch = _arch(2, 3, kind="mac-dequant", weight_formats=("int4", "int2"), group_size=4)
    result = export_rtl(arch, tmp_path, synth=False, weight_format="int2")
    assert result.resources is None and result.report_json is None
    assert result.notes == ("synthesis skipped",)
    assert result.weight_format == "int2"
    # three columns of (2-bit code + 8-bit group scale) weight payloads
    assert re.search(r"input \[29:0\] weight__payload;", (tmp_path / "einsynth_array.v").read_text())


@pytest.mark.slow
def test_export_256x256(tmp_path):
    """A 256 x 256 array exports (hierarchically) without synthesis; no module is huge. (Narrow
    PEs keep the test short; the fusemax preset's int16 array exports the same way in 1-2 min.)"""
    arch = _arch(256, 256, act_format="int2", weight_formats=("int1",), acc_bits=4)
    result = export_rtl(arch, tmp_path, synth=False, top="fm")
    names = [path.name for path in result.verilog_files]
    assert names == ["fm_pe.v", "fm_cell.v", "fm_row.v", "fm_group16.v", "fm.v"]
    top = (tmp_path / "fm.v").read_text()
    assert len(re.findall(r"^\s*fm_group16\s+group_\d+", top, flags=re.M)) == 16
    assert len(re.findall(r"^\s*fm_row\s+row_\d+", (tmp_path / "fm_group16.v").read_text(), flags=re.M)) == 16
    assert len(re.findall(r"^\s*fm_cell\s+cell_\d+", (tmp_path / "fm_row.v").read_text(), flags=re.M)) == 256
    assert max(path.stat().st_size for path in result.verilog_files) < 20e6


def test_export_rtl_wrong(tmp_path):
    with pytest.raises(SpecError, match=r"^fpga must be one of ice40, xilinx, generic, not 'altera'$"):
        export_rtl(_arch(2, 2), tmp_path, fpga="altera")
    with pytest.raises(SpecError, match=r"^test-2x2: array.dataflow: input-stationary has no RTL array "
                                        r"\(only output-stationary, weight-stationary\)$"):
        export_rtl(_arch(2, 2, "input-stationary"), tmp_path)
    assert FPGAS == ("ice40", "xilinx", "generic")
    assert load_architecture("mac-int8-32x32").array.rows == 32
