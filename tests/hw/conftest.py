"""Fixtures shared by the hw tests.

``cocotb_workdir``: a per-worker directory under ``build/`` (gitignored) that holds cocotb builds,
keyed by the Verilog's hash, so one build per design serves every test and later runs.
``rtl_simulator``: parametrize a test over Icarus and Verilator (each skipped when its tool is
missing: CI has at least one of them, see the Makefile's ``sim-tools``).
"""

from pathlib import Path

import pytest

from cocotb_benches.harness import SIMULATOR_PARAMS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cocotb_workdir(worker_id):
    path = REPO / "build" / "test-cocotb" / worker_id
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(params=SIMULATOR_PARAMS)
def rtl_simulator(request):
    return request.param
