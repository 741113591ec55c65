"""Energy reference tables (hw/energy.py) and the simulator's energy accounting."""
import math

import pytest

from dataflow import load_cascade
from dataflow.errors import SpecError
from hw.energy import BUILTIN_TABLES, import_accelergy, load_energy_table, parse_action
from mapper.mapping import EinsumMapping, Mapping
from sim import run_sim


def test_horowitz_table_has_the_paper_values():
    t = load_energy_table("horowitz45")
    paper = {"add_int8": 0.03, "add_int16": 0.05, "add_int32": 0.1, "mul_int8": 0.2, "mul_int32": 3.1,
             "add_fp16": 0.4, "mul_fp16": 1.1, "add_fp32": 0.9, "mul_fp32": 3.7}
    for action, pj in paper.items():
        assert t.price(action) == pj
    assert t.price("glb_read", capacity_bytes=8192, width_bits=32) == 5.0
    assert 32 * t.price("dram_read_bit") == 640.0


def test_sram_energy_scales_with_sqrt_capacity_and_width():
    t = load_energy_table()
    base = t.price("glb_read", capacity_bytes=8192, width_bits=32)
    assert math.isclose(t.price("glb_read", capacity_bytes=4 * 8192, width_bits=32), 2 * base)
    assert math.isclose(t.price("glb_write", capacity_bytes=8192, width_bits=64), 2 * base)
    assert math.isclose(t.price("rf_read", capacity_bytes=512, width_bits=16), base / 2 / 4)


def test_unlisted_widths_interpolate_between_anchors():
    t = load_energy_table()
    assert t.price("add_int32") > t.price("add_int24") > t.price("add_int16")
    # one anchor and an exponent: div scales quadratically from div_int8
    assert math.isclose(t.price("div_int16"), t.price("div_int8") * (16 / 8) ** 2, rel_tol=0.3)
    assert t.price("reg_write_int32") == pytest.approx(32 * 0.008)
    assert parse_action("lut_read_int11") == ("lut_read", "int", 11)


def test_unpriced_action_is_an_error():
    with pytest.raises(SpecError, match=r"^energy table horowitz45: no price for action 'teleport_int8'"):
        load_energy_table().price("teleport_int8")
    with pytest.raises(SpecError, match=r"energy_table: must be one of horowitz45, fusemax45 or a YAML file"):
        load_energy_table("nope")


def test_fusemax_table_prices_a_16bit_mac_at_17pj():
    t = load_energy_table("fusemax45")
    assert math.isclose(t.price("mul_int16") + t.price("add_int16"), 17.0, rel_tol=1e-3)
    assert set(BUILTIN_TABLES) == {"horowitz45", "fusemax45"}


def test_user_table_and_accelergy_import(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("name: mine\nactions: {mul_int8: 1.0, add_int32: 0.5}\nexponents: {mul: 2}\n"
                    "sram: {read_pj: 10, write_pj: 12}\ndram: {read_pj_per_bit: 1, write_pj_per_bit: 2}\n")
    t = load_energy_table(str(user))
    assert t.name == "mine" and t.price("mul_int16") == 4.0 and t.price("dram_write_bit") == 2
    ert = tmp_path / "ERT.yaml"
    ert.write_text("ERT:\n  version: '0.4'\n  tables:\n"
                   "  - name: system.chip.PE[0..255].mac\n    actions:\n"
                   "    - {name: mac_random, arguments: null, energy: 2.4}\n"
                   "    - {name: idle, arguments: null, energy: 0.0}\n")
    imp = import_accelergy(ert, rename={"mac.mac_random": "mac_int8"})
    assert imp.price("mac.idle") == 0.0
    assert math.isclose(imp.price("mul_int8") + imp.price("add_int8"), 2.4)
    assert imp.price("add_int32") == load_energy_table().price("add_int32")   # falls back to the base


def test_report_energy_is_counts_times_prices(make_arch, tmp_path):
    arch = make_arch(rows=8, cols=8, vector=False)
    cascade = load_cascade("gemm", M=8, N=8, K=16)
    em = EinsumMapping("Z", "array", {"rows": {"M": 8}, "cols": {"N": 8}}, {"rf": {"K": 16}})
    report = run_sim(cascade, arch, Mapping({"Z": em}))
    assert report.actions["array"] == {"mul_int8": 8 * 8 * 16, "add_int32": 8 * 8 * 16}
    t = load_energy_table("horowitz45")
    assert report.energy.components["array"]["mul_int8"] == pytest.approx(1024 * t.price("mul_int8"))
    assert report.energy.components["dram"]["dram_read_bit"] == pytest.approx(
        report.dram_read_bytes * 8 * t.price("dram_read_bit"))
    assert report.energy.table == "horowitz45"
    assert "energy table: horowitz45" in report.render_table()
    other = run_sim(cascade, arch, Mapping({"Z": em}), energy_table="fusemax45")
    assert other.energy.table == "fusemax45" and other.cycles == report.cycles
    assert other.energy.components["array"]["mul_int8"] > report.energy.components["array"]["mul_int8"]
