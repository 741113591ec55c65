"""The Mapping object: YAML round trip, validation with one-line field-naming errors, and the
default mapping (valid for every built-in cascade)."""
import pytest

from dataflow import library_names, load_cascade
from dataflow.errors import MappingError
from hw.spec import architecture_from_dict
from mapper import Mapping, default_mapping, load_mapping
from mapper.mapping import EinsumMapping, Group, einsum_view

VECTOR_OPS = {"exp": {"mac": 6, "add": 1}, "add": {"add": 1}, "mul": {"mul": 1}, "max": {"max": 1},
              "div": {"div": 1}, "mac": {"mac": 1}, "shift": {"shift": 1}}


def arch(rows=32, cols=32, dataflow="output-stationary", vector=True, glb_kib=1024, kind="mac", wfmt="int8"):
    data = {"name": "t", "array": {"rows": rows, "cols": cols, "dataflow": dataflow},
            "pe": {"kind": kind, "weight_formats": [wfmt]},
            "memory": {"rf_words_per_pe": 16, "glb_kib": glb_kib, "glb_banks": 4}}
    if vector:
        data["vector"] = {"lanes": 16, "rf_words": 1024, "ops": VECTOR_OPS}
    return architecture_from_dict(data)


GEMM_YAML = """\
cascade: gemm
einsums:
  Z:
    unit: array
    spatial: {rows: {M: 32}, cols: {N: 32}}
    tiles:
      dram: {M: 4, N: 2}
      glb: {K: 2}
      rf: {K: 32}
    order: {dram: [N, M, K], glb: [K]}
"""


def load(tmp_path, text, cascade=None, a=None):
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path, load_mapping(str(path), cascade, a)


def error_of(tmp_path, text, cascade, a):
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    with pytest.raises(MappingError) as info:
        load_mapping(str(path), cascade, a)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(str(path)) + 2:]


# --- round trip ------------------------------------------------------------------------------------

def test_yaml_round_trip(tmp_path):
    cascade = load_cascade("gemm", M=100, N=64, K=64)
    _, m = load(tmp_path, GEMM_YAML, cascade, arch())
    assert m.einsums["Z"].factor("dram", "M") == 4
    assert m.einsums["Z"].factor("spatial", "M") == 32
    assert m.einsums["Z"].extent("K") == 64
    again = load_mapping(m.to_yaml())
    assert again == m
    assert again.to_yaml() == m.to_yaml()


@pytest.mark.parametrize("name", library_names())
def test_default_mapping_round_trips_and_validates(name):
    cascade = load_cascade(name)
    a = arch()
    m = default_mapping(cascade, a)
    again = load_mapping(m.to_yaml(), cascade, a)
    assert again == m
    assert set(m.einsums) == {e.name for e in cascade.einsums}


@pytest.mark.parametrize("dataflow", ["output-stationary", "weight-stationary", "input-stationary"])
@pytest.mark.parametrize("vector", [True, False])
def test_default_mapping_is_valid_on_every_array(dataflow, vector):
    a = arch(rows=8, cols=4, dataflow=dataflow, vector=vector, glb_kib=64)
    for name in library_names():
        cascade = load_cascade(name)
        m = default_mapping(cascade, a)
        m.validate(cascade, a)
        for e in cascade.einsums:
            assert m.einsums[e.name].unit == ("vector" if vector and einsum_view(cascade, e, "array").kind
                                              == "elementwise" else "array")


def test_groups_fill_in_single_einsum_loops():
    cascade = load_cascade("gemm", M=100, N=64, K=64)
    m = load_mapping(GEMM_YAML, cascade, arch())
    (group,) = m.groups(cascade)
    assert group == Group(("Z",), (("N", 2), ("M", 4)))


# --- errors -------------------------------------------------------------------------------------------

def test_factors_that_do_not_cover_a_rank(tmp_path):
    cascade = load_cascade("gemm", M=100, N=32, K=8)
    text = ("einsums:\n  Z: {unit: array, spatial: {rows: {M: 16}, cols: {N: 32}}, "
            "tiles: {glb: {M: 4}, rf: {K: 8}}}\n")
    assert error_of(tmp_path, text, cascade, arch()) == \
        "einsums.Z.tiles.glb.M: factors 4*16 = 64 do not cover rank M (size 100)"


def test_tile_larger_than_the_buffer(tmp_path):
    cascade = load_cascade("gemm", M=32, N=32, K=4096)
    text = "einsums:\n  Z: {unit: array, spatial: {rows: {M: 32}, cols: {N: 32}}, tiles: {rf: {K: 4096}}}\n"
    msg = error_of(tmp_path, text, cascade, arch(glb_kib=64))
    assert msg == ("einsums.Z.tiles.glb: group schedule[0] needs 532480 B of global buffer (double-buffered "
                   "tiles), more than the 65536 B of t")


def test_rank_bound_to_a_missing_unit(tmp_path):
    cascade = load_cascade("softmax")
    m = default_mapping(cascade, arch())
    assert m.einsums["SN"].unit == "vector"
    with pytest.raises(MappingError, match=r"^mapping: einsums\.GM\.unit: 'vector' but the architecture t "
                                           r"has no 1D array$"):
        m.validate(cascade, arch(vector=False))


@pytest.mark.parametrize("body,message", [
    ("{unit: array, tiles: {dram: {Q: 2}}}",
     "einsums.Z.tiles.dram.Q: 'Q' is not a rank of einsum Z (ranks: M, N, K)"),
    ("{unit: array, spatial: {rows: {M: 64}}, tiles: {dram: {N: 32}, rf: {K: 8}}}",
     "einsums.Z.spatial.rows: factors 64 exceed the array's 32 rows"),
    ("{unit: array, spatial: {rows: {K: 8}}, tiles: {dram: {M: 64, N: 32}}}",
     "einsums.Z.spatial.rows.K: rank K is a GEMM k rank; a output-stationary array takes only m ranks on its rows"),
    ("{unit: array, tiles: {dram: {N: 32, K: 8}, rf: {M: 64}}}",
     "einsums.Z.tiles.rf.M: rank M is a GEMM m rank; a output-stationary array iterates only batch/k ranks inside a tile"),
    ("{unit: array, tiles: {dram: {M: 65, N: 32, K: 8}}}",
     "einsums.Z.tiles.dram.M: factor 65 leaves whole DRAM tiles empty: rank M (size 64) in GLB tiles of 1 "
     "needs ceil(64/1) = 64"),
    ("{unit: gpu}", "einsums.Z.unit: must be one of array, vector, not 'gpu'"),
    ("{unit: array, tiles: {l2: {M: 2}}}", "einsums.Z.tiles.l2: unknown level (expected one of dram, glb, rf)"),
    ("{unit: array, tiles: {dram: {M: 0}}}", "einsums.Z.tiles.dram.M: must be a positive integer, not 0"),
    ("{unit: vector, spatial: {rows: {M: 2}}}", "einsums.Z.spatial.rows: the vector has spatial dims lanes, not 'rows'"),
    ("{unit: array, tiles: {dram: {M: 64, N: 32, K: 8}}, colour: red}",
     "einsums.Z.colour: unknown field (expected one of unit, spatial, tiles, order, pe_ranks, k_per_point)"),
])
def test_invalid_einsum_mappings(tmp_path, body, message):
    cascade = load_cascade("gemm", M=64, N=32, K=8)
    assert error_of(tmp_path, f"einsums:\n  Z: {body}\n", cascade, arch()) == message


def test_cascade_level_errors(tmp_path):
    cascade = load_cascade("softmax", M=16, P=4)
    good = default_mapping(cascade, arch()).to_dict()

    def yaml_of(**changes):
        import yaml
        return yaml.safe_dump({**good, **changes})

    assert error_of(tmp_path, yaml_of(onchip=["Y"]), cascade, arch()) == \
        "onchip: Y is a cascade output; outputs are written to DRAM"
    assert error_of(tmp_path, yaml_of(onchip=["X"]), cascade, arch()) == \
        "onchip: X is a cascade input; inputs are read from DRAM"
    assert error_of(tmp_path, yaml_of(schedule=[{"einsums": ["SN"]}, {"einsums": ["GM", "SD", "Y"]}]),
                    cascade, arch()) == "schedule[0]: SN reads GM, which schedule[1] produces later"
    assert error_of(tmp_path, yaml_of(schedule=[{"einsums": ["GM", "SN", "SD"]}]), cascade, arch()) == \
        "schedule: einsum Y is in no group"
    assert error_of(tmp_path, yaml_of(buffers={"glb": {"X": 8}}), cascade, arch()) == \
        "buffers.glb.X: group schedule[0] needs 512 B for X (double-buffered GLB tile), more than its 8 B"
    assert error_of(tmp_path, yaml_of(cascade="gemm"), cascade, arch()) == \
        "cascade: the mapping is for cascade 'gemm', not 'softmax'"
    missing = dict(good["einsums"])
    del missing["Y"]
    assert error_of(tmp_path, yaml_of(einsums=missing), cascade, arch()) == \
        "einsums.Y: missing: every einsum of the cascade needs a mapping"


def test_group_loops_must_match_member_tiles(tmp_path):
    cascade = load_cascade("softmax", M=16, P=4)
    m = default_mapping(cascade, arch())
    d = m.to_dict()
    d["schedule"] = [{"einsums": ["GM", "SN", "SD", "Y"], "loops": [["P", 2]]}]
    import yaml
    msg = error_of(tmp_path, yaml.safe_dump(d), cascade, arch())
    assert msg.startswith("einsums.GM.tiles.dram.P: is 1 but group schedule[0] loops P 2 time(s)")


def test_bad_yaml_is_one_line(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text("einsums: [\n")
    with pytest.raises(MappingError) as info:
        load_mapping(str(path))
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}:")


def test_einsum_mapping_helpers():
    em = EinsumMapping("Z", "array", {"rows": {"M": 4}, "cols": {"M": 2}}, {"dram": {"M": 3}, "rf": {"K": 5}})
    assert em.factor("spatial", "M") == 8
    assert em.extent("M") == 24
    assert em.tile_extent("M", "glb") == 8
    assert em.loop_order("dram", ("M", "K")) == (("M", 3),)
    assert Mapping({"Z": em}).to_dict()["einsums"]["Z"]["tiles"] == {"dram": {"M": 3}, "rf": {"K": 5}}
