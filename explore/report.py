"""``einsynth report``: tables and paper-ready plots from a results store.

Writes into OUTDIR:
  results.csv           every point, one row each (failed points with their error)
  summary.md            the best point per workload and the latency-energy Pareto front
  pareto.png / .pdf     latency vs energy, Pareto front highlighted, one marker per architecture
  utilization.png/.pdf  2D-array utilization per point
"""
from __future__ import annotations

import csv
from pathlib import Path

from dataflow.errors import EinsynthError

from .store import ResultStore

__all__ = ["write_report", "pareto_front"]


def pareto_front(points):
    """Indices of the points not dominated in (latency, energy), both minimized."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_e = [], float("inf")
    for i in order:
        if points[i][1] < best_e:
            front.append(i)
            best_e = points[i][1]
    return front


def write_report(db: str | Path, outdir: str | Path) -> list[Path]:
    if not ResultStore.is_store(db):
        raise EinsynthError(f"{db}: not an einsynth results database (run 'einsynth sweep ... --db {db}' first)")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore(db) as store:
        rows = store.rows()
    written = []

    csv_path = out / "results.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sweep", "workload", "arch", "overrides", "status", "cycles", "latency_s", "energy_pj",
                    "dram_bytes", "util_array", "edp", "error"])
        for r in rows:
            over = {**r.point.get("workload_set", {}), **{f"arch.{k}": v for k, v in r.point.get("arch_set", {}).items()}}
            w.writerow([r.sweep, r.workload, r.arch, " ".join(f"{k}={v}" for k, v in sorted(over.items())), r.status,
                        r.cycles, r.latency_s, r.energy_pj, r.dram_bytes, r.util_array, r.edp, r.error or ""])
    written.append(csv_path)

    ok = [r for r in rows if r.status == "ok"]
    lines = [f"# einsynth sweep report ({len(rows)} points, {len(ok)} ok, {len(rows) - len(ok)} failed)", ""]
    if ok:
        lines += ["## Best latency per workload", "", "| workload | arch | overrides | cycles | energy (uJ) | util |",
                  "|---|---|---|---|---|---|"]
        for wl in sorted({r.workload for r in ok}):
            best = min((r for r in ok if r.workload == wl), key=lambda r: r.latency_s)
            lines.append(f"| {wl} | {best.arch} | {_over(best)} | {best.cycles:,} | {best.energy_pj / 1e6:.3f} | "
                         f"{_pct(best.util_array)} |")
        pts = [(r.latency_s, r.energy_pj) for r in ok]
        front = pareto_front(pts)
        lines += ["", "## Latency-energy Pareto front", "", "| workload | arch | overrides | latency (us) | energy (uJ) |",
                  "|---|---|---|---|---|"]
        for i in front:
            r = ok[i]
            lines.append(f"| {r.workload} | {r.arch} | {_over(r)} | {r.latency_s * 1e6:.3f} | {r.energy_pj / 1e6:.3f} |")
        written += _plots(ok, front, out)
    failed = [r for r in rows if r.status != "ok"]
    if failed:
        lines += ["", "## Failed points", ""] + [f"- {r.workload} on {r.arch} {_over(r)}: {r.error}" for r in failed]
    md = out / "summary.md"
    md.write_text("\n".join(lines) + "\n")
    written.append(md)
    return written


def _over(r) -> str:
    items = {**r.point.get("workload_set", {}), **{f"arch.{k}": v for k, v in r.point.get("arch_set", {}).items()}}
    return " ".join(f"{k}={v}" for k, v in sorted(items.items())) or "-"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _plots(ok, front, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "figure.dpi": 150, "savefig.bbox": "tight"})
    written = []
    fig, ax = plt.subplots(figsize=(3.5, 2.6))
    archs = sorted({r.arch for r in ok})
    markers = "osD^v<>phX*"
    for j, a in enumerate(archs):
        sel = [r for r in ok if r.arch == a]
        ax.scatter([r.latency_s * 1e6 for r in sel], [r.energy_pj / 1e6 for r in sel], s=14,
                   marker=markers[j % len(markers)], label=a, alpha=0.8)
    f = sorted((ok[i] for i in front), key=lambda r: r.latency_s)
    ax.plot([r.latency_s * 1e6 for r in f], [r.energy_pj / 1e6 for r in f], "k--", lw=0.8, label="Pareto front")
    ax.set_xlabel("latency (µs)")
    ax.set_ylabel("energy (µJ)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, frameon=False)
    for ext in ("png", "pdf"):
        p = out / f"pareto.{ext}"
        fig.savefig(p)
        written.append(p)
    plt.close(fig)

    util = [r for r in ok if r.util_array is not None]
    if util:
        fig, ax = plt.subplots(figsize=(3.5, 2.4))
        labels = [f"{r.arch}\n{_over(r)}"[:40] for r in util]
        ax.bar(range(len(util)), [100 * r.util_array for r in util], color="#4477aa")
        ax.set_ylabel("2D-array utilization (%)")
        ax.set_ylim(0, 100)
        ax.set_xticks(range(len(util)))
        ax.set_xticklabels(labels, rotation=90, fontsize=5)
        for ext in ("png", "pdf"):
            p = out / f"utilization.{ext}"
            fig.savefig(p)
            written.append(p)
        plt.close(fig)
    return written
