"""``einsynth show``: a plain-text summary of a cascade."""
from __future__ import annotations

from collections import defaultdict

from dataflow.analysis import (attention_io_lower_bound, compulsory_bytes, footprints, op_counts,
                               pass_counts)
from dataflow.ir import Cascade


def _table(rows, headers) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.rjust(w) if c.replace(",", "").isdigit() else c.ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out)


def render_show(c: Cascade, onchip_words: int | None = None) -> str:
    lines = [f"cascade {c.name}" + (f" ({c.source})" if c.source else "")]
    if c.description:
        lines.append(f"  {c.description}")
    lines.append("")
    lines.append("shapes: " + ", ".join(f"{k}={v}" for k, v in c.shapes.items()))
    if c.partitions:
        lines.append("partitions: " + ", ".join(f"{p} -> {o}x{i}" for p, (o, i) in c.partitions.items()))
    lines.append("")
    fp = footprints(c)
    role = {t: "input" for t in c.inputs}
    role.update({t: "output" for t in c.outputs})
    rows = [[t.name, "[" + ", ".join(t.ranks) + "]", "x".join(map(str, c.extents[t.name])), t.format,
             role.get(t.name, "intermediate"), f"{fp[t.name]:,}"] for t in c.tensors.values()]
    lines.append(_table(rows, ["tensor", "ranks", "extent", "format", "role", "bytes"]))
    lines.append("")
    lines.append("einsums:")
    for e in c.einsums:
        extra = []
        if e.reduce:
            extra.append(f"reduce {e.reduce}")
        if e.init is not None:
            extra.append(f"init {e.init}")
        lines.append(f"  {e.name:<6} {e}" + (f"   ({', '.join(extra)})" if extra else ""))
    lines.append("")
    per = defaultdict(int)
    for oc in op_counts(c):
        per[(oc.category, oc.format)] += oc.count
    rows = [[cat, fmt, f"{n:,}"] for (cat, fmt), n in sorted(per.items())]
    lines.append(_table(rows, ["op", "format", "count"]))
    lines.append("")
    passes = pass_counts(c)
    worst = max(passes.values(), default=0)
    lines.append(f"passes: {worst} (" + ", ".join(f"{r}: {n}" for r, n in passes.items()) + ")")
    lines.append(f"compulsory DRAM traffic: {compulsory_bytes(c):,} bytes")
    if {"P", "M", "E", "F"} <= set(c.shapes) and "attention" in c.name:
        s = onchip_words or 2 ** 20
        b = attention_io_lower_bound(c.shapes["P"], c.shapes["M"], c.shapes["E"], c.shapes["F"], s)
        lines.append(f"attention I/O lower bound at {s:,} on-chip words: {b.words:,} words "
                     f"(compulsory {b.compulsory_words:,}, Saha-Ye term {b.tiling_words:,})")
    return "\n".join(lines)
