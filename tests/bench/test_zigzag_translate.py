"""The mapping translations of bench/zigzag_compare.py (einsynth <-> ZigZag GEMM mappings) and its
DRAM roofline. ZigZag itself is not needed: its mappings are built in the worker's JSON shape."""
import importlib.util
import math
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import load_cascade
from mapper.mapping import EinsumMapping, Mapping
from sim import run_sim

_PATH = Path(__file__).resolve().parents[2] / "bench" / "zigzag_compare.py"
_SPEC = importlib.util.spec_from_file_location("zigzag_compare", _PATH)
zc = sys.modules.setdefault("zigzag_compare", importlib.util.module_from_spec(_SPEC))
_SPEC.loader.exec_module(zc)

ARCH = zc.architecture()
RANKS = ("M", "N", "K")


def loops(text):
    """``"D4 C2"`` -> ``[["D", 4], ["C", 2]]`` (ZigZag's loop dims)."""
    return [[item[0], int(item[1:])] for item in text.split()]


def zigzag_allocation(spatial, nest, rf_count, tops):
    """The worker's ``mapping`` for ``nest`` (innermost first): W's first ``rf_count`` loops in its
    register file, each operand's first ``tops[op]`` loops under its DRAM level."""
    temporal = {"W": [nest[:rf_count], nest[rf_count:tops["W"]], nest[tops["W"]:]],
                "O": [[], nest[:tops["O"]], nest[tops["O"]:]],
                "I": [nest[:tops["I"]], nest[tops["I"]:]]}
    levels = {"W": ["rf_w", "glb", "dram"], "O": ["rf_o", "glb", "dram"], "I": ["glb", "dram"]}
    return {"spatial": spatial, "temporal": temporal, "levels": levels}


def gemm(m, n, k):
    return load_cascade("gemm", M=m, N=n, K=k)


def test_zigzag_to_einsynth_per_operand_boundaries():
    # deep-64x64x2048 as LOMA maps it: B leaves the GLB after K16, A and Z stay whole in it
    nest = loops("D4 D16 C4 C4 C4 K2")
    zigzag = zigzag_allocation({"D1": {"K": 32}, "D2": {"C": 32}}, nest, 2, {"W": 4, "O": 6, "I": 6})
    result = zc.zigzag_to_einsynth(zigzag, {"M": 64, "N": 64, "K": 2048})
    assert result.reason is None
    mapping = Mapping.from_dict(result.mapping)
    mapping.validate(gemm(64, 64, 2048), ARCH)
    em = mapping.einsums["Z"]
    assert dict(em.spatial["rows"]) == {"K": 32} and dict(em.spatial["cols"]) == {"N": 32}
    assert em.loop_order("rf", RANKS) == (("M", 64),)
    assert em.loop_order("glb", RANKS) == (("K", 16),)
    assert em.loop_order("dram", RANKS) == (("N", 2), ("K", 4))
    assert result.notes == (
        "ZigZag keeps A's GLB tile across K4 N2; einsynth has one GLB/DRAM boundary, so they are DRAM loops "
        "for A too (A depends on K: a smaller GLB tile)",
        "ZigZag keeps Z's GLB tile across K4 N2; einsynth has one GLB/DRAM boundary, so they are DRAM loops "
        "for Z too (Z depends on N: a smaller GLB tile)")


def test_zigzag_to_einsynth_output_register_and_interleaved_loops():
    # gemv-like: ZigZag accumulates K4 in the PE's output register; the GLB level interleaves K and N
    nest = loops("C2 C2 K4 C2 K4")
    zigzag = zigzag_allocation({"D1": {"K": 32}, "D2": {"C": 32}}, nest, 0, {"W": 4, "O": 4, "I": 5})
    zigzag["temporal"]["O"] = [nest[:2], nest[2:4], nest[4:]]
    result = zc.zigzag_to_einsynth(zigzag, {"M": 1, "N": 512, "K": 256})
    mapping = Mapping.from_dict(result.mapping)
    mapping.validate(gemm(1, 512, 256), ARCH)
    em = mapping.einsums["Z"]
    assert em.loop_order("rf", RANKS) == ()
    assert em.loop_order("glb", RANKS) == (("K", 8), ("N", 4))  # K at its outermost place
    assert em.loop_order("dram", RANKS) == (("N", 4),)
    assert result.notes[0].startswith("ZigZag accumulates K4 in the PE's output register")
    assert result.notes[2] == ("GLB loops (K4 N4 K2, innermost first) split K around another rank; einsynth has "
                               "one loop per rank and level, so each sits at its outermost place")


def test_zigzag_to_einsynth_uneven_unrolling_pads_the_last_tile_op():
    # 100x70x300: 32 columns over N=70 in 3 trips, 32 rows over K=300 in 10 trips
    nest = loops("D4 D5 D5 K3 C2 C5")
    zigzag = zigzag_allocation({"D1": {"K": 32}, "D2": {"C": 32}}, nest, 3, {"W": 6, "O": 6, "I": 6})
    result = zc.zigzag_to_einsynth(zigzag, {"M": 100, "N": 70, "K": 300})
    mapping = Mapping.from_dict(result.mapping)
    mapping.validate(gemm(100, 70, 300), ARCH)
    em = mapping.einsums["Z"]
    assert (em.extent("N"), em.extent("K"), em.extent("M")) == (96, 320, 100)
    assert em.loop_order("dram", RANKS) == () and result.notes == ()


def test_zigzag_to_einsynth_rejects_a_spatial_m():
    nest = loops("C8")
    zigzag = zigzag_allocation({"D1": {"D": 4}, "D2": {"C": 32}}, nest, 0, {"W": 1, "O": 1, "I": 1})
    result = zc.zigzag_to_einsynth(zigzag, {"M": 4, "N": 1, "K": 256})
    assert result.mapping is None
    assert result.reason == ("ZigZag unrolls M on D1; the weight-stationary array keeps M temporal "
                             "(rows <- K, cols <- N)")


def test_einsynth_to_zigzag_rejects_padded_trips():
    em = EinsumMapping("Z", "array", spatial={"rows": {"K": 32}, "cols": {"N": 32}},
                       tiles={"glb": {"N": 4, "K": 2}, "rf": {"M": 8}})
    Mapping({"Z": em}).validate(gemm(8, 70, 64), ARCH)  # a valid einsynth mapping (one empty tile op)
    result = zc.einsynth_to_zigzag(em, {"M": 8, "N": 70, "K": 64})
    assert result.mapping is None
    assert result.reason == "N: einsynth's temporal trips 4 != ceil(70/32) = 3, the only ones ZigZag accepts"


@st.composite
def einsynth_gemm_mappings(draw):
    """A weight-stationary GEMM mapping whose trips are exactly ceil(size / unrolling) (what ZigZag holds)."""
    sizes = {"M": draw(st.integers(1, 48)), "N": draw(st.integers(1, 48)), "K": draw(st.integers(1, 96))}
    unroll = {"M": 1, "N": draw(st.integers(1, min(32, sizes["N"]))), "K": draw(st.integers(1, min(32, sizes["K"])))}
    tiles = {"dram": {}, "glb": {}, "rf": {}}
    for rank, size in sizes.items():
        trips = -(-size // unroll[rank])
        divisors = [d for d in range(1, trips + 1) if trips % d == 0]
        rf = draw(st.sampled_from(divisors)) if rank == "M" else 1
        glb = draw(st.sampled_from([d for d in divisors if (trips // rf) % d == 0]))
        tiles["rf"][rank], tiles["glb"][rank], tiles["dram"][rank] = rf, glb, trips // rf // glb
    order = {level: list(draw(st.permutations(RANKS))) for level in ("dram", "glb")}
    em = EinsumMapping("Z", "array", spatial={"rows": {"K": unroll["K"]}, "cols": {"N": unroll["N"]}},
                       tiles=tiles, order=order)
    return sizes, em


@settings(max_examples=60, deadline=None)
@given(einsynth_gemm_mappings(), st.data())
def test_round_trip_einsynth_zigzag_einsynth(case, data):
    sizes, em = case
    Mapping({"Z": em}).validate(gemm(sizes["M"], sizes["N"], sizes["K"]), ARCH)
    to_zigzag = zc.einsynth_to_zigzag(em, sizes)
    assert to_zigzag.reason is None
    spec = to_zigzag.mapping[0]
    assert spec["spatial_mapping"] == {"D1": [f"K, {em.factor('spatial', 'N')}"],
                                       "D2": [f"C, {em.factor('spatial', 'K')}"]}
    nest = spec["temporal_ordering"]
    for rank, dim in (("M", "D"), ("N", "K"), ("K", "C")):
        assert math.prod(size for d, size in nest if d == dim) == -(-sizes[rank] // em.factor("spatial", rank))
    # ZigZag may give each operand its own GLB/DRAM boundary at or above einsynth's one
    rf_count = sum(1 for _ in zc._prime_factors(em.factor("rf", "M")))
    boundary = rf_count + sum(len(zc._prime_factors(trip)) for _, trip in em.loop_order("glb", RANKS))
    tops = {op: data.draw(st.integers(boundary, len(nest))) for op in ("W", "O", "I")}
    tops[data.draw(st.sampled_from(["W", "O", "I"]))] = boundary
    spatial = {"D1": {"K": em.factor("spatial", "N")}, "D2": {"C": em.factor("spatial", "K")}}
    back = zc.zigzag_to_einsynth(zigzag_allocation(spatial, nest, rf_count, tops), sizes)
    again = Mapping.from_dict(back.mapping)
    again.validate(gemm(sizes["M"], sizes["N"], sizes["K"]), ARCH)
    again = again.einsums["Z"]
    for level in ("dram", "glb", "rf"):
        assert again.loop_order(level, RANKS) == em.loop_order(level, RANKS)
    for rank in RANKS:
        assert again.factor("spatial", rank) == em.factor("spatial", rank)
    assert all(note.startswith("ZigZag keeps") for note in back.notes)
    assert len(back.notes) == sum(1 for top in tops.values() if top > boundary)


def test_roofline_bounds_the_simulator():
    m, n, k = 40, 72, 96
    cascade = gemm(m, n, k)
    roof = zc.roofline(cascade, ARCH, m * n * k)
    assert roof.dram_bytes == m * k + k * n + 4 * m * n
    assert roof.compute_cycles == math.ceil(m * n * k / 1024)
    assert roof.dram_cycles == math.ceil(roof.dram_bytes / 10)
    assert roof.cycles == max(roof.compute_cycles, roof.dram_cycles)
    report = run_sim(cascade, ARCH)
    assert report.compulsory_bytes == roof.dram_bytes
    assert report.cycles >= roof.cycles
