"""cocotb test module: runs :func:`pes_bench.run_pe` on every PE instance of the wrapper top at once.

Started only by :func:`pes_runner.run_job` (the job file is passed through the environment); pytest
does not collect this file.
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

import pes_bench


class CocotbIO:
    """Port access on the wrapper's flat ``u<i>__<port>`` ports."""

    def __init__(self, dut, prefix):
        self._dut, self._prefix, self._handles = dut, prefix, {}

    def handle(self, name):
        if name not in self._handles:
            self._handles[name] = getattr(self._dut, f"{self._prefix}__{name}")
        return self._handles[name]

    def set(self, name, value):
        handle = self.handle(name)
        handle.value = int(value) & ((1 << len(handle)) - 1)

    def get(self, name):
        value = self.handle(name).value
        return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)

    async def settle(self):
        await ReadOnly()

    async def tick(self):
        await RisingEdge(self._dut.clk)


@cocotb.test()
async def pe_instances(dut):
    job = json.loads(Path(os.environ["PE_BENCH_JOB"]).read_text())
    Clock(dut.clk, 10, unit="ns").start()
    ios = []
    for index, instance in enumerate(job["instances"]):
        params = pes_bench.params_from_dict(instance["params"])
        io = CocotbIO(dut, f"u{index}")
        # the bench reads the DUT's parameters back from its port widths
        assert len(io.handle("w")) == params.weight_payload_bits, f"u{index}: payload width"
        assert len(io.handle("a")) == params.act_bits * params.lanes, f"u{index}: activation width"
        assert len(io.handle("acc")) == params.acc_bits, f"u{index}: acc width"
        io.set("start", 0)
        ios.append((io, params, instance["steps"]))
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    tasks = [cocotb.start_soon(pes_bench.run_pe(io, params, steps, seed=job["seed"] + index))
             for index, (io, params, steps) in enumerate(ios)]
    results = [await task for task in tasks]
    Path(os.environ["PE_BENCH_RESULT"]).write_text(json.dumps(results))
    failed = [f"u{i}: {r['failures'][:3]} measured {r['measured'][:8]} expected {r['expected_cycles'][:8]}"
              for i, r in enumerate(results) if not r["passed"]]
    assert not failed, "; ".join(failed)
