"""The simulator's cost: the Llama-2-7B layer at sequence 4096 on a 128x128 array in under 5 s
and 1 GB, and run time that does not grow with the number of tiles.

CPU time of this process (``time.process_time``) is measured, so other jobs on the machine do
not make the test flaky.
"""
import time
import tracemalloc

from dataflow import load_cascade
from dataflow.library.models import layer_shapes
from mapper import default_mapping
from mapper.mapping import EinsumMapping, Mapping
from sim import run_sim


def _cpu(fn):
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def test_llama2_7b_layer_at_seq_4096_on_128x128(make_arch):
    import hw.array  # noqa: F401  (imports are not simulation time)

    arch = make_arch(rows=128, cols=128, vector_lanes=128, glb_kib=16384, dram_gbps=400.0)
    shapes = layer_shapes("llama-2-7b", 4096)
    shapes["M0"] = 128
    cascade = load_cascade("transformer-layer", **shapes)
    mapping = default_mapping(cascade, arch)
    report, seconds = _cpu(lambda: run_sim(cascade, arch, mapping))
    assert sum(info["tile_ops"] for info in report.einsums.values()) > 5_000_000
    assert seconds < 5.0
    tracemalloc.start()
    run_sim(cascade, arch, mapping)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 30


def test_run_time_does_not_grow_with_tiles(make_arch):
    arch = make_arch(rows=32, cols=32)

    def gemm(size):
        cascade = load_cascade("gemm", M=size, N=size, K=size)
        em = EinsumMapping("Z", "array", {"rows": {"M": 32}, "cols": {"N": 32}},
                           {"dram": {"M": size // 32, "N": size // 32, "K": size // 64}, "rf": {"K": 64}})
        return cascade, Mapping({"Z": em})

    small, large = gemm(256), gemm(65536)
    run_sim(*small[:1], arch, small[1])
    (r_small, t_small) = _cpu(lambda: run_sim(small[0], arch, small[1]))
    (r_large, t_large) = _cpu(lambda: run_sim(large[0], arch, large[1]))
    ratio = r_large.einsums["Z"]["tile_ops"] / r_small.einsums["Z"]["tile_ops"]
    assert ratio > 1e7
    assert t_large < 10 * max(t_small, 0.01)
