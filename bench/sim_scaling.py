"""Simulator run time against the number of tiles, and the Llama-2-7B layer at sequence 4096.

The engine prices a group's pipeline as a product of max-plus matrices over the classes of its
steps (``sim/engine.py``), so its run time depends on the loop nest's depth and the number of
distinct step classes, not on the number of tiles. This script measures it:

* GEMMs on a 32x32 output-stationary array, ever larger (4 to 5x10^11 tile operations);
* FuseMax-style 1-pass attention (one 2D + 1D pipeline group) with ever more steps;
* one Llama-2-7B transformer layer (d_model 4096, 32 heads, FFN 11008) at sequence length 4096
  on a 128x128 array with a 128-lane 1D array: wall time and peak memory, in a fresh process.

    .venv/bin/python bench/sim_scaling.py      # writes bench/results/sim_scaling.{md,png}
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataflow import load_cascade  # noqa: E402
from hw.spec import architecture_from_dict  # noqa: E402
from mapper.mapping import EinsumMapping, Group, Mapping  # noqa: E402
from sim import run_sim  # noqa: E402

VECTOR_OPS = {"exp": {"mac": 6, "add": 1}, "add": {"add": 1}, "mul": {"mul": 1}, "max": {"max": 1},
              "div": {"div": 1}, "mac": {"mac": 1}, "shift": {"shift": 1}}


def architecture(rows, lanes, glb_kib=16384, banks=32, port_bits=256, dram_gbps=400.0, clock_mhz=940.0):
    return architecture_from_dict({
        "name": f"mac-{rows}x{rows}", "clock_mhz": clock_mhz,
        "array": {"rows": rows, "cols": rows, "dataflow": "output-stationary"},
        "pe": {"kind": "mac", "act_format": "int8", "weight_formats": ["int8"], "acc_bits": 32},
        "vector": {"lanes": lanes, "bits": 16, "rf_words": 64 * lanes, "ops": VECTOR_OPS},
        "memory": {"rf_words_per_pe": 16, "glb_kib": glb_kib, "glb_banks": banks, "glb_port_bits": port_bits,
                   "dram_gbps": dram_gbps},
    })


def gemm_case(size, k_tile):
    cascade = load_cascade("gemm", M=size, N=size, K=size)
    em = EinsumMapping("Z", "array", {"rows": {"M": 32}, "cols": {"N": 32}},
                       {"dram": {"M": size // 32, "N": size // 32, "K": size // k_tile}, "rf": {"K": k_tile}},
                       {"dram": ["M", "N", "K"]})
    return cascade, Mapping({"Z": em})


def attention_case(seq, p_tile=32, m0=32):
    """attention-1pass fused over (P blocks, M1): one 2D + 1D pipeline group."""
    cascade = load_cascade("attention-1pass", P=seq, M=seq, E=64, F=64, M0=m0)
    s = cascade.shapes
    loops = {"P": seq // p_tile, "M1": s["M1"]}

    def em(name, unit, spatial, glb=None, rf=None, ranks=("P", "M1")):
        return EinsumMapping(name, unit, spatial, {"dram": {r: loops[r] for r in ranks if loops[r] > 1},
                                                   "glb": glb or {}, "rf": rf or {}})
    lanes = {"lanes": {"P": p_tile}}
    einsums = {
        "BQK": em("BQK", "array", {"rows": {"P": p_tile}, "cols": {"M0": m0}}, rf={"E": 64}),
        "LM": em("LM", "vector", lanes, rf={"M0": m0}), "RM": em("RM", "vector", lanes),
        "SLN": em("SLN", "vector", lanes, glb={"M0": m0}), "SLD": em("SLD", "vector", lanes, rf={"M0": m0}),
        "SLNV": em("SLNV", "array", {"rows": {"P": p_tile}, "cols": {"F": 32}}, glb={"F": 2}, rf={"M0": m0}),
        "PRM": em("PRM", "vector", lanes), "RD": em("RD", "vector", lanes),
        "RNV": em("RNV", "vector", lanes, glb={"F": 64}), "AV": em("AV", "vector", lanes, glb={"F": 64}, ranks=("P",)),
    }
    return cascade, Mapping(einsums, (Group(tuple(einsums), (("P", loops["P"]), ("M1", loops["M1"]))),))


def timed(cascade, arch, mapping, repeat=3):
    run_sim(cascade, arch, mapping)                       # warm caches and imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        report = run_sim(cascade, arch, mapping)
        times.append(time.perf_counter() - start)
    return report, statistics.median(times)


def llama_child():
    """Run in a fresh process: the Llama-2-7B layer; prints JSON."""
    import tracemalloc

    from dataflow.library.models import layer_shapes
    from mapper import default_mapping

    import hw.array  # noqa: F401  (imports are not simulation time)

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    arch = architecture(128, 128)
    shapes = layer_shapes("llama-2-7b", 4096)
    shapes["M0"] = 128
    cascade = load_cascade("transformer-layer", **shapes)
    start = time.perf_counter()
    mapping = default_mapping(cascade, arch)
    t_map = time.perf_counter() - start
    start = time.perf_counter()
    report = run_sim(cascade, arch, mapping)
    t_sim = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    run_sim(cascade, arch, mapping)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tiles = sum(info["tile_ops"] for info in report.einsums.values())
    print(json.dumps({"sim_seconds": t_sim, "map_seconds": t_map, "peak_rss_mib": peak_rss / 1024,
                      "rss_before_mib": base_rss / 1024, "traced_peak_mib": traced_peak / 2**20,
                      "tile_ops": tiles, "cycles": report.cycles, "groups": len(report.groups),
                      "dram_bytes": report.dram_bytes, "energy_uj": report.energy.total / 1e6}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--llama-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.llama_child:
        llama_child()
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arch32 = architecture(32, 32)
    gemm_rows = []
    for size, k_tile in [(64, 64), (256, 64), (1024, 64), (4096, 64), (16384, 64), (65536, 32), (262144, 32)]:
        cascade, mapping = gemm_case(size, k_tile)
        report, seconds = timed(cascade, arch32, mapping)
        gemm_rows.append((f"gemm {size}^3", report.einsums["Z"]["tile_ops"], seconds, report.cycles))
        print(gemm_rows[-1], file=sys.stderr)
    attn_rows = []
    for seq in [128, 512, 2048, 8192, 32768]:
        cascade, mapping = attention_case(seq)
        report, seconds = timed(cascade, arch32, mapping)
        steps = (seq // 32) * cascade.shapes["M1"]
        attn_rows.append((f"attention-1pass seq {seq}", steps, seconds, report.cycles))
        print(attn_rows[-1], file=sys.stderr)

    proc = subprocess.run([sys.executable, __file__, "--llama-child"], capture_output=True, text=True, check=True)
    llama = json.loads(proc.stdout.strip().splitlines()[-1])
    print(llama, file=sys.stderr)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog([r[1] for r in gemm_rows], [r[2] * 1e3 for r in gemm_rows], "o-", label="GEMM (tile ops)")
    ax.loglog([r[1] for r in attn_rows], [r[2] * 1e3 for r in attn_rows], "s-",
              label="fused attention-1pass (pipeline steps)")
    xs = [r[1] for r in gemm_rows]
    ref = gemm_rows[0][2] * 1e3
    ax.loglog(xs, [ref * x / xs[0] for x in xs], ":", color="gray", label="linear in tiles (reference)")
    ax.set_xlabel("tiles")
    ax.set_ylabel("simulator run time (ms)")
    ax.set_title("einsynth simulator: run time vs tiles")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "sim_scaling.png", dpi=120)

    lines = ["## Simulator run time vs number of tiles", "",
             "Median of 3 runs of `sim.run_sim` (mapping validation, the engine and energy pricing; imports "
             "excluded) on a 32x32 output-stationary array with a 32-lane 1D array. The engine multiplies "
             "max-plus matrices over *classes* of pipeline steps (first / second / middle / last index per "
             "loop), with repeated squaring for the middle ones, so its run time grows with the logarithm of "
             "the trip counts, not with the number of tiles (plot: `bench/results/sim_scaling.png`).", "",
             "| workload | tiles / steps | run time (ms) | simulated cycles |", "|---|---|---|---|"]
    for name, tiles, seconds, cycles in gemm_rows + attn_rows:
        lines.append(f"| {name} | {tiles:,} | {seconds * 1e3:.1f} | {cycles:,} |")
    lines += ["", "### Llama-2-7B layer, sequence 4096, 128x128 array", "",
              "One `transformer-layer` (d_model 4096, 32 heads of 128, FFN 11008, P = M = 4096, M0 = 128) on a "
              "128x128 int8-MAC output-stationary array with a 128-lane 1D array, 16 MiB GLB, 400 GB/s, 940 MHz, "
              "under the default mapping (19 groups, one per einsum), in a fresh process:", "",
              "| quantity | value |", "|---|---|",
              f"| tile operations simulated | {llama['tile_ops']:,} |",
              f"| simulated cycles | {llama['cycles']:,} |",
              f"| `run_sim` wall time | {llama['sim_seconds']:.2f} s |",
              f"| `default_mapping` wall time | {llama['map_seconds']:.2f} s |",
              f"| peak RSS of the process | {llama['peak_rss_mib']:.0f} MiB (of which {llama['rss_before_mib']:.0f} MiB "
              f"after importing numpy and Amaranth) |",
              f"| peak Python allocations during `run_sim` (tracemalloc) | {llama['traced_peak_mib']:.1f} MiB |",
              "", "Reproduce: `.venv/bin/python bench/sim_scaling.py`", ""]
    (out / "sim_scaling.md").write_text("\n".join(lines))
    print(f"wrote {out / 'sim_scaling.md'} and {out / 'sim_scaling.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
