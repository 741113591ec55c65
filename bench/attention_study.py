"""Attention study (issue 5): 1-pass attention on FuseMax vs 3-pass attention on FLAT, mapped by the
ILP and run on the simulator.

Run:  .venv/bin/python bench/attention_study.py [--quick] [--out bench/results/attention.md]

Workloads follow FuseMax (MICRO 2024): BERT-Base, T5-small, XLM and TrXL, batch 64, sequence lengths
1K to 64K. One attention instance (one batch element, one head) is mapped with
``map_cascade(objective="latency")`` and simulated with ``sim.run_sim``; a layer's instances
(batch x heads) run one after another, so latency and energy scale with their number. The 1-pass
cascade splits M into M1 x M0 with M0 = 256 (FuseMax: M0 x P0 = the 2D array's PEs). "2D busy" is the
fraction of cycles the 2D array is working (simulator busy / cycles); "2D PE util." the simulator's
useful PE-cycles over PEs x cycles.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataflow import load_cascade  # noqa: E402
from dataflow.library.models import attention_instances, attention_shapes, get_model  # noqa: E402
from hw.spec import load_architecture  # noqa: E402
from mapper.api import map_cascade  # noqa: E402
from sim import run_sim  # noqa: E402

MODELS = ("bert-base", "t5-small", "xlm", "trxl")
SEQS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
BATCH = 64
SETUPS = (("attention-1pass", "fusemax"), ("attention-3pass", "flat"))


def run_instance(workload, arch, head_dim, seq):
    shapes = attention_shapes("bert-base", seq)
    shapes.update(E=head_dim, F=head_dim)
    if workload == "attention-1pass":
        shapes["M0"] = 256
    cascade = load_cascade(workload, **shapes)
    start = time.perf_counter()
    result = map_cascade(cascade, arch, time_limit=120)
    seconds = time.perf_counter() - start
    report = run_sim(cascade, arch, result.mapping)
    return {"cycles": report.cycles, "predicted": result.predicted.cycles, "energy_pj": report.energy.total,
            "busy": report.busy.get("array", 0) / report.cycles, "util": report.utilization.get("array", 0.0),
            "map_s": seconds, "status": result.status, "fused": bool(result.choice and result.choice.fused)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="BERT-Base at 1K and 16K only")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "attention.md"))
    args = ap.parse_args(argv)
    models = ("bert-base",) if args.quick else MODELS
    seqs = (1024, 16384) if args.quick else SEQS
    cache = {}
    rows = []
    for workload, arch_name in SETUPS:
        arch = load_architecture(arch_name)
        for model in models:
            m = get_model(model)
            for seq in seqs:
                key = (workload, arch_name, m.head_dim, seq)
                if key not in cache:
                    cache[key] = run_instance(workload, arch, m.head_dim, seq)
                    print(key, cache[key], flush=True)
                r = cache[key]
                n = attention_instances(model, BATCH)
                rows.append((model, seq, workload, arch, n, r))
    lines = ["# Attention: 1-pass on FuseMax vs 3-pass on FLAT (ILP mapping + simulator)", "",
             "Reproduce: `.venv/bin/python bench/attention_study.py`.", "",
             f"Batch {BATCH}; a layer's attention = batch x heads instances of one head's cascade, run one "
             "after another (latency and energy scale with their number). Per-instance mapping by "
             "`map_cascade(objective=latency)`, cycles and energy from `sim.run_sim`; the energy table is "
             "each preset's (`horowitz45`). 2D busy = fraction of cycles the 2D array works; 2D PE util. = "
             "useful PE-cycles / (PEs x cycles).", "",
             "| model | seq | cascade on arch | instance cycles (sim) | predicted | layer latency (ms) | "
             "layer energy (mJ) | 2D busy | 2D PE util. | fused pipeline | map s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, seq, workload, arch, n, r in rows:
        ms = n * r["cycles"] / (arch.clock_mhz * 1e3)
        mj = n * r["energy_pj"] / 1e9
        lines.append(f"| {model} | {seq // 1024}K | {workload} on {arch.name} | {r['cycles']} | {r['predicted']:.0f} | "
                     f"{ms:.2f} | {mj:.2f} | {r['busy']:.1%} | {r['util']:.1%} | "
                     f"{'yes' if r['fused'] else 'no'} | {r['map_s']:.1f} |")
    one = [r for model, seq, w, a, n, r in rows if w == "attention-1pass" and seq >= 16384]
    ok = all(r["busy"] >= 0.9 for r in one)
    lines += ["", f"1-pass attention on FuseMax keeps the 2D array >= 90% busy at seq >= 16K: "
              f"{'met' if ok else 'NOT met'} (min {min((r['busy'] for r in one), default=float('nan')):.1%}).", ""]
    speed = []
    for model, seq, w, a, n, r in rows:
        if w == "attention-1pass":
            other = next(x for x in rows if x[0] == model and x[1] == seq and x[2] == "attention-3pass")
            speed.append((model, seq, other[5]["cycles"] / r["cycles"], other[5]["energy_pj"] / r["energy_pj"]))
    if speed:
        lines.append("Speed-up of 1-pass/FuseMax over 3-pass/FLAT (latency, energy): "
                     + "; ".join(f"{m} {s // 1024}K {x:.2f}x, {e:.2f}x" for m, s, x, e in speed) + ".")
    lines += ["", "The 2D PE utilization is low for both: an output-stationary 256x256 array spends a fill and "
              "drain of ~510 slots on every tile op whose reduction is only E = 64 (or 128) deep, the tile-op "
              "timing the RTL is proven to have; FuseMax's own array streams across tiles."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
