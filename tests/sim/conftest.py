"""Fixtures for the simulator tests: architectures and random valid mappings.

``draw_mapping(data, cascade, arch)`` draws a random mapping (hypothesis ``data``) that follows the
Mapping contract: every einsum on a unit it can use, random spatial / rf / glb factors (padding
allowed), the dram factor that covers the rest, and random loop orders.
``fused_attention(cascade, arch, p_tile)`` is a FuseMax-style mapping of attention-1pass: the
whole loop body as one 2D + 1D pipeline over (P blocks, M1).
"""
import math

import pytest
from hypothesis import strategies as st

from hw.spec import architecture_from_dict
from mapper.mapping import (_DATAFLOW_PLACEMENT, EinsumMapping, Group, Mapping, _gemm_like, _weight_format,
                            einsum_view)

VECTOR_OPS = {"exp": {"mac": 6, "add": 1}, "add": {"add": 1}, "mul": {"mul": 1}, "max": {"max": 1},
              "div": {"div": 1}, "mac": {"mac": 1}, "shift": {"shift": 1}}


def make_architecture(rows=32, cols=32, dataflow="output-stationary", kind="mac", weight_format=None,
                      glb_kib=16384, glb_banks=32, glb_port_bits=64, dram_gbps=16.0, vector_lanes=32,
                      vector=True, clock_mhz=1000.0, energy_table="horowitz45", **pe_extra):
    from hw.pe import get_kind

    if weight_format is None:
        weight_format = get_kind(kind).params_type().weight_format
    data = {
        "name": f"test-{kind}-{rows}x{cols}", "clock_mhz": clock_mhz, "energy_table": energy_table,
        "array": {"rows": rows, "cols": cols, "dataflow": dataflow},
        "pe": {"kind": kind, "act_format": "int8", "weight_formats": [weight_format], "acc_bits": 32, **pe_extra},
        "memory": {"rf_words_per_pe": 16, "glb_kib": glb_kib, "glb_banks": glb_banks,
                   "glb_port_bits": glb_port_bits, "dram_gbps": dram_gbps},
    }
    if vector:
        data["vector"] = {"lanes": vector_lanes, "bits": 16, "rf_words": 64 * vector_lanes, "ops": VECTOR_OPS}
    return architecture_from_dict(data)


@pytest.fixture(scope="session")
def make_arch():
    return make_architecture


def _factor(data, upper, label):
    return data.draw(st.integers(1, max(1, upper)), label=label)


def draw_einsum_mapping(data, cascade, arch, e, unit=None):
    gemm = _gemm_like(e)
    if unit is None:
        choices = ["array"] + (["vector"] if arch.vector is not None else [])
        unit = data.draw(st.sampled_from(choices), label=f"{e.name}.unit")
    ranks = [v.upper() for v in e.iteration_vars]
    size = {r: cascade.shapes[r] for r in ranks}
    view = einsum_view(cascade, e, unit)
    spatial, rf = {}, {}
    if unit == "array" and view.kind == "gemm":
        pe = arch.pe_params(_weight_format(cascade, e, view, arch))
        rows_ok, cols_ok, rf_ok = _DATAFLOW_PLACEMENT[arch.array.dataflow]
        for dim, ok, cap in (("rows", rows_ok, arch.array.rows), ("cols", cols_ok, arch.array.cols)):
            cands = [r for r in ranks if view.roles[r] in ok]
            if cands and data.draw(st.booleans(), label=f"{e.name}.{dim}?"):
                r = data.draw(st.sampled_from(cands), label=f"{e.name}.{dim}")
                limit = cap * (pe.lanes if view.roles[r] == "k" else 1)
                spatial[dim] = {r: _factor(data, min(size[r], limit), f"{e.name}.{dim}.{r}")}
        for r in ranks:
            if view.roles[r] in rf_ok:
                used = math.prod(f.get(r, 1) for f in spatial.values())
                rf[r] = _factor(data, min(-(-size[r] // used), 64), f"{e.name}.rf.{r}")
    else:
        dims = ("rows", "cols") if unit == "array" else ("lanes",)
        caps = {"rows": arch.array.rows, "cols": arch.array.cols,
                "lanes": arch.vector.lanes if arch.vector else 0}
        free = list(ranks)
        for dim in dims:
            if free and data.draw(st.booleans(), label=f"{e.name}.{dim}?"):
                r = data.draw(st.sampled_from(free), label=f"{e.name}.{dim}")
                free.remove(r)
                spatial[dim] = {r: _factor(data, min(size[r], caps[dim]), f"{e.name}.{dim}.{r}")}
        out = {v.upper() for v in e.output_vars}
        for r in ranks:
            if data.draw(st.booleans(), label=f"{e.name}.rf?{r}"):
                used = math.prod(f.get(r, 1) for f in spatial.values())
                cap = 8 if r in out else 64          # outputs live in the register file
                rf[r] = _factor(data, min(-(-size[r] // used), cap), f"{e.name}.rf.{r}")
    glb, dram = {}, {}
    for r in ranks:
        inner = math.prod(f.get(r, 1) for f in spatial.values()) * rf.get(r, 1)
        rest = -(-size[r] // inner)
        g = _factor(data, rest, f"{e.name}.glb.{r}")
        if g > 1:
            glb[r] = g
        d = -(-size[r] // (inner * g))
        if d > 1:
            dram[r] = d
    tiles = {"dram": dram, "glb": glb, "rf": {r: f for r, f in rf.items() if f > 1}}
    order = {"dram": data.draw(st.permutations(ranks), label=f"{e.name}.order.dram"),
             "glb": data.draw(st.permutations(ranks), label=f"{e.name}.order.glb")}
    return EinsumMapping(e.name, unit, spatial, tiles, order)


def draw_mapping(data, cascade, arch):
    einsums = {e.name: draw_einsum_mapping(data, cascade, arch, e) for e in cascade.einsums}
    return Mapping(einsums, cascade=cascade.name, arch=arch.name)


@pytest.fixture(scope="session")
def random_mapping():
    return draw_mapping


def fused_attention_mapping(cascade, arch, p_tile, m0_cols=None, f_cols=None):
    """FuseMax-style attention-1pass mapping: one group over (P blocks, M1); QK and SLNV on the
    array (P on the rows), everything else on the 1D array (P on the lanes)."""
    s = cascade.shapes
    p_blocks = -(-s["P"] // p_tile)
    m0_cols = m0_cols or min(s["M0"], arch.array.cols)
    f_cols = f_cols or min(s["F"], arch.array.cols)
    loops = {"P": p_blocks, "M1": s["M1"]}

    def em(name, unit, spatial, glb=None, rf=None, ranks=("P", "M1")):
        dram = {r: loops[r] for r in ranks if loops[r] > 1}
        return EinsumMapping(name, unit, spatial, {"dram": dram, "glb": glb or {}, "rf": rf or {}})

    lanes = {"lanes": {"P": p_tile}}
    einsums = {
        "BQK": em("BQK", "array", {"rows": {"P": p_tile}, "cols": {"M0": m0_cols}},
                  glb={"M0": -(-s["M0"] // m0_cols)}, rf={"E": s["E"]}),
        "LM": em("LM", "vector", lanes, rf={"M0": s["M0"]}),
        "RM": em("RM", "vector", lanes),
        "SLN": em("SLN", "vector", lanes, glb={"M0": s["M0"]}),
        "SLD": em("SLD", "vector", lanes, rf={"M0": s["M0"]}),
        "SLNV": em("SLNV", "array", {"rows": {"P": p_tile}, "cols": {"F": f_cols}},
                   glb={"F": -(-s["F"] // f_cols)}, rf={"M0": s["M0"]}),
        "PRM": em("PRM", "vector", lanes),
        "RD": em("RD", "vector", lanes),
        "RNV": em("RNV", "vector", lanes, glb={"F": s["F"]}),
        "AV": em("AV", "vector", lanes, glb={"F": s["F"]}, ranks=("P",)),
    }
    group = Group(tuple(einsums), (("P", p_blocks), ("M1", s["M1"])))
    return Mapping(einsums, (group,), cascade=cascade.name, arch=arch.name)


@pytest.fixture(scope="session")
def fused_attention():
    return fused_attention_mapping
