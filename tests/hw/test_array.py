"""hw.array: the systolic array's cost view (array_tile_cost) and its RTL, tied together.

Every RTL bench streams tiles (full and partial, k not a multiple of lanes, max/min/zero
activations, every weight code) and checks each output row bit-exactly against the PE kind's
golden_gemm and each tile's measured cycles against array_tile_cost: exactly without stalls, and
cost + the cycles the array reported as stalls with random valid/ready back-pressure.
"""

import numpy as np
import pytest

from cocotb_benches.harness import run_rtl, tile_rows
from dataflow.errors import MappingError, SpecError
from hw.array import SystolicArray, TileCost, array_tile_cost
from hw.pe import available_kinds, get_kind, make_params
from hw.pe.mac import MacDequantParams, MacParams
from hw.spec import ArraySpec
from hw.verify import array_job, bank_job, simulate_amaranth

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

SHAPES = [(2, 2), (4, 4), (3, 5)]
DATAFLOWS = ["output-stationary", "weight-stationary"]
INT8 = MacParams()


# --- cost view --------------------------------------------------------------------------------

def _spec(rows, cols, dataflow="output-stationary"):
    return ArraySpec(rows=rows, cols=cols, dataflow=dataflow)


def test_tile_cost_output_stationary():
    cost = array_tile_cost(_spec(4, 4), INT8, 4, 4, 10)
    assert cost == TileCost(cycles=10 + 6 + 2, fill=0, compute=10, drain=8, steps=10, pe_steps=160,
                            step_cycles=1, actions={"mul_int8": 160, "add_int32": 160})
    # a partial tile costs as much time (the array does not know m, n) but fewer useful PE steps
    partial = array_tile_cost(_spec(4, 4), INT8, 2, 3, 10)
    assert partial.cycles == cost.cycles and partial.pe_steps == 2 * 3 * 10


def test_tile_cost_lanes_and_step_cycles():
    params = MacParams(lanes=4, step_cycles=3)
    cost = array_tile_cost(_spec(3, 5), params, 3, 5, 10)   # 10 = 2 full steps + a padded one
    assert cost.steps == 3 and cost.compute == 9
    assert cost.drain == (3 + 5 - 2) * 3 + 2
    assert cost.cycles == 9 + 20
    assert cost.pe_steps == 3 * 5 * 3 and cost.actions["mul_int8"] == 4 * cost.pe_steps


def test_tile_cost_weight_stationary():
    cost = array_tile_cost(_spec(4, 4, "weight-stationary"), INT8, 9, 3, 4)
    assert (cost.fill, cost.compute, cost.drain) == (4, 9, (4 + 4 - 1) + 2)
    assert cost.cycles == 4 + 9 + 9 and cost.steps == 9 and cost.pe_steps == 9 * 3 * 4


def test_tile_cost_input_stationary_mirrors_weight_stationary():
    ws = array_tile_cost(_spec(4, 8, "weight-stationary"), INT8, 20, 8, 4)
    input_stationary = array_tile_cost(_spec(4, 8, "input-stationary"), INT8, 8, 20, 4)
    assert input_stationary.cycles == ws.cycles and input_stationary.pe_steps == ws.pe_steps


@pytest.mark.parametrize("dataflow, m, n, k, message", [
    ("output-stationary", 5, 4, 8, "output-stationary tile m=5 exceeds rows=4"),
    ("output-stationary", 4, 6, 8, "output-stationary tile n=6 exceeds cols=4"),
    ("weight-stationary", 9, 4, 5, "weight-stationary tile k=5 needs 5 steps of 1 lanes, more than rows=4"),
    ("weight-stationary", 9, 5, 4, "weight-stationary tile n=5 exceeds cols=4"),
    ("input-stationary", 5, 9, 4, "input-stationary tile m=5 exceeds cols=4"),
    ("output-stationary", 0, 4, 8, "tile m must be a positive integer, not 0"),
])
def test_tile_cost_wrong(dataflow, m, n, k, message):
    with pytest.raises(MappingError, match=f"^{message}$"):
        array_tile_cost(_spec(4, 4, dataflow), INT8, m, n, k)


# --- construction -----------------------------------------------------------------------------

def test_init():
    array = SystolicArray(rows=3, cols=5, pe_params=INT8, dataflow="weight-stationary")
    assert (array.rows, array.cols, array.dataflow, array.step_cycles) == (3, 5, "weight-stationary", 1)
    assert array.tile_cost(7, 5, 3) == array_tile_cost(_spec(3, 5, "weight-stationary"), INT8, 7, 5, 3)
    assert sum(SystolicArray(rows=10, cols=2, pe_params=INT8).group_sizes) == 10


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(rows=0, cols=4), SpecError, "rows: must be a positive integer, not 0"),
    (dict(rows=4, cols=-1), SpecError, "cols: must be a positive integer, not -1"),
    (dict(rows=4, cols=4, dataflow="input-stationary"), SpecError,
     "dataflow: input-stationary has no RTL array (only output-stationary, weight-stationary); "
     "the simulator models it analytically"),
    (dict(rows=4, cols=4, dataflow="diagonal"), SpecError,
     "dataflow: must be one of output-stationary, weight-stationary, input-stationary, not 'diagonal'"),
    (dict(rows=4, cols=4, pe_params=object()), SpecError,
     "PE kind must be one of mac, mac-dequant, bitserial, lut, shiftadd, not None"),
])
def test_init_wrong(kwargs, error, message):
    kwargs.setdefault("pe_params", INT8)
    with pytest.raises(error) as info:
        SystolicArray(**kwargs)
    assert str(info.value) == message


# --- RTL: Amaranth simulator (fast tier) --------------------------------------------------------

def _check(result, expect_stalls):
    assert result["passed"], result["failures"][:5]
    tiles = tile_rows(result)
    assert tiles and all(t["measured"] == t["cost"] + t["stalls"] for t in tiles)
    if expect_stalls is True:
        assert sum(t["stalls"] for t in tiles) > 0
    elif expect_stalls is False:
        assert all(t["stalls"] == 0 for t in tiles)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("rows, cols", SHAPES)
@pytest.mark.parametrize("pressure", [1.0, 0.6], ids=["no-stalls", "back-pressure"])
def test_sim(rows, cols, dataflow, pressure):
    job = array_job(rows, cols, dataflow, INT8, seed=rows * 7 + cols, valid_probability=pressure,
                    ready_probability=pressure)
    _check(simulate_amaranth(job), expect_stalls=pressure < 1)


MORE_PES = [
    MacParams(weight_format="int4", lanes=2, step_cycles=3),
    MacParams(act_bits=16, weight_format="e2m1", acc_bits=40),
    MacDequantParams(weight_format="int4", group_size=2),
    MacDequantParams(weight_format="ternary", lanes=2, group_size=4, step_cycles=2),
]


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("params", MORE_PES, ids=lambda p: f"{p.kind}-{p.weight_format}-L{p.lanes}-S{p.step_cycles}")
def test_sim_more_pes(params, dataflow):
    job = array_job(3, 5, dataflow, params, seed=3, valid_probability=0.7, ready_probability=0.7)
    _check(simulate_amaranth(job), expect_stalls=True)


def test_sim_tall_array_spans_row_groups():
    """Seven rows make groups of 3, 3 and 1: the chained output mux and the psum chain cross groups."""
    assert SystolicArray(rows=7, cols=2, pe_params=INT8).group_sizes == [3, 3, 1]
    for dataflow in DATAFLOWS:
        _check(simulate_amaranth(array_job(7, 2, dataflow, INT8, seed=9, valid_probability=0.8,
                                           ready_probability=0.8)), expect_stalls=True)


OTHER_KINDS = [kind for kind in ("bitserial", "lut", "shiftadd") if get_kind(kind).is_available]


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_sim_any_pe_kind(kind, dataflow):
    """The array composes every registered kind through the PE contract alone."""
    params = make_params(kind)
    job = array_job(2, 3, dataflow, params, seed=4, valid_probability=0.8, ready_probability=0.8)
    # multi-cycle steps absorb short gaps, so back-pressure may or may not cost cycles here
    _check(simulate_amaranth(job), expect_stalls=None)
    stall_free = simulate_amaranth(array_job(2, 3, dataflow, params, seed=4))
    _check(stall_free, expect_stalls=False)
    assert tile_rows(stall_free)[0]["cost"] == array_tile_cost(
        _spec(2, 3, dataflow), params, *(tile_rows(stall_free)[0][x] for x in "mnk")).cycles


def test_all_kinds_registered():
    assert set(available_kinds()) >= {"mac", "mac-dequant"}


def test_no_stall_tiles_back_to_back_sum():
    """Back-to-back tiles cost exactly the sum of their tile costs (tiles do not overlap)."""
    job = array_job(3, 5, "output-stationary", INT8, seed=2)
    result = simulate_amaranth(job)
    tiles = tile_rows(result)
    assert result["passed"] and all(t["stalls"] == 0 for t in tiles)
    # the bench's total cycle count: every tile, plus nothing in between
    assert result["cycles"] == sum(t["measured"] for t in tiles)


# --- RTL: cocotb on the exported Verilog (one build per simulator) ---------------------------------

def _rtl_jobs():
    jobs = []
    for rows, cols in SHAPES:
        for dataflow in DATAFLOWS:
            jobs.append(array_job(rows, cols, dataflow, INT8, seed=rows + cols))
            jobs.append(array_job(rows, cols, dataflow, INT8, seed=rows * cols, valid_probability=0.6,
                                  ready_probability=0.6, corners=False))
    for dataflow in DATAFLOWS:
        jobs.append(array_job(3, 5, dataflow, MacDequantParams(weight_format="int4", group_size=2), seed=1,
                              valid_probability=0.7, ready_probability=0.7))
    return jobs


def test_rtl(rtl_simulator, cocotb_workdir):
    """Shapes 2x2, 4x4, 3x5, both dataflows, with and without back-pressure, plus a dequant array,
    on Icarus / Verilator: one bank, one build."""
    jobs = _rtl_jobs()
    result = run_rtl(bank_job(jobs), rtl_simulator, cocotb_workdir, toplevel="arrays")
    assert len(result["runs"]) == len(jobs)
    for job, run in zip(jobs, result["runs"]):
        stalls = sum(t["stalls"] for t in run["tiles"])
        assert all(t["measured"] == t["cost"] + t["stalls"] for t in run["tiles"])
        assert (stalls > 0) == (job["valid_probability"] < 1)
    counts = np.array([[t["measured"], t["cost"]] for t in tile_rows(result) if t["stalls"] == 0])
    assert len(counts) > 20 and np.array_equal(counts[:, 0], counts[:, 1])
