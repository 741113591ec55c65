"""cocotb test module: :func:`pes_bench.run_instances` on every PE of the bank, all at once.

Started only by :func:`hw.verify.run_cocotb` (``test_module="pes_cocotb"``, see
:func:`pes_runner.run_cocotb_configs`), which passes the job through the environment; pytest does
not collect this file.
"""

import functools

import cocotb

from cocotb_pes import pes_bench
from hw.verify import run_in_cocotb


@cocotb.test()
async def pe_instances(dut):
    await run_in_cocotb(dut, functools.partial(pes_bench.run_instances, start_soon=cocotb.start_soon))
