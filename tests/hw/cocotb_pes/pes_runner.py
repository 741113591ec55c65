"""The pytest side of the PE bench (:mod:`.pes_bench`), shared by ``test_bitserial.py``,
``test_lut.py`` and ``test_shiftadd.py``: what a test per configuration and a test per simulator
run, and what they check. Both back-ends are :mod:`hw.verify`'s: the Amaranth simulator
(:func:`hw.verify.simulate_amaranth`) and cocotb on Icarus or Verilator
(:func:`hw.verify.run_cocotb`, running :mod:`.pes_cocotb`; the simulator comes from the
``rtl_simulator`` fixture, the build directory from ``cocotb_workdir``)."""

import functools
from pathlib import Path

import pytest

from cocotb_pes import pes_bench
from hw.export import to_verilog
from hw.pe import make_pe, pe_cost
from hw.verify import Bank, array_job, pe_job, run_cocotb, simulate_amaranth

TESTS_DIR = Path(__file__).resolve().parents[1]


def each_config(configs):
    """Decorator: an RTL test run once per configuration (its argument ``params``)."""
    return lambda test: pytest.mark.rtl(pytest.mark.parametrize("params", configs, ids=pes_bench.config_id)(test))


def check_run(params, run):
    """One PE's run: bit-exact in every cycle, and every step's start-to-done cycles equal the cost
    view, every kind of step (:func:`pes_bench.cost_cycles`) having been exercised."""
    assert run["failures"] == [], pes_bench.config_id(params)
    assert run["measured"] == run["expected_cycles"], pes_bench.config_id(params)
    assert set(run["measured"]) == pes_bench.cost_cycles(params), pes_bench.config_id(params)
    assert run["passed"]


def check_sim(params, *, seed):
    """The bench on the Amaranth simulator, for one configuration."""
    job = pes_bench.make_job([params], seed=seed)
    result = simulate_amaranth(job, Bank([make_pe(params)]), bench=pes_bench.run_instances)
    check_run(params, result["runs"][0])


@functools.lru_cache(maxsize=None)
def _bank_verilog(configs, toplevel):
    """The bank's Verilog, exported once per process for both simulators."""
    return to_verilog(Bank([make_pe(params) for params in configs]), name=toplevel)


def check_cocotb(configs, simulator, workdir, *, seed, toplevel):
    """Every configuration in one Verilog top (one build per simulator), all driven at once by
    the cocotb bench."""
    configs = tuple(configs)
    result = run_cocotb(pes_bench.make_job(configs, seed=seed), simulator, workdir,
                        verilog=_bank_verilog(configs, toplevel), toplevel=toplevel,
                        test_module="cocotb_pes.pes_cocotb", module_dir=TESTS_DIR)
    assert len(result.get("runs", [])) == len(configs), result["failures"][:5]
    for params, run in zip(configs, result["runs"]):
        check_run(params, run)
    assert result["passed"], result["failures"][:5]


def check_contract_bench(pe_params, array_params, *, seed):
    """hw.verify's generic bench (contract ports only, a kind's extra inputs tied to 0) on
    ``pe_params``, and 2x2 arrays of ``array_params`` in both dataflows, on the Amaranth simulator."""
    result = simulate_amaranth(pe_job(pe_params, seed=seed))
    assert result["passed"], result["failures"]
    assert result["measured_step_cycles"] == [pe_cost(pe_params).step_cycles]
    for dataflow in ("output-stationary", "weight-stationary"):
        result = simulate_amaranth(array_job(2, 2, dataflow, array_params, seed=seed))
        assert result["passed"], (dataflow, result["failures"])
