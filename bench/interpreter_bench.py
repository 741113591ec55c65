"""Interpreter speed: 1-pass attention at P=M=4096, E=F=64 (issue: under 2 s, under 2 GB).

Runs each configuration in a fresh subprocess so that peak RSS belongs to that run alone, and
writes bench/results/interpreter.md.

    .venv/bin/python bench/interpreter_bench.py
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = r"""
import json, resource, sys, time
from dataflow import evaluate, load_cascade, random_inputs
shapes = json.loads(sys.argv[1])
c = load_cascade(shapes.pop("name"), **shapes)
ins = random_inputs(c, 0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
best = float("inf")
for _ in range(3):
    t = time.perf_counter(); evaluate(c, ins); best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds": best, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""

CONFIGS = [
    {"name": "attention-1pass", "P": 4096, "M": 4096, "E": 64, "F": 64, "M0": 64},
    {"name": "attention-1pass", "P": 4096, "M": 4096, "E": 64, "F": 64, "M0": 256},
    {"name": "attention-3pass", "P": 4096, "M": 4096, "E": 64, "F": 64},
    {"name": "attention-1pass", "P": 4096, "M": 4000, "E": 64, "F": 64, "M0": 256},
]


def main() -> str:
    rows = []
    for cfg in CONFIGS:
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        shape = ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "name")
        rows.append(f"| {cfg['name']} | {shape} | {r['seconds']:.2f} | {r['peak_gb']:.2f} |")
        print(rows[-1], flush=True)
    md = "\n".join([
        "## Interpreter speed",
        "",
        "Target: 1-pass attention at P=M=4096, E=F=64 evaluates in under 2 s with peak memory under 2 GB.",
        "Best of 3 runs; peak is the whole process's max RSS (inputs included).",
        "",
        "| cascade | shapes | seconds | peak GB |",
        "|---|---|---|---|",
        *rows,
        "",
        "Reproduce: `.venv/bin/python bench/interpreter_bench.py`",
        "",
    ])
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "interpreter.md").write_text(md)
    return md


if __name__ == "__main__":
    main()
