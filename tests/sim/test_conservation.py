"""Conservation laws over many random valid mappings (hypothesis).

* the useful operator applications the simulator counts, tile by tile, equal the workload's
  (:func:`dataflow.analysis.op_counts`), per einsum and category;
* DRAM reads cover every input at least once, writes every output, so the traffic is at least the
  compulsory bytes;
* every utilization lies in [0, 1], no stall is negative and no unit is busier than the run;
* the energy total equals the sum of its breakdown, by component and by action.
"""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import load_cascade, op_counts
from dataflow.analysis import footprints
from dataflow.errors import MappingError
from sim import run_sim

CASES = {
    "gemm": {"M": 37, "N": 21, "K": 50},
    "softmax": {"M": 40, "P": 12},
    "layernorm": {"E": 24, "P": 10},
    "attention-3pass": {"P": 12, "M": 20, "E": 8, "F": 8},
    "attention-2pass": {"P": 10, "M": 16, "E": 8, "F": 8, "M0": 4},
    "attention-1pass": {"P": 6, "M": 21, "E": 4, "F": 4, "M0": 8},      # padded: 3 x 8 > 21
    "mpgemm-dequant": {"M": 6, "N": 10, "K": 64, "KI": 16},
    "mpgemm-bitserial": {"M": 4, "N": 6, "K": 32, "KI": 16},
    "mpgemm-lut": {"M": 4, "N": 6, "K": 16},
}


def check_laws(cascade, report):
    want = {}
    for oc in op_counts(cascade):
        want.setdefault(oc.einsum, {})[oc.category] = oc.count
    got = {e: {c: n for c, n in cats.items() if n} for e, cats in report.ops.items()}
    assert got == want

    fp = footprints(cascade)
    assert report.dram_read_bytes >= sum(fp[t] for t in cascade.inputs)
    assert report.dram_write_bytes >= sum(fp[t] for t in cascade.outputs)
    assert report.dram_bytes >= report.compulsory_bytes

    for unit, u in report.utilization.items():
        assert 0.0 <= u <= 1.0, (unit, u)
    for unit, b in report.busy.items():
        assert 0 <= b <= report.cycles, (unit, b)
    assert all(v >= 0 for v in report.stalls.values())

    e = report.energy
    assert e.total > 0
    assert math.isclose(e.total, math.fsum(e.by_component.values()), rel_tol=1e-12)
    assert math.isclose(e.total, math.fsum(e.by_action.values()), rel_tol=1e-12)
    d = report.to_dict()["energy_pj"]
    assert d["total"] == e.total


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(CASES)),
       dataflow=st.sampled_from(["output-stationary", "weight-stationary", "input-stationary"]),
       dram_gbps=st.sampled_from([2.0, 50.0]))
def test_conservation_random_mappings(make_arch, random_mapping, data, name, dataflow, dram_gbps):
    cascade = load_cascade(name, **CASES[name])
    kind = "bitserial" if name == "mpgemm-bitserial" else "mac"
    arch = make_arch(rows=4, cols=4, dataflow=dataflow, vector_lanes=8, dram_gbps=dram_gbps, glb_banks=2,
                     kind=kind, weight_format="int4" if kind != "mac" else "int8")
    mapping = random_mapping(data, cascade, arch)
    try:
        mapping.validate(cascade, arch)
    except MappingError:
        return
    check_laws(cascade, run_sim(cascade, arch, mapping))


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(P=st.integers(3, 50), M=st.integers(4, 60), M0=st.sampled_from([4, 8, 16]), p_tile=st.integers(1, 8))
def test_conservation_fused_attention(make_arch, fused_attention, P, M, M0, p_tile):
    """M need not be a multiple of M0: the padded m0 positions of the last m1 are not useful work."""
    cascade = load_cascade("attention-1pass", P=P, M=M, E=8, F=8, M0=M0)
    arch = make_arch(rows=8, cols=8, vector_lanes=8)
    check_laws(cascade, run_sim(cascade, arch, fused_attention(cascade, arch, p_tile)))


@pytest.mark.parametrize("name", sorted(CASES) + ["transformer-layer"])
def test_conservation_default_mapping(make_arch, name):
    cascade = load_cascade(name, **CASES.get(name, {}))
    check_laws(cascade, run_sim(cascade, make_arch(rows=8, cols=8, vector_lanes=16)))
