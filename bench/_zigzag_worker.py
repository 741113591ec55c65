"""Run ZigZag (LOMA) on one GEMM; executed by bench/zigzag_compare.py inside .bench_venvs/zigzag.

Usage: python _zigzag_worker.py HW.yaml MAPPING.yaml M N K OUTDIR   -> prints one JSON line.
"""
import json
import logging
import sys
import time

logging.disable(logging.CRITICAL)

from zigzag.api import get_hardware_performance_zigzag  # noqa: E402


def main():
    hw, mapping, m, n, k, outdir = sys.argv[1:7]
    m, n, k = int(m), int(n), int(k)
    workload = [{"id": 0, "name": "gemm", "operator_type": "Gemm", "equation": "O[d][k]+=I[d][c]*W[c][k]",
                 "loop_dims": ["D", "C", "K"], "loop_sizes": [m, k, n],
                 "operand_precision": {"I": 8, "W": 8, "O": 32, "O_final": 32},
                 "operand_source": {"I": 0, "W": 0}}]
    start = time.perf_counter()
    energy, latency, _ = get_hardware_performance_zigzag(workload, hw, mapping, opt="latency", dump_folder=outdir,
                                                         loma_show_progress_bar=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"energy_pj": energy, "cycles": latency, "seconds": seconds}))


if __name__ == "__main__":
    main()
