"""run_sim's Report, the pipeline behaviour of the engine, stall attribution and bad input."""
import json

import pytest
import yaml

from dataflow import load_cascade
from dataflow.errors import MappingError
from mapper import default_mapping, load_mapping
from mapper.mapping import EinsumMapping, Mapping
from sim import Report, run_sim


def test_report_json_has_the_contract_keys(make_arch):
    cascade = load_cascade("gemm", M=20, N=12, K=30)
    arch = make_arch(rows=8, cols=8)
    report = run_sim(cascade, arch)                   # mapping=None: the default mapping
    assert isinstance(report, Report)
    data = json.loads(report.to_json())
    for key in ("cycles", "utilization", "energy_pj", "dram_bytes", "mapping"):
        assert key in data
    assert data["cycles"] == report.cycles > 0
    assert data["energy_pj"]["total"] == report.energy.total
    assert data["dram_bytes"] == report.dram_read_bytes + report.dram_write_bytes
    assert set(data["stalls"]) == {"dram_bandwidth", "bank_conflict", "dependency"}
    assert load_mapping(yaml.safe_dump(data["mapping"]), cascade, arch) == default_mapping(cascade, arch)
    table = report.render_table()
    assert "cycles" in table and "energy total" in table and "stall dram_bandwidth" in table


def test_invalid_mapping_is_a_one_line_mapping_error(make_arch, tmp_path):
    cascade = load_cascade("gemm", M=100, N=8, K=8)
    path = tmp_path / "mapping.yaml"
    path.write_text("einsums:\n  Z: {unit: array, spatial: {rows: {M: 8}}, tiles: {glb: {M: 4}, dram: {N: 8}, "
                    "rf: {K: 8}}}\n")
    with pytest.raises(MappingError) as info:
        run_sim(cascade, make_arch(rows=8, cols=8), str(path))
    assert str(info.value) == f"{path}: einsums.Z.tiles.glb.M: factors 4*8 = 32 do not cover rank M (size 100)"


def _gemm_steps(make_arch, dram_gbps, glb_banks=32):
    """A GEMM streamed in 6 row blocks: each step loads an A block and stores a Z block."""
    arch = make_arch(rows=8, cols=8, dram_gbps=dram_gbps, glb_banks=glb_banks, vector=False)
    cascade = load_cascade("gemm", M=48, N=8, K=64)
    em = EinsumMapping("Z", "array", {"rows": {"M": 8}, "cols": {"N": 8}},
                       {"dram": {"M": 6}, "rf": {"K": 64}})
    return run_sim(cascade, arch, Mapping({"Z": em}))


def test_double_buffering_overlaps_load_compute_and_store(make_arch):
    for gbps in (0.5, 4.0, 64.0, 1e4):
        r = _gemm_steps(make_arch, gbps)
        compute, dram = r.busy["array"], r.busy["dram"]
        assert max(compute, dram) <= r.cycles < compute + dram
    fast = _gemm_steps(make_arch, 1e4)           # DRAM ~free: compute bound, only fill/drain visible
    assert fast.cycles - fast.busy["array"] == fast.stalls["dram_bandwidth"] <= 4
    slow = _gemm_steps(make_arch, 0.5)           # DRAM bound: the array waits
    assert slow.stalls["dram_bandwidth"] > slow.busy["array"]
    assert slow.cycles - slow.busy["dram"] < slow.busy["array"] / 6 + 1


def test_glb_bandwidth_stalls_are_bank_conflicts(make_arch):
    wide = _gemm_steps(make_arch, 1e4, glb_banks=32)
    narrow = _gemm_steps(make_arch, 1e4, glb_banks=1)
    assert wide.stalls["bank_conflict"] == 0
    assert narrow.stalls["bank_conflict"] > 0
    assert narrow.cycles == wide.cycles + narrow.stalls["bank_conflict"]


def test_fused_attention_runs_the_2d_and_1d_arrays_in_a_pipeline(make_arch, fused_attention):
    cascade = load_cascade("attention-1pass", P=64, M=64, E=16, F=16, M0=16)
    arch = make_arch(rows=16, cols=16, vector_lanes=16, dram_gbps=1e4)
    fused = run_sim(cascade, arch, fused_attention(cascade, arch, 16))
    assert fused.busy["array"] > 0 and fused.busy["vector"] > 0
    # the two units overlap across steps: the run is shorter than their busy times back to back
    assert fused.cycles < fused.busy["array"] + fused.busy["vector"]
    assert fused.cycles >= max(fused.busy["array"], fused.busy["vector"])
    # nothing but the two units and their hand-offs limit it: the rest is dependency stall
    assert fused.stalls["dependency"] == fused.cycles - max(fused.busy["array"], fused.busy["vector"]) \
        - fused.stalls["dram_bandwidth"] - fused.stalls["bank_conflict"]
    # the intermediates never leave the chip: DRAM sees Q, K and V (K, V once per P block) and AV
    unfused = run_sim(cascade, arch)
    assert fused.dram_bytes < unfused.dram_bytes
    assert fused.dram_write_bytes == 64 * 16 * 4
    assert fused.cycles < unfused.cycles


def test_iterative_rank_runs_in_order(make_arch, fused_attention):
    """More M1 steps, same work: the recurrence over m1 keeps the pipeline in order, so the run
    grows with the number of steps (each step pays its 2D -> 1D -> 2D hand-offs)."""
    arch = make_arch(rows=16, cols=16, vector_lanes=16, dram_gbps=1e4)
    few = load_cascade("attention-1pass", P=16, M=64, E=16, F=16, M0=32)
    many = load_cascade("attention-1pass", P=16, M=64, E=16, F=16, M0=8)
    r_few = run_sim(few, arch, fused_attention(few, arch, 16))
    r_many = run_sim(many, arch, fused_attention(many, arch, 16))
    assert r_many.stalls["dependency"] > r_few.stalls["dependency"]


def test_onchip_intermediates_skip_dram(make_arch):
    cascade = load_cascade("softmax", M=64, P=16)
    arch = make_arch(rows=8, cols=8, vector_lanes=16)
    base = default_mapping(cascade, arch)
    kept = Mapping(base.einsums, onchip=("SN", "GM", "SD"), cascade=cascade.name)
    r_base, r_kept = run_sim(cascade, arch, base), run_sim(cascade, arch, kept)
    from dataflow.analysis import footprints
    fp = footprints(cascade)
    # kept: DRAM sees X (read by GM and by SN) and Y only; otherwise every intermediate is
    # written once and read back at least once
    assert r_kept.dram_read_bytes == 2 * fp["X"]
    assert r_kept.dram_write_bytes == fp["Y"]
    written = fp["SN"] + fp["GM"] + fp["SD"]
    assert r_base.dram_write_bytes == r_kept.dram_write_bytes + written
    assert r_base.dram_read_bytes >= r_kept.dram_read_bytes + written + fp["SN"]
    assert r_kept.cycles < r_base.cycles
