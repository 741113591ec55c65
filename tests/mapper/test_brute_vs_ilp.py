"""The ILP optimum equals the brute-force optimum of the same cost model, on random small problems.

Problems span GEMMs on the three dataflows, mpGEMMs on every PE kind, and 2-3-einsum cascades
(including a running-max recurrence that the ILP may run as a fused 2D + 1D pipeline), on several
tiny architectures (4x4-class arrays, 1-2 KiB global buffers). For each, the ILP's mapping is also
checked against the baseline (``default_mapping``) and, with the simulator, against the
simulator's cycles and DRAM traffic.
"""
import random
from dataclasses import replace

import pytest

from dataflow import load_cascade, parse_cascade
from hw.spec import architecture_from_dict
from mapper.api import map_space
from mapper.brute import brute_force
from mapper.cost import predict
from mapper.space import SpaceOptions, build_space

VECTOR = {"lanes": 4, "bits": 16, "rf_words": 64,
          "ops": {"exp": {"mac": 6, "add": 1}, "max": {"max": 1}, "add": {"add": 1}, "mul": {"mul": 1},
                  "div": {"div": 1}, "mac": {"mac": 1}}}


def arch(name, rows, cols, dataflow="output-stationary", pe=None, glb_kib=1, gbps=4.0, vector=False):
    data = {"name": name, "array": {"rows": rows, "cols": cols, "dataflow": dataflow},
            "pe": pe or {"kind": "mac"},
            "memory": {"rf_words_per_pe": 8, "glb_kib": glb_kib, "dram_gbps": gbps,
                       "glb_banks": 4, "glb_port_bits": 256}}
    if vector:
        data["vector"] = VECTOR
    return architecture_from_dict(data)


CHAIN = """
name: chain
shapes: {M: %d, N: %d, K: %d, L: %d}
tensors:
  A: {ranks: [M, K], format: int8}
  B: {ranks: [K, N], format: int8}
  C: {ranks: [N, L], format: int8}
  T: {ranks: [M, N], format: int8}
  Z: {ranks: [M, L], format: int32}
einsums:
  - T[m, n] = A[m, k] * B[k, n]
  - Z[m, l] = T[m, n] * C[n, l]
"""

GEMM_RELU = """
name: gemm-relu
shapes: {M: %d, N: %d, K: %d}
tensors:
  A: {ranks: [M, K], format: int8}
  B: {ranks: [K, N], format: int8}
  Z: {ranks: [M, N], format: int32}
  Y: {ranks: [M, N], format: int32}
einsums:
  - Z[m, n] = A[m, k] * B[k, n]
  - Y[m, n] = max(Z[m, n], 0)
"""

RUNNING_MAX = """
name: running-max
shapes: {P: %d, M: %d, M0: %d}
partitions: {M: [M1, M0]}
default_format: fp16
tensors:
  S: [M, P]
einsums:
  - {einsum: "LM[m1, p] = S[m1, m0, p]", reduce: max}
  - {einsum: "RM[m1+1, p] = max(RM[m1, p], LM[m1, p])", init: -inf}
  - OUT[p] = RM[M1, p] * 2
"""

BATCHED = """
name: batched-gemm
shapes: {B: %d, M: %d, N: %d, K: %d}
tensors:
  A: {ranks: [B, M, K], format: int8}
  W: {ranks: [K, N], format: int8}
  Z: {ranks: [B, M, N], format: int32}
einsums:
  - Z[b, m, n] = A[b, m, k] * W[k, n]
"""

SOFTMAX3 = """
name: softmax3
shapes: {M: %d, P: %d}
default_format: fp16
tensors:
  X: [M, P]
einsums:
  - {einsum: "GM[p] = X[m, p]", reduce: max}
  - SN[m, p] = exp(X[m, p] - GM[p])
  - SD[p] = SN[m, p]
"""


def _problems():
    rng = random.Random(20261121)
    r = lambda lo, hi: rng.randint(lo, hi)  # noqa: E731
    out = []
    flows = ["output-stationary", "weight-stationary", "input-stationary"]
    for i in range(6):
        a = arch(f"mac{i}", rng.choice([2, 4]), rng.choice([4, 8]), flows[i % 3], glb_kib=rng.choice([1, 2]),
                 gbps=rng.choice([2.0, 8.0, 64.0]), vector=i % 2 == 1)
        out.append((f"gemm-{i}", load_cascade("gemm", M=r(3, 24), N=r(3, 16), K=r(4, 24)), a,
                    ["latency", "energy", "edp"][i % 3], SpaceOptions()))
    kinds = [
        ("mpgemm-dequant", {"kind": "mac-dequant", "act_format": "int8", "weight_formats": ["int4"],
                            "group_size": 16, "scale_bits": 8}, dict(M=r(3, 6), N=r(3, 6), K=32, KI=16)),
        ("mpgemm-bitserial", {"kind": "bitserial", "act_format": "int8", "weight_formats": ["int4"], "lanes": 4,
                              "group_size": 16}, dict(M=r(2, 4), N=r(2, 4), K=16, KI=8)),
        ("mpgemm-lut", {"kind": "lut", "act_format": "int8", "weight_formats": ["int4"], "lanes": 4, "lut_k": 4},
         dict(M=r(2, 4), N=r(3, 6), K=16)),
        ("mpgemm-shiftadd", {"kind": "shiftadd", "act_format": "int8", "weight_formats": ["uint3"], "lanes": 4,
                             "lut_k": 4}, dict(M=r(2, 4), N=r(3, 6), K=16)),
    ]
    for j, (workload, pe, shapes) in enumerate(kinds):
        for v in range(2):
            a = arch(f"{pe['kind']}{v}", 4, 4, pe=pe, glb_kib=1 + v, gbps=[4.0, 32.0][v], vector=v == 1)
            # the weight-preprocessing einsums of these cascades leave many intermediates: keep the
            # on-chip choice for the second instance only (the brute force is exponential in it)
            opts = SpaceOptions(onchip=workload in ("mpgemm-dequant", "mpgemm-bitserial") or
                                (v == 1 and workload != "mpgemm-lut"))
            out.append((f"{workload}-{v}", load_cascade(workload, **shapes), a, ["latency", "energy"][(j + v) % 2],
                        opts))
    for i in range(3):
        a = arch(f"chain{i}", 4, 4, flows[i % 2], glb_kib=1, gbps=[4.0, 16.0, 2.0][i], vector=i == 2)
        c = parse_cascade(CHAIN % (r(4, 8), r(4, 8), r(4, 8), r(4, 8)))
        out.append((f"chain-{i}", c, a, ["latency", "energy", "edp"][i], SpaceOptions()))
    for i in range(2):
        a = arch(f"relu{i}", 4, 4, glb_kib=1, gbps=[8.0, 3.0][i], vector=i == 1)
        out.append((f"gemm-relu-{i}", parse_cascade(GEMM_RELU % (r(4, 12), r(4, 12), r(4, 12))), a,
                    ["latency", "edp"][i], SpaceOptions()))
    for i in range(2):
        a = arch(f"rmax{i}", 4, 4, glb_kib=1, gbps=[4.0, 64.0][i], vector=True)
        out.append((f"running-max-{i}", parse_cascade(RUNNING_MAX % (r(4, 8), 8, [2, 4][i])), a,
                    ["latency", "energy"][i], SpaceOptions()))
    for i in range(2):  # without the on-chip choice, only the fused pipeline keeps LM and RM on chip
        a = arch(f"rmaxf{i}", 4, 4, glb_kib=1, gbps=[1.0, 2.0][i], vector=True)
        out.append((f"running-max-fused-{i}", parse_cascade(RUNNING_MAX % (r(4, 8), 8, [2, 4][i])), a,
                    ["latency", "energy"][i], SpaceOptions(onchip=False)))
    for i, flow in enumerate(flows[:2]):  # B and M (or K) too short alone for the array's dimension
        a = arch(f"bgemm{i}", 8, 4, flow, glb_kib=1, gbps=64.0)
        shapes = (r(2, 4), 4, r(3, 6), 4) if i == 0 else (r(2, 3), r(3, 5), r(3, 6), 2)
        out.append((f"batched-gemm-{i}", parse_cascade(BATCHED % shapes), a, "latency", SpaceOptions()))
    a = arch("smax", 4, 4, glb_kib=1, gbps=8.0, vector=True)
    out.append(("softmax3", parse_cascade(SOFTMAX3 % (r(4, 8), r(4, 8))), a, "edp", SpaceOptions()))
    return out


PROBLEMS = _problems()


def test_fused_pipeline_is_exercised():
    """At least one optimum runs the recurrence as one fused 2D + 1D pipeline group."""
    fused = []
    for label, cascade, arch, objective, options in PROBLEMS:
        if label.startswith("running-max-fused"):
            result = map_space(build_space(cascade, arch, options), objective)
            fused.append(bool(result.choice.fused))
            if result.choice.fused:
                assert any(len(g.einsums) > 1 and g.loops for g in result.mapping.schedule)
    assert any(fused)


def test_two_ranks_share_an_array_dimension():
    """Where no single rank fills the rows, the optimum flattens two ranks onto them, and it is
    faster than the best mapping of the space with one rank per dimension."""
    for label, cascade, arch, objective, options in PROBLEMS:
        if not label.startswith("batched-gemm-0"):
            continue
        best = map_space(build_space(cascade, arch, options), objective)
        assert len(best.mapping.einsums["Z"].spatial["rows"]) == 2, best.mapping.einsums["Z"].spatial
        single = map_space(build_space(cascade, arch, replace(options, multi_rank_spatial=False)), objective)
        assert best.objective_value < single.objective_value


def test_enough_problems():
    assert len(PROBLEMS) >= 20
    kinds = {p[2].pe.kind for p in PROBLEMS}
    assert kinds == {"mac", "mac-dequant", "bitserial", "lut", "shiftadd"}
    assert {len(p[1].einsums) for p in PROBLEMS} >= {1, 2, 3}
    assert {p[2].array.dataflow for p in PROBLEMS} == {"output-stationary", "weight-stationary", "input-stationary"}


@pytest.mark.parametrize("label,cascade,arch,objective,options", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_ilp_equals_brute_force(label, cascade, arch, objective, options):
    space = build_space(cascade, arch, options)
    ilp = map_space(space, objective)
    brute = brute_force(space, objective)
    assert brute.points > 10
    assert ilp.status == "optimal"
    assert ilp.objective_value == pytest.approx(brute.objective_value, rel=1e-6), (
        f"{label}: ILP {ilp.objective_value} vs brute force {brute.objective_value} ({brute.points} points)")
    # the ILP mapping is a valid mapping, and never worse than the baseline
    ilp.mapping.validate(cascade, arch)
    if space.default is not None:
        base = predict(cascade, arch, space.default)
        assert ilp.objective_value <= base.objective(objective) * (1 + 1e-9)


def _ample(arch):
    """``arch`` with DRAM and GLB bandwidth high enough that nothing waits for memory."""
    memory = replace(arch.memory, dram_gbps=arch.memory.dram_gbps * 1e5, glb_banks=64, glb_port_bits=4096)
    return replace(arch, name=arch.name + "-ample", memory=memory)


def test_predictions_equal_simulator():
    """Mapper predictions equal the simulator's on the mappings of these problems (the ILP's and the
    baseline): DRAM and GLB bytes, DRAM, GLB and compute energy and unit busy cycles always, and cycles on every
    mapping that does not stall: the same mapping on the architecture with ample memory bandwidth,
    unless the simulator still finds units waiting for each other within a pipeline step or steps
    paced by their (at least one-cycle) DRAM transfers."""
    from sim import run_sim

    compared = skipped = 0
    for label, cascade, arch, objective, options in PROBLEMS:
        space = build_space(cascade, arch, options)
        mappings = [map_space(space, "latency").mapping]
        if space.default is not None:
            mappings.append(space.default)
        for mapping in mappings:
            pred = predict(cascade, arch, mapping)
            rep = run_sim(cascade, arch, mapping)
            assert pred.accesses["dram_read_bit"] == pytest.approx(rep.dram_read_bytes * 8), label
            assert pred.accesses["dram_write_bit"] == pytest.approx(rep.dram_write_bytes * 8), label
            assert pred.energy_pj["dram"] == pytest.approx(rep.energy.by_component["dram"]), label
            glb, port_bytes = rep.accesses["glb"], arch.memory.glb_port_bits / 8
            assert pred.accesses["glb_read"] * port_bytes == pytest.approx(glb["read_bytes"], abs=1), label
            assert pred.accesses["glb_write"] * port_bytes == pytest.approx(glb["write_bytes"], abs=1), label
            sim_glb = rep.energy.by_component["glb"]   # whole port accesses: within one read and one write
            one_access = 2 * sim_glb / max(1, glb["reads"] + glb["writes"] - 2)
            assert pred.energy_pj["glb"] == pytest.approx(sim_glb, abs=one_access), label
            for unit in ("array", "vector"):
                sim_pj = rep.energy.by_component.get(unit, 0.0) + rep.energy.by_component.get(f"{unit}_rf", 0.0)
                assert pred.energy_pj[unit] == pytest.approx(sim_pj), f"{label}: {unit} energy"
            fast = _ample(arch)
            pred_f = predict(cascade, fast, mapping)
            rep_f = run_sim(cascade, fast, mapping)
            assert rep_f.stalls["bank_conflict"] == 0
            for unit in ("array", "vector"):
                assert pred_f.busy[unit] == rep_f.busy.get(unit, 0), f"{label}: {unit} busy"
            fill = pred_f.fill_cycles
            if rep_f.stalls["dependency"] or rep_f.stalls["dram_bandwidth"] > fill:
                skipped += 1   # a stalling mapping: units wait for each other, or 1-cycle transfers pace the steps
                continue
            assert pred_f.cycles == rep_f.cycles, f"{label}: predicted {pred_f.cycles} vs simulated {rep_f.cycles}"
            compared += 1
    assert compared >= len(PROBLEMS), (compared, skipped)
