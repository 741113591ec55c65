"""hw.spec: presets load, round-trip through YAML, and bad fields raise one-line errors naming the
file, the field and the value."""

from pathlib import Path

import pytest
import yaml

from dataflow.errors import SpecError
from hw.spec import (PRESETS, Architecture, ArraySpec, MemorySpec, PESpec, VectorOp, VectorSpec,
                     load_architecture, preset_path)

PRESET_DIR = Path(__file__).resolve().parents[2] / "hw" / "presets"


def test_presets_are_the_preset_files():
    assert sorted(PRESETS) == sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trips(name, tmp_path):
    arch = load_architecture(name)
    assert arch.name == name
    assert load_architecture(arch.to_yaml()) == arch
    path = tmp_path / "arch.yaml"
    path.write_text(arch.to_yaml())
    assert load_architecture(path) == arch
    assert load_architecture(str(path)) == arch
    assert hash(load_architecture(path)) == hash(arch)
    # every supported weight format gives a valid PE params object of the preset's kind
    for weight_format in arch.pe.weight_formats:
        params = arch.pe_params(weight_format)
        assert params.kind == arch.pe.kind and params.weight_format == weight_format
        assert params.act_bits == arch.pe.act_bits


def test_fusemax_preset_matches_the_paper():
    arch = load_architecture("fusemax")
    assert (arch.array.rows, arch.array.cols) == (256, 256)
    assert arch.pe.act_bits == 16 and arch.pe.weight_formats == ("int16",)
    assert arch.vector.lanes == 256 and arch.vector.rf_words == 8192
    assert arch.memory.rf_words_per_pe == 16
    assert arch.memory.glb_bytes == 16 * 1024 * 1024 and arch.memory.glb_banks == 32
    assert arch.memory.dram_gbps == 400 and arch.clock_mhz == 940
    exp = arch.vector.op("exp")
    assert dict(exp.primitives) == {"mac": 6, "add": 1} and exp.cycles == 7
    assert arch.vector.op_actions("exp", acc_bits=32) == {"mul_int16": 6, "add_int32": 7}
    assert arch.energy_table == "horowitz45"
    assert arch.dram_bytes_per_cycle == pytest.approx(400e9 / 940e6)


def test_flat_preset():
    arch = load_architecture("flat")
    assert (arch.array.rows, arch.array.cols) == (256, 256)
    assert arch.memory.glb_bytes == 32 * 1024 * 1024
    assert arch.vector is not None and arch.vector.lanes < load_architecture("fusemax").vector.lanes


def test_mac_int8_32x32_is_scale_sim_default():
    arch = load_architecture("mac-int8-32x32")
    assert (arch.array.rows, arch.array.cols, arch.array.dataflow) == (32, 32, "output-stationary")
    assert arch.pe.kind == "mac" and arch.pe.act_format == "int8" and arch.pe.weight_formats == ("int8",)


def test_input_stationary_is_a_spec_dataflow():
    assert ArraySpec(rows=2, cols=3, dataflow="input-stationary").pes == 6


def test_pe_params_rejects_a_format_the_architecture_lacks():
    arch = load_architecture("mac-int8-32x32")
    with pytest.raises(SpecError, match=r"^pe.weight_formats: 'int4' is not supported by mac-int8-32x32 "
                                        r"\(supported: int8\)$"):
        arch.pe_params("int4")


def test_options_reach_the_kind():
    pe = PESpec(kind="mac", weight_formats=("int4",), options={"step_cycles": 3})
    assert pe.params().step_cycles == 3


def test_build_in_python():
    arch = Architecture(name="tiny", array=ArraySpec(rows=2, cols=2), pe=PESpec(kind="mac"),
                        memory=MemorySpec(rf_words_per_pe=1, glb_kib=64),
                        vector=VectorSpec(lanes=4, ops=(VectorOp("exp", {"mac": 6, "add": 1}),)))
    assert load_architecture(arch.to_yaml()) == arch
    assert arch.vector.supports("exp") and not arch.vector.supports("div")


# --- errors: one line, naming file, field, value -----------------------------------------------

BASE = yaml.safe_load((PRESET_DIR / "mac-int8-32x32.yaml").read_text())


def _load_with(tmp_path, edit):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    edit(data)
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_architecture(path)


def _set(section, key, value):
    def edit(data):
        data[section][key] = value
    return edit


def _drop(section, key):
    def edit(data):
        del data[section][key]
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("array", "rows", 0), "array.rows: must be a positive integer, not 0"),
    (_set("array", "cols", -3), "array.cols: must be a positive integer, not -3"),
    (_set("array", "rows", 2.5), "array.rows: must be a positive integer, not 2.5"),
    (_set("array", "dataflow", "row-stationary"),
     "array.dataflow: must be one of output-stationary, weight-stationary, input-stationary, "
     "not 'row-stationary'"),
    (_set("array", "colums", 4),
     "array.colums: unknown field (expected one of rows, cols, dataflow)"),
    (_drop("array", "rows"), "array.rows: missing"),
    (_set("pe", "kind", "systolic"),
     "pe.kind: must be one of mac, mac-dequant, bitserial, lut, shiftadd, not 'systolic'"),
    (_set("pe", "act_format", "e4m3"), "pe.act_format: must be a signed integer format, not 'e4m3'"),
    (_set("pe", "act_format", "int99"), "pe.act_format: unknown number format 'int99'"),
    (_set("pe", "weight_formats", ["int8", "fp16"]),
     "pe.weight_formats[1]: must be a format of at most 16 bits whose values are integers after "
     "its integer scale, not 'fp16'"),
    (_set("pe", "weight_formats", []), "pe.weight_formats: must be a non-empty list of format names, not []"),
    (_set("pe", "weight_formats", ["int4", "int4"]), "pe.weight_formats: must not repeat a format"),
    (_set("pe", "acc_bits", 12), "pe.acc_bits: must be at least the product width 16, not 12"),
    (_set("pe", "lanes", 0), "pe.lanes: must be a positive integer, not 0"),
    (_set("pe", "options", {"colour": 1}), "pe.options.colour: not a parameter of the mac PE"),
    (_set("memory", "glb_banks", 5), "memory.glb_banks: must divide the global buffer (192 KiB) evenly, not 5"),
    (_set("memory", "dram_gbps", 0), "memory.dram_gbps: must be a positive number, not 0"),
    (_drop("memory", "glb_kib"), "memory.glb_kib: missing"),
])
def test_load_wrong_field(tmp_path, edit, message):
    with pytest.raises(SpecError) as info:
        _load_with(tmp_path, edit)
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'arch.yaml'}: {message}")
    assert "\n" not in text


def test_load_wrong_top_level(tmp_path):
    with pytest.raises(SpecError, match=r"arch.yaml: clock_mhz: must be a positive number, not -1$"):
        _load_with(tmp_path, lambda data: data.update(clock_mhz=-1))
    with pytest.raises(SpecError, match=r"arch.yaml: speed: unknown field"):
        _load_with(tmp_path, lambda data: data.update(speed=1))


def test_load_wrong_kind_parameter(tmp_path):
    def edit(data):
        data["pe"].update(kind="mac-dequant", weight_formats=["int4"], lanes=4, group_size=6)
    with pytest.raises(SpecError, match=r"arch.yaml: pe.group_size: must be a multiple of lanes \(4\), not 6$"):
        _load_with(tmp_path, edit)


def test_load_wrong_vector(tmp_path):
    def unknown_primitive(data):
        data["vector"] = {"lanes": 8, "ops": {"exp": {"mac": 6, "sqrt": 1}}}
    with pytest.raises(SpecError, match=r"arch.yaml: vector.ops.exp.sqrt: must be one of mac, add, mul, max, "
                                        r"div, shift, lut, not 'sqrt'$"):
        _load_with(tmp_path, unknown_primitive)

    def zero_lanes(data):
        data["vector"] = {"lanes": 0, "ops": {"add": {"add": 1}}}
    with pytest.raises(SpecError, match=r"arch.yaml: vector.lanes: must be a positive integer, not 0$"):
        _load_with(tmp_path, zero_lanes)


def test_load_bad_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\narray: {rows: 2\n")
    with pytest.raises(SpecError, match=r"broken.yaml:3: "):
        load_architecture(path)


def test_load_unknown_preset_or_file():
    with pytest.raises(SpecError, match=r"^nope.yaml: no such architecture file \(presets: mac-int8-32x32, "):
        load_architecture("nope.yaml")
    with pytest.raises(SpecError, match=r"^architecture preset must be one of mac-int8-32x32, .*not 'nope'$"):
        preset_path("nope")


def test_init_wrong_in_python():
    with pytest.raises(SpecError, match=r"^rows: must be a positive integer, not 0$"):
        ArraySpec(rows=0, cols=4)
    with pytest.raises(SpecError, match=r"^exp.mac: must be a positive integer, not 0$"):
        VectorOp("exp", {"mac": 0})
    with pytest.raises(SpecError, match=r"^vector.ops: op 'div' is not supported \(supported: exp\)$"):
        VectorSpec(lanes=4, ops=(VectorOp("exp", {"mac": 6}),)).op("div")


def test_documented_example_loads():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture-spec.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    arch = load_architecture(example)
    assert arch.name == "my-array" and arch.array.dataflow == "weight-stationary"
    assert arch.vector.op("exp").cycles == 7 and arch.vector.op("div").cycles == 4
    assert [arch.pe_params(f).weight_format for f in arch.pe.weight_formats] == ["int8", "int4"]
