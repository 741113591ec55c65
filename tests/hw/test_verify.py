"""hw.verify: the regression behind ``einsynth verify`` (one build per architecture and simulator)."""

import pytest

from dataflow.errors import SpecError
from hw.spec import Architecture, ArraySpec, MemorySpec, PESpec
from hw.verify import bank_job, pe_job, run_verification, simulate_amaranth, verification_jobs

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _arch(dataflow="weight-stationary"):
    return Architecture(name="verify-me", array=ArraySpec(rows=8, cols=3, dataflow=dataflow),
                        pe=PESpec(kind="mac-dequant", weight_formats=("int4", "ternary"), group_size=4),
                        memory=MemorySpec(rf_words_per_pe=1, glb_kib=64))


def test_verification_jobs():
    named = verification_jobs(_arch(), rows=4, cols=4)
    assert [name for name, _ in named] == [
        "pe mac-dequant int4", "array 4x3 weight-stationary int4",
        "array 4x3 weight-stationary int4 with back-pressure",
        "pe mac-dequant ternary", "array 4x3 weight-stationary ternary",
        "array 4x3 weight-stationary ternary with back-pressure",
    ]
    bank = bank_job([job for _, job in named])
    assert len(bank["units"]) == 4 and bank["run_units"] == [0, 1, 1, 2, 3, 3]


def test_verification_jobs_pass_on_amaranth():
    result = simulate_amaranth(bank_job([job for _, job in verification_jobs(_arch(), rows=3, cols=3)]))
    assert result["passed"], result["failures"][:3]


def test_run_verification(rtl_simulator, tmp_path):
    result = run_verification(_arch("output-stationary"), rtl_simulator, tmp_path, rows=2, cols=2)
    assert result.passed, result.summary()
    assert len(result.checks) == 6 and all(check.passed for check in result.checks)
    summary = result.summary().splitlines()
    assert summary[0] == f"einsynth verify verify-me on {rtl_simulator}:"
    assert summary[1].startswith("  PASS  pe mac-dequant int4: ")
    assert "cycles == array_tile_cost + stalls on every tile" in summary[2]
    assert summary[-1].startswith("6 passed, 0 failed in ")


def test_bench_detects_a_wrong_dut():
    """The checker is not vacuous: an int4 model against a uint4 PE fails, naming the cycle."""
    from hw.verify import build_dut

    job = pe_job(_arch().pe_params("int4"), seed=1, random_steps=2)
    assert simulate_amaranth(job)["passed"]
    wrong_dut = build_dut(dict(job, pe=dict(job["pe"], weight_format="uint4")))
    result = simulate_amaranth(job, dut=wrong_dut)
    assert not result["passed"] and result["failures"][0].startswith("cycle ")


def test_run_verification_wrong(tmp_path):
    with pytest.raises(SpecError, match=r"^simulator must be one of icarus, verilator, not 'xsim'$"):
        run_verification(_arch(), "xsim", tmp_path)
    with pytest.raises(SpecError, match=r"^verify-me: array.dataflow: input-stationary has no RTL array to verify$"):
        run_verification(_arch("input-stationary"), "icarus", tmp_path)
