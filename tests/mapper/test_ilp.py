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
