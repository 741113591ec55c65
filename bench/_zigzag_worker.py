"""Run ZigZag (LOMA) on one GEMM; executed by bench/zigzag_compare.py inside .bench_venvs/zigzag.

Usage: python _zigzag_worker.py HW.yaml MAPPING.yaml M N K OUTDIR   -> prints one JSON line:

``cycles`` and ``energy_pj`` (ZigZag's ``latency_total2`` and ``energy_total``), ``seconds`` and
``cpu_seconds`` (wall and CPU time of the ``get_hardware_performance_zigzag`` call), ``latency``
(the terms ZigZag adds up: ideal and mapped compute cycles, stall, on-loading, off-loading,
systolic drain) and ``mapping``, the best CostModelEvaluation's mapping in ZigZag's workload names
(``D`` = M, ``C`` = K, ``K`` = N; operands ``I`` = A, ``W`` = B, ``O`` = Z):

* ``spatial``: {array dimension: {loop dim: unrolling}} (``layer.spatial_mapping``);
* ``temporal``: {operand: [[[loop dim, size], ...] per memory level]} with memory levels and loops
  innermost first: LOMA's allocation of the loops to the memories (``temporal_mapping.mapping_dic_origin``,
  before the cost model's stationarity merge-down);
* ``levels``: {operand: [memory instance name per level]}, aligned with ``temporal``.

A MAPPING.yaml with a complete ``temporal_ordering`` (and a fixed spatial mapping) makes ZigZag price
that loop order instead of searching (its allocator still places the loops in the memories).
"""
import json
import logging
import resource
import sys
import time

logging.disable(logging.CRITICAL)

from zigzag.api import get_hardware_performance_zigzag  # noqa: E402


def best_mapping(cme):
    """The spatial unrolling and the per-operand, per-memory-level temporal loops of one CME."""
    spatial = {str(oa_dim): {str(dim): int(size) for dim, size in unrolling.items()}
               for oa_dim, unrolling in cme.layer.spatial_mapping.items()}
    temporal, levels = {}, {}
    for operand, per_level in cme.temporal_mapping.mapping_dic_origin.items():
        temporal[str(operand)] = [[[str(dim), int(size)] for dim, size in loops] for loops in per_level]
        mem_op = cme.memory_operand_links.layer_to_mem_op(operand)
        levels[str(operand)] = [level.name for level in cme.mem_hierarchy_dict[mem_op]][:len(per_level)]
    return {"spatial": spatial, "temporal": temporal, "levels": levels}


def cpu_seconds():
    """CPU time of this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main():
    hw, mapping, m, n, k, outdir = sys.argv[1:7]
    m, n, k = int(m), int(n), int(k)
    workload = [{"id": 0, "name": "gemm", "operator_type": "Gemm", "equation": "O[d][k]+=I[d][c]*W[c][k]",
                 "loop_dims": ["D", "C", "K"], "loop_sizes": [m, k, n],
                 "operand_precision": {"I": 8, "W": 8, "O": 32, "O_final": 32},
                 "operand_source": {"I": 0, "W": 0}}]
    start, cpu_start = time.perf_counter(), cpu_seconds()
    energy, latency, cmes = get_hardware_performance_zigzag(workload, hw, mapping, opt="latency",
                                                            dump_folder=outdir, loma_show_progress_bar=False)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    best = cmes[0][1][0][0]  # the per-layer CME under the SumStage's cumulative one (a single layer here)
    terms = {"ideal": best.ideal_cycle, "mapped_compute": best.ideal_temporal_cycle, "stall": best.stall_slack_comb,
             "onloading": best.data_onloading_cycle, "offloading": best.data_offloading_cycle,
             "systolic_drain": best.systolic_drain_cycle}
    print(json.dumps({"energy_pj": energy, "cycles": latency, "seconds": seconds,
                      "cpu_seconds": cpu, "latency": {name: float(value) for name, value in terms.items()},
                      "mapping": best_mapping(best)}))


if __name__ == "__main__":
    main()
