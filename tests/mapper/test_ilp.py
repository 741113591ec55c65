"""The mapping ILP: build -> solve -> decode, named constraints, exactness of the linearization,
solver backends, time limits, and the errors a user sees."""
import re

import pytest

from dataflow import load_cascade, parse_cascade
from dataflow.errors import EinsynthError, InfeasibleError
from hw.spec import architecture_from_dict, load_architecture
from mapper.api import MapResult, map_cascade, map_space
from mapper.cost import choice_cost, predict
from mapper.ilp import LinearModel, MappingILP
from mapper.mapping import Mapping, default_mapping
from mapper.solver import solve
from mapper.space import CascadeChoice, build_space

SMALL = {"name": "small", "array": {"rows": 4, "cols": 4}, "pe": {"kind": "mac"},
         "memory": {"rf_words_per_pe": 8, "glb_kib": 1, "dram_gbps": 4, "glb_banks": 4, "glb_port_bits": 256},
         "vector": {"lanes": 4, "ops": {"exp": {"mac": 6, "add": 1}, "max": {"max": 1}, "add": {"add": 1},
                                         "mul": {"mul": 1}, "div": {"div": 1}}}}

CHAIN = """
name: chain
shapes: {M: 8, N: 6, K: 8, L: 4}
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


@pytest.fixture(scope="module")
def small():
    return architecture_from_dict(SMALL)


@pytest.fixture(scope="module")
def chain_space(small):
    return build_space(parse_cascade(CHAIN), small)


def test_build_names_every_constraint(chain_space):
    model = MappingILP(chain_space, "latency").build()
    assert isinstance(model, LinearModel)
    names = [c[0] for c in model.constraints]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z_]+(\[[^\]]+\])?", n) for n in names), [n for n in names if "[" not in n]
    families = {n.split("[")[0] for n in names}
    assert {"one_config", "pe_rows", "pe_cols", "one_order", "split", "keep" if False else "one_share",
            "budget", "capacity", "pick_traffic", "traffic_exp", "lat_compute", "lat_dram"} <= families
    assert model.size["binaries"] > 0 and model.size["integers"] > 0


@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_solution_value_equals_cost_of_decoded_mapping(chain_space, objective):
    """The linearization is exact: the solver's objective is the cost model of what it decodes."""
    ilp = MappingILP(chain_space, objective)
    result = solve(ilp.build(), "cbc")
    assert result.status == "optimal" and result.gap == 0.0
    choice = ilp.decode(result.values)
    assert isinstance(choice, CascadeChoice)
    assert choice_cost(chain_space, choice).objective(objective) == pytest.approx(result.objective, rel=1e-6)


def test_highs_matches_cbc(chain_space):
    cbc = map_space(chain_space, "latency", solver="cbc")
    highs = map_space(chain_space, "latency", solver="highs")
    assert highs.solver == "highs" and highs.status == "optimal"
    assert highs.objective_value == pytest.approx(cbc.objective_value, rel=1e-6)


def test_map_cascade_on_a_preset():
    gemm = load_cascade("gemm", M=256, N=256, K=256)
    result = map_cascade(gemm, "mac-int8-32x32")
    assert isinstance(result, MapResult)
    assert result.status == "optimal" and result.gap == 0.0
    arch = load_architecture("mac-int8-32x32")
    result.mapping.validate(gemm, arch)
    assert Mapping.from_yaml(result.mapping.to_yaml()) == result.mapping
    base = predict(gemm, arch, default_mapping(gemm, arch))
    assert result.predicted.objective("latency") <= base.objective("latency")
    assert result.predicted.cycles > 0 and result.predicted.energy_pj["total"] > 0
    assert result.solve_seconds < 20


def test_edp_walks_the_pareto_front(chain_space):
    lat = map_space(chain_space, "latency")
    en = map_space(chain_space, "energy")
    edp = map_space(chain_space, "edp")
    assert edp.status == "optimal" and edp.gap == 0.0 and edp.solves >= 2
    assert edp.objective_value <= lat.predicted.objective("edp") * (1 + 1e-9)
    assert edp.objective_value <= en.predicted.objective("edp") * (1 + 1e-9)


def test_time_limit_returns_incumbent_and_gap():
    arch = load_architecture("fusemax")
    layer = load_cascade("transformer-layer")
    result = map_cascade(layer, arch, time_limit=1)
    assert result.status in ("optimal", "feasible", "time_limit_default")
    if result.status == "feasible":
        assert result.gap is None or result.gap >= 0
    if result.status == "optimal":
        assert result.gap == 0.0
    result.mapping.validate(layer, arch)


def test_infeasible_architecture_is_explained(small):
    # a LUT core whose K-group of 10 activations needs a 512-entry int16 table per group: the
    # smallest tile of the lookup einsum (the whole table, double-buffered) is 2 KiB > 1 KiB
    lut = architecture_from_dict({**SMALL, "name": "tiny-lut",
                                  "pe": {"kind": "lut", "act_format": "int8", "weight_formats": ["int4"],
                                         "lanes": 4, "lut_k": 4}})
    cascade = load_cascade("mpgemm-lut", M=2, N=4, K=20, KL=10)
    with pytest.raises(InfeasibleError) as info:
        map_cascade(cascade, lut)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(r"global buffer of 1 KiB of tiny-lut cannot hold the smallest tiles of Z: "
                     r"tensor H needs 2048 B \(1x1 x 512 untiled elements of 16 bits, double-buffered\)", message), message


def test_bad_arguments_are_user_errors(chain_space):
    cascade = parse_cascade(CHAIN)
    with pytest.raises(EinsynthError, match="objective must be one of latency, energy, edp, not 'speed'"):
        map_cascade(cascade, chain_space.arch, objective="speed")
    with pytest.raises(EinsynthError, match="solver must be one of cbc, highs, not 'gurobi'"):
        map_cascade(cascade, chain_space.arch, solver="gurobi")
    with pytest.raises(EinsynthError, match="time_limit must be a positive number of seconds, not 0"):
        map_cascade(cascade, chain_space.arch, time_limit=0)


# -- HiGHS numerics -------------------------------------------------------------------------------
# One-pass attention on FuseMax at 256 x 256: configs using a few PEs of BQK/SLNV take up to 4e9
# cycles, next to binaries and to an optimum of ~5e3 cycles. On that whole model HiGHS (1.15) called
# CBC's optimum infeasible and returned "optimal" latency and energy 7-10x above it.

@pytest.fixture(scope="module")
def attention_space():
    from mapper.api import default_options

    cascade = load_cascade("attention-1pass", P=256, M=256, M0=64)
    return build_space(cascade, load_architecture("fusemax"), default_options(cascade))


@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_highs_equals_cbc_on_wide_coefficients(attention_space, objective):
    ilp = MappingILP(attention_space, objective)
    model = ilp.build()
    assert model.coefficient_range()[1] > 1e9          # the numerics this test is about
    assert model.reduced is not None and model.reduced.coefficient_range()[1] < 1e7
    cbc = solve(model, "cbc")
    highs = solve(model, "highs")
    assert cbc.status == "optimal" and highs.status == "optimal" and highs.gap == 0.0, highs.note
    assert highs.objective == pytest.approx(cbc.objective, rel=1e-6)
    # HiGHS's point satisfies every row of the whole model, and is priced the same by the cost model
    assert model.violations(highs.values, 1e-6, 1e-4) == []
    cost = choice_cost(attention_space, ilp.decode(highs.values)).objective(objective)
    assert cost == pytest.approx(cbc.objective, rel=1e-6)


def test_highs_on_the_whole_wide_model_is_not_called_optimal(attention_space):
    """Without the reduced form HiGHS's answer is not trusted: reported feasible, gap unknown."""
    model = MappingILP(attention_space, "latency").build()
    cbc = solve(model, "cbc")
    model.reduced = None
    highs = solve(model, "highs")
    assert highs.status in ("feasible", "no_solution", "infeasible")
    if highs.status == "feasible":
        assert highs.gap is None and highs.note
        assert highs.objective >= cbc.objective * (1 - 1e-6)


def test_reduced_model_drops_only_what_cannot_be_optimal(attention_space):
    """Variables fixed by the cutoff are exactly those whose being 1 forces the latency above it."""
    ilp = MappingILP(attention_space, "latency")
    model = ilp.build()
    reduced = model.reduced
    base = predict(attention_space.cascade, attention_space.arch, attention_space.default).objective_cycles
    assert model.cutoff == pytest.approx(base) and not model.cutoff_exact
    assert reduced.names is model.names and len(reduced.upper) == len(model.upper)
    for (name, ci), v in ilp.y.items():
        slow = attention_space.einsums[name].configs[ci].compute_cycles > base * (1 + 1e-9)
        assert (reduced.upper[v] == 0.0) == slow
    assert any(reduced.upper[v] == 0.0 for v in ilp.y.values())
    # a latency cap is a constraint of the model: cutting at it loses nothing
    capped = MappingILP(attention_space, "energy", latency_cap=base).build()
    assert capped.cutoff == base and capped.cutoff_exact


def test_cutoff_below_the_optimum_falls_back_to_the_whole_model(chain_space):
    ilp = MappingILP(chain_space, "latency", latency_bound=1.0)
    model = ilp.build()
    assert model.reduced is not None
    cbc = solve(model, "cbc")
    highs = solve(model, "highs")
    assert "inconclusive" in highs.note and "whole model" in highs.note
    assert highs.status == "optimal" and highs.objective == pytest.approx(cbc.objective, rel=1e-6)


def test_energy_without_cap_drops_latency_rows_and_recomputes_them(chain_space):
    ilp = MappingILP(chain_space, "energy")
    model = ilp.build()
    kept = {c[0].split("[")[0] for c in model.reduced.constraints}
    assert not kept & {"lat_compute", "lat_dram", "grp_array", "grp_vector", "grp_dram", "grp_serial"}
    highs = solve(model, "highs")
    assert highs.status == "optimal"
    assert model.violations(highs.values, 1e-9, 1e-9) == []          # latency variables recomputed
    choice = ilp.decode(highs.values)
    latency = sum(highs.values[v] for v, _ in ilp.latency_terms)
    assert latency == pytest.approx(choice_cost(chain_space, choice).objective_cycles, rel=1e-9)
    assert highs.objective == pytest.approx(solve(model, "cbc").objective, rel=1e-6)


def test_violations_name_the_broken_constraint(chain_space):
    ilp = MappingILP(chain_space, "latency")
    model = ilp.build()
    result = solve(model, "cbc")
    assert model.violations(result.values, 1e-9) == []
    name = next(iter(chain_space.einsums))
    chosen = next(v for (n, _), v in ilp.y.items() if n == name and result.values[v] > 0.5)
    broken = list(result.values)
    broken[chosen] = 0.0
    names = [v.name for v in model.violations(broken, 1e-9)]
    assert f"one_config[{name}]" in names
    broken[chosen] = 0.5
    assert any(n == f"integer[{model.names[chosen]}]" for n in (v.name for v in model.violations(broken)))


def test_highs_edp_equals_cbc(chain_space):
    cbc = map_space(chain_space, "edp", solver="cbc")
    highs = map_space(chain_space, "edp", solver="highs")
    assert highs.status == "optimal" and highs.gap == 0.0
    assert highs.objective_value == pytest.approx(cbc.objective_value, rel=1e-6)


def _brute_problems():
    from test_brute_vs_ilp import PROBLEMS

    wanted = ("gemm-2", "mpgemm-dequant-1", "mpgemm-bitserial-1", "mpgemm-lut-0", "mpgemm-shiftadd-1",
              "running-max-fused-0", "softmax3")
    return [p for p in PROBLEMS if p[0] in wanted]


@pytest.mark.parametrize("label,cascade,arch,objective,options", _brute_problems(),
                         ids=[p[0] for p in _brute_problems()])
def test_highs_equals_brute_force(label, cascade, arch, objective, options):
    """HiGHS variant of tests/mapper/test_brute_vs_ilp.py on problems of every PE kind and objective."""
    from mapper.brute import brute_force

    space = build_space(cascade, arch, options)
    highs = map_space(space, objective, solver="highs")
    brute = brute_force(space, objective)
    assert highs.status == "optimal" and highs.gap == 0.0
    assert highs.objective_value == pytest.approx(brute.objective_value, rel=1e-6), label
