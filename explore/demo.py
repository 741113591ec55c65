"""``einsynth demo``: the main job on built-in defaults.

The question it answers: *on a 128×128 array of LUT-based PEs, how fast and at what energy does a
2-bit-weight Llama layer run, and does the RTL really do that?*

1. the workload: the seven linear projections of a Llama-2-7B decoder layer (Q, K, V, O, gate,
   up, down) as GEMMs with 2-bit weights and int8 activations, which the LUT PE computes as one
   block (table precompute, bit-plane lookups, shift-add);
2. the architecture: the ``lut-tc`` preset resized to a 128×128 array;
3. the ILP maps each projection and the simulator runs it: cycles, utilization, energy;
4. the RTL check: a small instance of the same array (same PE, same dataflow) runs random and
   corner-case tiles in the Amaranth simulator; its outputs must equal the golden model bit for
   bit and its measured cycles must equal the cost view the simulator charged;
5. the cascade check: the LUT PE's golden model equals the interpreter on the mpGEMM cascade.
"""
from __future__ import annotations

import time

import numpy as np

from dataflow.library.models import get_model

__all__ = ["run_demo", "llama_projections"]


def llama_projections(model: str, tokens: int) -> list[tuple[str, int, int, int]]:
    """(name, M tokens, K in, N out) of the linear layers of one decoder layer."""
    m = get_model(model)
    d, f = m.d_model, m.ffn
    return [("q_proj", tokens, d, d), ("k_proj", tokens, d, d), ("v_proj", tokens, d, d),
            ("o_proj", tokens, d, d), ("gate_proj", tokens, d, f), ("up_proj", tokens, d, f),
            ("down_proj", tokens, f, d)]


def _arch(rows: int, cols: int):
    from explore.sweep import build_arch

    return build_arch("lut-tc", {"array.rows": rows, "array.cols": cols, "name": f"lut-tc-{rows}x{cols}"})


def run_demo(quick: bool = False, out=print) -> int:
    from dataflow import evaluate, load_cascade, random_inputs
    from hw.pe import make_params
    from hw.verify import array_job, simulate_amaranth
    from mapper import map_cascade
    from sim import run_sim

    t_start = time.perf_counter()
    tokens = 256 if quick else 2048
    rows = cols = 128
    wfmt = "int2"
    arch = _arch(rows, cols)
    out(f"einsynth demo: Llama-2-7B decoder layer, {wfmt} weights x int8 activations, {tokens} tokens,")
    out(f"on {arch.name}: {rows}x{cols} LUT PEs (K={arch.pe.lut_k}), {arch.array.dataflow}, "
        f"{arch.clock_mhz:.0f} MHz, energy table {arch.energy_table}")
    out("")

    # -- 1-3: map and simulate every projection
    header = f"{'layer':<10} {'M x K x N':>20} {'cycles':>14} {'util':>6} {'energy uJ':>11} {'map s':>6}"
    out(header)
    out("-" * len(header))
    tot_cycles = 0
    tot_energy = 0.0
    for name, m, k, n in llama_projections("llama-2-7b", tokens):
        # The LUT PE computes A @ W as one fused block (table precompute, bit-plane lookups and
        # shift-add); step 5 below checks that block against the fine-grained mpgemm-lut cascade.
        cascade = load_cascade("gemm", M=m, K=k, N=n, afmt="int8", bfmt=wfmt, zfmt="int32")
        t = time.perf_counter()
        mapping = map_cascade(cascade, arch, objective="latency").mapping
        t_map = time.perf_counter() - t
        report = run_sim(cascade, arch, mapping)
        util = report.utilization.get("array", 0.0)
        tot_cycles += report.cycles
        tot_energy += report.energy.total
        out(f"{name:<10} {f'{m}x{k}x{n}':>20} {report.cycles:>14,} {100 * util:>5.1f}% "
            f"{report.energy.total / 1e6:>11.2f} {t_map:>6.2f}")
    out("-" * len(header))
    seconds = tot_cycles / arch.clock_hz
    out(f"{'layer':<10} {'':>20} {tot_cycles:>14,} {'':>6} {tot_energy / 1e6:>11.2f}")
    out(f"=> {seconds * 1e3:.3f} ms and {tot_energy / 1e9:.3f} mJ per layer "
        f"({tokens / seconds:,.0f} tokens/s through the linear layers)")
    out("")

    # -- 4: does the RTL really do that?
    params = make_params(arch.pe.kind, **{**_pe_kwargs(arch), "weight_format": wfmt})
    small = 4
    out(f"RTL check: a {small}x{small} instance of the same array ({params.kind} PE, {wfmt}, "
        f"{arch.array.dataflow}) on the Amaranth simulator")
    job = array_job(small, small, arch.array.dataflow, params, seed=1)
    res = simulate_amaranth(job)
    tiles = res.get("tiles", [])
    exact_cycles = sum(t["measured"] == t["cost"] + t["stalls"] for t in tiles)
    out(f"  {len(tiles)} tiles (random, min/max/zero activations, every weight code): "
        f"outputs {'bit-exact' if res['passed'] else 'MISMATCH'} against the golden model; "
        f"measured cycles == cost view on {exact_cycles}/{len(tiles)}")
    if tiles:
        t0 = tiles[0]
        out(f"  e.g. tile {t0['m']}x{t0['n']}x{t0['k']}: RTL {t0['measured']} cycles, cost view {t0['cost']}")

    # -- 5: golden model == cascade interpreter
    from hw.pe import golden_gemm

    c = load_cascade("mpgemm-lut", M=8, K=32, N=8, KL=arch.pe.lut_k, wfmt=wfmt)
    ins = random_inputs(c, 3)
    ins["S"] = np.ones_like(ins["S"])
    ref = evaluate(c, ins)["Y"]
    from dataflow.formats import get_format

    codes = get_format(wfmt).encode(ins["W"])
    exact_params = make_params(arch.pe.kind, **{**_pe_kwargs(arch, exact=True), "weight_format": wfmt})
    gold = golden_gemm(exact_params, ins["A"], codes)
    same = np.array_equal(gold, ref)
    out(f"cascade check: LUT PE golden model {'==' if same else '!='} interpreter on mpgemm-lut (8x32x8)")
    out(f"done in {time.perf_counter() - t_start:.1f} s")
    ok = res["passed"] and exact_cycles == len(tiles) and same
    return 0 if ok else 1


def _pe_kwargs(arch, exact: bool = False) -> dict:
    """Keyword arguments of the architecture's PE params (``exact``: without table rounding)."""
    params = arch.pe_params()
    kw = {f: getattr(params, f) for f in params.__dataclass_fields__ if f not in ("kind",)}
    if exact and "table_bits" in kw:
        kw["table_bits"] = None
    return kw
