"""The Mapping object: how a cascade runs on an architecture.

For each einsum a :class:`EinsumMapping` binds it to a compute unit (the 2D ``array`` or the 1D
``vector`` array), places ranks on the unit's spatial dimensions (array rows / cols, vector lanes)
and gives the temporal tile factors per memory level (``dram`` ⊃ ``glb`` ⊃ spatial ⊃ ``rf``) and the
loop order per level, in the style of Timeloop and CoSA. For the cascade, the :class:`Group` s of the
``schedule`` say which einsums run fused as one software pipeline (FuseMax's 2D + 1D pipeline over
the iterative rank of 1-pass attention), ``onchip`` lists the intermediates that never go to DRAM and
``buffers`` the global-buffer bytes reserved per tensor.

A mapping round-trips through YAML (:meth:`Mapping.to_yaml`, :func:`load_mapping`) and is validated
against a cascade and an architecture (:meth:`Mapping.validate`); every problem raises a one-line
:class:`~dataflow.errors.MappingError` naming the field, e.g.
``mapping.yaml: einsums.QK.tiles.glb.M: factors 4*16 = 64 do not cover rank M (size 100)``.
The schema and its semantics are in ``/work/notes/mapping_contract.md`` and ``docs/simulator.md``.

:func:`default_mapping` gives a simple valid mapping (the baseline the ILP mapper must beat).
"""
from __future__ import annotations

import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from dataflow.errors import MappingError
from dataflow.expr import Call, Gather, Ref, Var, walk

__all__ = [
    "LEVELS", "UNITS", "SPATIAL_DIMS", "EinsumMapping", "Group", "Mapping", "EinsumView",
    "einsum_view", "load_mapping", "default_mapping", "access_extent", "tensor_bits",
]

LEVELS = ("dram", "glb", "rf")
"""Temporal tiling levels, outermost first; the spatial level sits between ``glb`` and ``rf``."""

UNITS = ("array", "vector")
SPATIAL_DIMS = MappingProxyType({"array": ("rows", "cols"), "vector": ("lanes",)})

_DATAFLOW_PLACEMENT = {
    # dataflow: (roles allowed on rows, on cols, in rf)
    "output-stationary": ({"m"}, {"n"}, {"k", "batch"}),
    "weight-stationary": ({"k"}, {"n"}, {"m", "batch"}),
    "input-stationary": ({"k"}, {"m"}, {"n", "batch"}),
}


def _frozen(d):
    return MappingProxyType(dict(d))


# --- the objects ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class EinsumMapping:
    """The mapping of one einsum (see the module docstring and the contract).

    ``spatial``: dim -> {rank: factor}; ``tiles``: level -> {rank: factor} (an omitted rank or level
    has factor 1); ``order``: level -> ranks, outermost first (omitted: the einsum's iteration order);
    ``pe_ranks``: reduced ranks one PE step handles internally (never tiled); ``k_per_point``: GEMM
    ``k`` elements per point of the ``k`` ranks.
    """

    einsum: str
    unit: str
    spatial: MappingABC = field(default_factory=dict)
    tiles: MappingABC = field(default_factory=dict)
    order: MappingABC = field(default_factory=dict)
    pe_ranks: tuple = ()
    k_per_point: int = 1

    def __post_init__(self):
        object.__setattr__(self, "spatial", _frozen({d: _frozen(f) for d, f in dict(self.spatial).items()}))
        object.__setattr__(self, "tiles", _frozen({lv: _frozen(f) for lv, f in dict(self.tiles).items()}))
        object.__setattr__(self, "order", _frozen({lv: tuple(o) for lv, o in dict(self.order).items()}))
        object.__setattr__(self, "pe_ranks", tuple(self.pe_ranks))

    def factor(self, level, rank):
        """Factor of ``rank`` at ``level`` (a name of :data:`LEVELS` or ``"spatial"``: all dims)."""
        if level == "spatial":
            return math.prod(f.get(rank, 1) for f in self.spatial.values())
        return self.tiles.get(level, {}).get(rank, 1)

    def extent(self, rank):
        """The padded extent: the product of ``rank``'s factors over every level."""
        return math.prod(self.factor(lv, rank) for lv in ("dram", "glb", "spatial", "rf"))

    def tile_extent(self, rank, level):
        """Extent of one tile at ``level`` (``glb``: one GLB tile; ``op``: one tile operation)."""
        inner = {"glb": ("glb", "spatial", "rf"), "op": ("spatial", "rf"), "rf": ("rf",)}[level]
        return math.prod(self.factor(lv, rank) for lv in inner)

    def loop_order(self, level, ranks):
        """The loops of ``level`` with trip count > 1, outermost first, as ``(rank, trip)`` pairs."""
        given = list(self.order.get(level, ()))
        rest = [r for r in ranks if r not in given]
        return tuple((r, self.factor(level, r)) for r in given + rest if r in ranks and self.factor(level, r) > 1)

    def to_dict(self):
        out = {"unit": self.unit}
        out["spatial"] = {d: dict(f) for d, f in self.spatial.items()}
        out["tiles"] = {lv: dict(self.tiles[lv]) for lv in LEVELS if lv in self.tiles}
        if self.order:
            out["order"] = {lv: list(self.order[lv]) for lv in LEVELS if lv in self.order}
        if self.pe_ranks:
            out["pe_ranks"] = list(self.pe_ranks)
        if self.k_per_point != 1:
            out["k_per_point"] = self.k_per_point
        return out


@dataclass(frozen=True)
class Group:
    """Einsums that run fused as one software pipeline over the DRAM-level ``loops``
    (``(rank, trip_count)`` pairs, outermost first; empty for a single einsum = its own dram tiles)."""

    einsums: tuple
    loops: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "einsums", tuple(self.einsums))
        object.__setattr__(self, "loops", tuple((str(r), int(t)) for r, t in self.loops))

    def to_dict(self):
        out = {"einsums": list(self.einsums)}
        if self.loops:
            out["loops"] = [[r, t] for r, t in self.loops]
        return out


@dataclass(frozen=True)
class Mapping:
    """A whole-cascade mapping: per-einsum mappings, the schedule of groups, the on-chip
    intermediates and the buffer allocation. ``source`` names the file it came from (for errors)."""

    einsums: MappingABC
    schedule: tuple = ()
    onchip: tuple = ()
    buffers: MappingABC = field(default_factory=dict)
    cascade: str | None = None
    arch: str | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "einsums", _frozen(self.einsums))
        object.__setattr__(self, "schedule", tuple(self.schedule))
        object.__setattr__(self, "onchip", tuple(self.onchip))
        object.__setattr__(self, "buffers", _frozen({k: _frozen(v) for k, v in dict(self.buffers).items()}))

    # -- YAML ----------------------------------------------------------------------------------
    def to_dict(self):
        out = {}
        if self.cascade:
            out["cascade"] = self.cascade
        if self.arch:
            out["arch"] = self.arch
        out["einsums"] = {name: em.to_dict() for name, em in self.einsums.items()}
        if self.schedule:
            out["schedule"] = [g.to_dict() for g in self.schedule]
        if self.onchip:
            out["onchip"] = list(self.onchip)
        if self.buffers:
            out["buffers"] = {k: dict(v) for k, v in self.buffers.items()}
        return out

    def to_yaml(self):
        """YAML text that :func:`load_mapping` turns back into an equal object."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, data, source=None):
        return _mapping_from_dict(data, source)

    @classmethod
    def from_yaml(cls, text_or_path):
        return load_mapping(text_or_path)

    # -- helpers used by the simulator and the mapper --------------------------------------------
    def groups(self, cascade):
        """The schedule with every group's loops filled in (one group per einsum when empty)."""
        schedule = self.schedule or tuple(Group((e.name,)) for e in cascade.topological_einsums())
        out = []
        for g in schedule:
            if g.loops or len(g.einsums) != 1:
                out.append(g)
                continue
            e = cascade.einsum(g.einsums[0])
            em = self.einsums[e.name]
            out.append(Group(g.einsums, em.loop_order("dram", iteration_ranks(e, em))))
        return tuple(out)

    def validate(self, cascade, arch):
        """Check this mapping against ``cascade`` and ``arch``; raise :class:`MappingError`."""
        _validate(self, cascade, arch)
        return self

    def where(self, path):
        return f"{self.source or 'mapping'}: {path}"


# --- loading ---------------------------------------------------------------------------------------

def load_mapping(source, cascade=None, arch=None):
    """Load a :class:`Mapping` from a YAML file path or YAML text (validated when ``cascade`` and
    ``arch`` are given)."""
    if isinstance(source, Mapping):
        mapping = source
    else:
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                        and (source.endswith((".yaml", ".yml")) or Path(source).is_file())):
            path = Path(source)
            if not path.is_file():
                raise MappingError(f"{path}: no such mapping file")
            label, text = str(path), path.read_text()
        elif isinstance(source, str):
            label, text = None, source
        else:
            raise MappingError(f"mapping must be a path or YAML text, not {source!r}")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise MappingError(f"{label or 'mapping'}{line}: {getattr(error, 'problem', None) or 'invalid YAML'}") from None
        mapping = _mapping_from_dict(data, label)
    if cascade is not None and arch is not None:
        mapping.validate(cascade, arch)
    return mapping


def _fail(source, path, detail):
    raise MappingError(f"{source or 'mapping'}: {path}: {detail}")


def _pos_int(source, path, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        _fail(source, path, f"must be a positive integer, not {value!r}")
    return value


def _factors(source, path, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(source, path, f"must map ranks to factors, not {value!r}")
    out = {}
    for rank, f in value.items():
        if not isinstance(rank, str):
            _fail(source, path, f"rank names must be strings, not {rank!r}")
        out[rank] = _pos_int(source, f"{path}.{rank}", f)
    return out


_TOP_KEYS = ("cascade", "arch", "einsums", "schedule", "onchip", "buffers")
_EINSUM_KEYS = ("unit", "spatial", "tiles", "order", "pe_ranks", "k_per_point")


def _mapping_from_dict(data, source=None):
    if not isinstance(data, dict):
        _fail(source, "document", f"must be a mapping with an 'einsums' section, not {data!r}")
    for key in data:
        if key not in _TOP_KEYS:
            _fail(source, key, f"unknown field (expected one of {', '.join(_TOP_KEYS)})")
    if "einsums" not in data:
        _fail(source, "einsums", "missing")
    raw = data["einsums"]
    if not isinstance(raw, dict) or not raw:
        _fail(source, "einsums", f"must map einsum names to their mappings, not {raw!r}")
    einsums = {}
    for name, entry in raw.items():
        p = f"einsums.{name}"
        if not isinstance(entry, dict):
            _fail(source, p, f"must be a mapping, not {entry!r}")
        for key in entry:
            if key not in _EINSUM_KEYS:
                _fail(source, f"{p}.{key}", f"unknown field (expected one of {', '.join(_EINSUM_KEYS)})")
        unit = entry.get("unit")
        if unit not in UNITS:
            _fail(source, f"{p}.unit", f"must be one of {', '.join(UNITS)}, not {unit!r}")
        spatial_raw = entry.get("spatial") or {}
        if not isinstance(spatial_raw, dict):
            _fail(source, f"{p}.spatial", f"must map {'/'.join(SPATIAL_DIMS[unit])} to rank factors, not {spatial_raw!r}")
        spatial = {}
        for dim, facs in spatial_raw.items():
            if dim not in SPATIAL_DIMS[unit]:
                _fail(source, f"{p}.spatial.{dim}", f"the {unit} has spatial dims {', '.join(SPATIAL_DIMS[unit])}, not {dim!r}")
            spatial[dim] = _factors(source, f"{p}.spatial.{dim}", facs)
        tiles_raw = entry.get("tiles") or {}
        if not isinstance(tiles_raw, dict):
            _fail(source, f"{p}.tiles", f"must map levels ({', '.join(LEVELS)}) to rank factors, not {tiles_raw!r}")
        tiles = {}
        for level, facs in tiles_raw.items():
            if level not in LEVELS:
                _fail(source, f"{p}.tiles.{level}", f"unknown level (expected one of {', '.join(LEVELS)})")
            tiles[level] = _factors(source, f"{p}.tiles.{level}", facs)
        order_raw = entry.get("order") or {}
        if not isinstance(order_raw, dict):
            _fail(source, f"{p}.order", f"must map levels to lists of ranks, not {order_raw!r}")
        order = {}
        for level, ranks in order_raw.items():
            if level not in LEVELS:
                _fail(source, f"{p}.order.{level}", f"unknown level (expected one of {', '.join(LEVELS)})")
            if not isinstance(ranks, list) or not all(isinstance(r, str) for r in ranks):
                _fail(source, f"{p}.order.{level}", f"must be a list of rank names, not {ranks!r}")
            if len(set(ranks)) != len(ranks):
                _fail(source, f"{p}.order.{level}", f"repeats a rank: {ranks!r}")
            order[level] = tuple(ranks)
        pe_ranks = entry.get("pe_ranks") or []
        if not isinstance(pe_ranks, list) or not all(isinstance(r, str) for r in pe_ranks):
            _fail(source, f"{p}.pe_ranks", f"must be a list of rank names, not {pe_ranks!r}")
        k_per_point = _pos_int(source, f"{p}.k_per_point", entry.get("k_per_point", 1))
        einsums[name] = EinsumMapping(name, unit, spatial, tiles, order, tuple(pe_ranks), k_per_point)

    schedule = []
    raw_sched = data.get("schedule") or []
    if not isinstance(raw_sched, list):
        _fail(source, "schedule", f"must be a list of groups, not {raw_sched!r}")
    for i, g in enumerate(raw_sched):
        p = f"schedule[{i}]"
        if isinstance(g, list):
            g = {"einsums": g}
        if not isinstance(g, dict) or set(g) - {"einsums", "loops"}:
            _fail(source, p, f"must be {{einsums: [...], loops: [[rank, trips], ...]}}, not {g!r}")
        names = g.get("einsums")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            _fail(source, f"{p}.einsums", f"must be a non-empty list of einsum names, not {names!r}")
        loops = []
        for j, loop in enumerate(g.get("loops") or []):
            if not (isinstance(loop, (list, tuple)) and len(loop) == 2 and isinstance(loop[0], str)):
                _fail(source, f"{p}.loops[{j}]", f"must be [rank, trip_count], not {loop!r}")
            loops.append((loop[0], _pos_int(source, f"{p}.loops[{j}]", loop[1])))
        schedule.append(Group(tuple(names), tuple(loops)))

    onchip = data.get("onchip") or []
    if not isinstance(onchip, list) or not all(isinstance(t, str) for t in onchip):
        _fail(source, "onchip", f"must be a list of tensor names, not {onchip!r}")
    buffers_raw = data.get("buffers") or {}
    if not isinstance(buffers_raw, dict):
        _fail(source, "buffers", f"must map 'glb' to tensor byte counts, not {buffers_raw!r}")
    buffers = {}
    for level, alloc in buffers_raw.items():
        if level != "glb":
            _fail(source, f"buffers.{level}", "only the global buffer 'glb' is allocated per tensor")
        buffers[level] = _factors(source, f"buffers.{level}", alloc)
    for key in ("cascade", "arch"):
        if data.get(key) is not None and not isinstance(data[key], str):
            _fail(source, key, f"must be a name, not {data[key]!r}")
    return Mapping(einsums, tuple(schedule), tuple(onchip), buffers, data.get("cascade"), data.get("arch"), source)


# --- einsum views ------------------------------------------------------------------------------------

def iteration_ranks(einsum, em=None):
    """The einsum's iteration ranks (upper case), without ``em``'s pe_ranks."""
    skip = set(em.pe_ranks) if em is not None else set()
    return tuple(v.upper() for v in einsum.iteration_vars if v.upper() not in skip)


@dataclass(frozen=True)
class EinsumView:
    """How a unit executes an einsum: ``kind`` ``"gemm"`` (array tile ops) or ``"elementwise"``.

    For a GEMM, ``roles`` maps every iteration rank to ``m``, ``n``, ``k``, ``batch`` or ``pe``;
    ``a_side`` is the activation operand's tensor name.
    """

    kind: str
    roles: MappingABC
    a_side: str | None = None

    def ranks(self, role):
        return tuple(r for r, ro in self.roles.items() if ro == role)


def _tensor_refs(expr):
    return [n.access for n in walk(expr) if isinstance(n, Ref)]


def einsum_view(cascade, einsum, unit, pe_ranks=()):
    """The :class:`EinsumView` of ``einsum`` on ``unit`` (see the contract for the rules)."""
    ranks = [v.upper() for v in einsum.iteration_vars]
    refs = [a for a in _tensor_refs(einsum.expr) if a.tensor != einsum.output.tensor]
    reduce_op = einsum.reduce or "add"
    out_ranks = {v.upper() for v in einsum.output_vars}
    gemm = (unit == "array" and einsum.reduced_vars and len({a.tensor for a in refs}) >= 2
            and reduce_op == "add")
    if not gemm:
        return EinsumView("elementwise", _frozen({r: "point" for r in ranks}))
    a_side = next((a for a in refs if {v.upper() for v in a.vars} & out_ranks), refs[0])
    a_ranks = {v.upper() for v in a_side.vars}
    other = {v.upper() for a in refs if a is not a_side for v in a.vars}
    roles = {}
    for r in ranks:
        if r in pe_ranks:
            roles[r] = "pe"
        elif r not in out_ranks:
            roles[r] = "k"
        elif r in a_ranks and r in other:
            roles[r] = "batch"
        elif r in a_ranks:
            roles[r] = "m"
        else:
            roles[r] = "n"
    return EinsumView("gemm", _frozen(roles), a_side.tensor)


def tensor_bits(cascade, tensor):
    from dataflow.formats import get_format

    return get_format(cascade.tensors[tensor].format).bits


def access_extent(cascade, access, extent_of):
    """Elements of ``access`` touched by one tile whose per-rank extents are ``extent_of(rank)``."""
    t = cascade.tensors[access.tensor]
    n = 1
    for i, idx in enumerate(access.indices):
        if isinstance(idx, Var):
            n *= extent_of(idx.rank)
        elif isinstance(idx, Gather):
            dims = cascade.extents[access.tensor]
            n *= dims[i] if len(access.indices) == len(t.ranks) else max(dims)
        # Fixed / End: one coordinate
    return n


def _tile_bytes(cascade, access, extent_of):
    return math.ceil(access_extent(cascade, access, extent_of) * tensor_bits(cascade, access.tensor) / 8)


# --- validation --------------------------------------------------------------------------------------

def _fmt_factors(parts):
    return "*".join(str(f) for f in parts) if parts else "1"


def _validate(mapping, cascade, arch):
    src = mapping.source
    if mapping.cascade and mapping.cascade != cascade.name:
        _fail(src, "cascade", f"the mapping is for cascade {mapping.cascade!r}, not {cascade.name!r}")
    names = [e.name for e in cascade.einsums]
    for name in mapping.einsums:
        if name not in names:
            _fail(src, f"einsums.{name}", f"no such einsum in cascade {cascade.name} (einsums: {', '.join(names)})")
    for name in names:
        if name not in mapping.einsums:
            _fail(src, f"einsums.{name}", "missing: every einsum of the cascade needs a mapping")
    for e in cascade.einsums:
        _validate_einsum(mapping, cascade, arch, e, mapping.einsums[e.name])
    groups = _validate_schedule(mapping, cascade)
    _validate_onchip(mapping, cascade)
    _validate_buffers(mapping, cascade, arch, groups)


def _validate_einsum(mapping, cascade, arch, e, em):
    src = mapping.source
    p = f"einsums.{e.name}"
    all_ranks = [v.upper() for v in e.iteration_vars]
    for r in em.pe_ranks:
        if r not in all_ranks:
            _fail(src, f"{p}.pe_ranks", f"{r!r} is not a rank of einsum {e.name} (ranks: {', '.join(all_ranks)})")
        if r not in {v.upper() for v in e.reduced_vars}:
            _fail(src, f"{p}.pe_ranks", f"{r!r} is not a reduced rank of einsum {e.name}")
    if em.pe_ranks and em.unit != "array":
        _fail(src, f"{p}.pe_ranks", "only an einsum on the 2D array can leave ranks to the PE")
    ranks = iteration_ranks(e, em)

    def check_rank(path, r):
        if r not in ranks:
            what = "a PE rank and may not be tiled" if r in em.pe_ranks else f"not a rank of einsum {e.name}"
            _fail(src, path, f"{r!r} is {what} (ranks: {', '.join(ranks)})")

    if em.unit == "vector" and arch.vector is None:
        _fail(src, f"{p}.unit", f"'vector' but the architecture {arch.name} has no 1D array")
    for dim, facs in em.spatial.items():
        for r in facs:
            check_rank(f"{p}.spatial.{dim}.{r}", r)
    for level, facs in em.tiles.items():
        for r in facs:
            check_rank(f"{p}.tiles.{level}.{r}", r)
    for level, order in em.order.items():
        for r in order:
            check_rank(f"{p}.order.{level}", r)
    # a rank on two spatial dims is fine (a product), but each dim has a capacity
    for r in ranks:
        parts, first = [], None
        for lv in ("dram", "glb"):
            if r in em.tiles.get(lv, {}):
                parts.append(em.tiles[lv][r])
                first = first or f"tiles.{lv}"
        for dim, facs in em.spatial.items():
            if r in facs:
                parts.append(facs[r])
                first = first or f"spatial.{dim}"
        if r in em.tiles.get("rf", {}):
            parts.append(em.tiles["rf"][r])
            first = first or "tiles.rf"
        size = cascade.shapes[r]
        if em.extent(r) < size:
            first = first or "tiles.dram"
            _fail(src, f"{p}.{first}.{r}",
                  f"factors {_fmt_factors(parts)} = {em.extent(r)} do not cover rank {r} (size {size})")
        inner = em.tile_extent(r, "glb")
        want = -(-size // inner)
        if em.factor("dram", r) != want:
            _fail(src, f"{p}.tiles.dram.{r}", f"factor {em.factor('dram', r)} leaves whole DRAM tiles empty: "
                  f"rank {r} (size {size}) in GLB tiles of {inner} needs ceil({size}/{inner}) = {want}")
    view = einsum_view(cascade, e, em.unit, em.pe_ranks)
    if em.unit == "vector":
        lanes = math.prod(em.spatial.get("lanes", {}).values())
        if lanes > arch.vector.lanes:
            _fail(src, f"{p}.spatial.lanes", f"factors {lanes} exceed the 1D array's {arch.vector.lanes} lanes")
        _vector_ops_needed(cascade, e, arch, f"{src or 'mapping'}: {p}.unit")
        if arch.vector.rf_words:
            per_lane = arch.vector.rf_words // arch.vector.lanes
            need = access_extent(cascade, e.output, lambda r: em.factor("rf", r) if r in ranks else 1)
            if need > per_lane:
                _fail(src, f"{p}.tiles.rf", f"one lane's tile needs {need} register words, more than "
                      f"its {per_lane} ({arch.vector.rf_words} words / {arch.vector.lanes} lanes)")
        return
    rows, cols = arch.array.rows, arch.array.cols
    if view.kind == "elementwise":
        for dim, cap in (("rows", rows), ("cols", cols)):
            used = math.prod(em.spatial.get(dim, {}).values())
            if used > cap:
                _fail(src, f"{p}.spatial.{dim}", f"factors {used} exceed the array's {cap} {dim}")
        _vector_ops_needed(cascade, e, arch, f"{src or 'mapping'}: {p}.unit")
        need = access_extent(cascade, e.output, lambda r: em.factor("rf", r) if r in ranks else 1)
        if need > arch.memory.rf_words_per_pe:
            _fail(src, f"{p}.tiles.rf", f"one PE's tile needs {need} register words, more than its "
                  f"{arch.memory.rf_words_per_pe}")
        return
    allowed_rows, allowed_cols, allowed_rf = _DATAFLOW_PLACEMENT[arch.array.dataflow]
    short = {"output-stationary": "output-stationary", "weight-stationary": "weight-stationary",
             "input-stationary": "input-stationary"}[arch.array.dataflow]
    for dim, allowed in (("rows", allowed_rows), ("cols", allowed_cols)):
        for r in em.spatial.get(dim, {}):
            if view.roles[r] not in allowed:
                _fail(src, f"{p}.spatial.{dim}.{r}", f"rank {r} is a GEMM {view.roles[r]} rank; a {short} "
                      f"array takes only {'/'.join(sorted(allowed))} ranks on its {dim}")
    for r in em.tiles.get("rf", {}):
        if em.tiles["rf"][r] > 1 and view.roles[r] not in allowed_rf:
            _fail(src, f"{p}.tiles.rf.{r}", f"rank {r} is a GEMM {view.roles[r]} rank; a {short} array "
                  f"iterates only {'/'.join(sorted(allowed_rf))} ranks inside a tile")
    pe = arch.pe_params(_weight_format(cascade, e, view, arch))
    dims = gemm_tile_dims(view, em, lambda r: em.tile_extent(r, "op"))
    for dim, cap in (("rows", rows), ("cols", cols)):
        used = math.prod(em.spatial.get(dim, {}).values())
        k_dim = dim == "rows" and arch.array.dataflow != "output-stationary"
        limit = cap * pe.lanes if k_dim else cap
        if used * (em.k_per_point if k_dim else 1) > limit:
            _fail(src, f"{p}.spatial.{dim}", f"factors {used} exceed the array's {cap} {dim}"
                  + (f" x {pe.lanes} lanes" if k_dim and pe.lanes > 1 else ""))
    from hw.array import array_tile_cost

    try:
        array_tile_cost(arch.array, pe, dims.m, dims.n, dims.k)
    except MappingError as error:
        _fail(src, f"{p}.tiles.rf", str(error))


@dataclass(frozen=True)
class GemmDims:
    """A GEMM tile operation: ``m x n x k`` on the array, repeated ``batch`` times."""
    m: int
    n: int
    k: int
    batch: int


def gemm_tile_dims(view, em, extent_of):
    """The GEMM dims of a tile whose per-rank extents are ``extent_of(rank)``."""
    def prod(role):
        return math.prod(extent_of(r) for r in view.ranks(role))
    return GemmDims(prod("m"), prod("n"), prod("k") * em.k_per_point, prod("batch"))


def _weight_format(cascade, e, view, arch):
    """The PE weight format for a GEMM einsum: the weight operand's format if the PE supports it."""
    refs = [a for a in _tensor_refs(e.expr) if a.tensor != view.a_side and a.tensor != e.output.tensor]
    for a in refs:
        fmt = cascade.tensors[a.tensor].format
        if fmt in arch.pe.weight_formats:
            return fmt
    return None


VECTOR_OP_OF_CATEGORY = MappingProxyType({
    "mul": "mul", "add": "add", "max": "max", "exp": "exp", "div": "div", "shift": "shift",
    "cmp": "max", "logic": "add", "lookup": "lut", "convert": "shift", "alu": "add",
})
"""The 1D-array op that prices one application of an operator category."""

DEFAULT_OP_PRIMITIVES = MappingProxyType({
    "mac": {"mac": 1}, "add": {"add": 1}, "mul": {"mul": 1}, "max": {"max": 1}, "shift": {"shift": 1},
    "div": {"div": 1}, "lut": {"lut": 1}, "exp": {"mac": 6, "add": 1},
})
"""Primitive counts used when the architecture's 1D array does not list an op (FuseMax: exp = 6 MACs + 1 add)."""


def vector_op_cycles(arch, name):
    """Cycles of 1D-array op ``name`` per point: the architecture's op table, else the defaults."""
    if arch.vector is not None and arch.vector.supports(name):
        return arch.vector.op(name).cycles
    return sum(DEFAULT_OP_PRIMITIVES[name].values())


def vector_op_actions(arch, name, bits, acc_bits):
    """Energy-bearing actions of 1D-array op ``name`` per point (the same table as the cycles)."""
    if arch.vector is not None and arch.vector.supports(name):
        return dict(arch.vector.op_actions(name, acc_bits=acc_bits))
    names = {"mac": (f"mul_int{bits}", f"add_int{acc_bits}"), "add": (f"add_int{acc_bits}",),
             "mul": (f"mul_int{bits}",), "max": (f"max_int{bits}",), "div": (f"div_int{bits}",),
             "shift": (f"shift_int{bits}",), "lut": (f"lut_read_int{bits}",)}
    out = {}
    for primitive, count in DEFAULT_OP_PRIMITIVES[name].items():
        for action in names[primitive]:
            out[action] = out.get(action, 0) + count
    return out


def point_ops(cascade, e):
    """Operator applications per iteration point, by category (map ops; the reduce op separately).

    Follows :func:`dataflow.analysis.op_counts`: ``convert`` ops with no cost are free.
    """
    from dataflow.operators import get_operator, get_reducer

    counts = {}
    for n in walk(e.expr):
        if isinstance(n, Call):
            op = get_operator(n.op)
            if op.cost and not (op.category == "convert" and op.cost == 0):
                counts[op.category] = counts.get(op.category, 0) + op.cost
    reduce_category = get_reducer(e.reduce or "add").category if e.reduced_vars else None
    return counts, reduce_category


def _vector_ops_needed(cascade, e, arch, where):
    counts, red = point_ops(cascade, e)
    cats = dict(counts)
    if red:
        cats[red] = cats.get(red, 0) + 1
    for cat in cats:
        if cat not in VECTOR_OP_OF_CATEGORY:
            raise MappingError(f"{where}: no vector op prices operator category {cat!r}")


def _validate_schedule(mapping, cascade):
    src = mapping.source
    names = [e.name for e in cascade.einsums]
    if not mapping.schedule:
        return mapping.groups(cascade)
    seen = {}
    for i, g in enumerate(mapping.schedule):
        for name in g.einsums:
            if name not in names:
                _fail(src, f"schedule[{i}].einsums", f"no such einsum {name!r}")
            if name in seen:
                _fail(src, f"schedule[{i}].einsums", f"{name} is already in schedule[{seen[name]}]")
            seen[name] = i
    for name in names:
        if name not in seen:
            _fail(src, "schedule", f"einsum {name} is in no group")
    for e in cascade.einsums:
        for a in e.input_accesses:
            p = cascade.producers.get(a.tensor)
            if p is not None and p.name != e.name and seen[p.name] > seen[e.name]:
                _fail(src, f"schedule[{seen[e.name]}]", f"{e.name} reads {a.tensor}, which "
                      f"schedule[{seen[p.name]}] produces later")
    groups = mapping.groups(cascade)
    for i, g in enumerate(groups):
        ranks = [r for r, _ in g.loops]
        if len(set(ranks)) != len(ranks):
            _fail(src, f"schedule[{i}].loops", f"repeats a rank: {ranks!r}")
        trips = dict(g.loops)
        for name in g.einsums:
            e = cascade.einsum(name)
            em = mapping.einsums[name]
            er = iteration_ranks(e, em)
            for r in ranks:
                if r not in cascade.shapes:
                    _fail(src, f"schedule[{i}].loops", f"unknown rank {r!r}")
            for r in er:
                if r in trips and len(g.einsums) > 1:
                    tile = em.tile_extent(r, "glb")
                    first = next(n for n in g.einsums if r in iteration_ranks(cascade.einsum(n), mapping.einsums[n]))
                    if tile != mapping.einsums[first].tile_extent(r, "glb"):
                        _fail(src, f"einsums.{name}.tiles", f"GLB tiles of {tile} along {r} differ from "
                              f"{first}'s {mapping.einsums[first].tile_extent(r, 'glb')} in group schedule[{i}]")
                want = trips.get(r, 1)
                if em.factor("dram", r) != want:
                    _fail(src, f"einsums.{name}.tiles.dram.{r}", f"is {em.factor('dram', r)} but group "
                          f"schedule[{i}] loops {r} {want} time(s)")
    return groups


def _validate_onchip(mapping, cascade):
    src = mapping.source
    inter = set(cascade.intermediates)
    for t in mapping.onchip:
        if t not in cascade.tensors:
            _fail(src, "onchip", f"no such tensor {t!r}")
        if t in cascade.outputs:
            _fail(src, "onchip", f"{t} is a cascade output; outputs are written to DRAM")
        if t not in inter:
            _fail(src, "onchip", f"{t} is a cascade input; inputs are read from DRAM")


def group_tensor_needs(mapping, cascade, group):
    """GLB bytes each tensor of ``group`` needs: 2 x its largest GLB tile (double buffering)."""
    need = {}
    for name in group.einsums:
        e = cascade.einsum(name)
        em = mapping.einsums[name]
        ranks = set(iteration_ranks(e, em))

        def ext(r, em=em, ranks=ranks):
            size = cascade.shapes[r]
            return min(size, em.tile_extent(r, "glb")) if r in ranks else size

        for a in [e.output] + list(e.input_accesses):
            b = 2 * _tile_bytes(cascade, a, ext)
            need[a.tensor] = max(need.get(a.tensor, 0), b)
    return need


def _validate_buffers(mapping, cascade, arch, groups):
    src = mapping.source
    glb = arch.memory.glb_bytes
    alloc = mapping.buffers.get("glb", {})
    for t in alloc:
        if t not in cascade.tensors:
            _fail(src, f"buffers.glb.{t}", "no such tensor")
    total_alloc = sum(alloc.values())
    if total_alloc > glb:
        _fail(src, "buffers.glb", f"allocations sum to {total_alloc} B, more than the {glb} B global buffer")
    footprint = {}
    from dataflow.analysis import footprints
    footprint = footprints(cascade)
    group_of = {n: i for i, g in enumerate(groups) for n in g.einsums}
    last_use = {}
    for e in cascade.einsums:
        for a in e.input_accesses:
            last_use[a.tensor] = max(last_use.get(a.tensor, -1), group_of[e.name])
    for i, g in enumerate(groups):
        need = group_tensor_needs(mapping, cascade, g)
        for t in mapping.onchip:
            made = group_of[cascade.producers[t].name]
            if made <= i <= last_use.get(t, made):
                need[t] = footprint[t]
        for t, b in need.items():
            if t in alloc and b > alloc[t]:
                where = "tiles.glb" if t not in mapping.onchip else "onchip"
                _fail(src, f"buffers.glb.{t}", f"group schedule[{i}] needs {b} B for {t} "
                      f"({'whole tensor' if where == 'onchip' else 'double-buffered GLB tile'}), "
                      f"more than its {alloc[t]} B")
        total = sum(max(b, alloc.get(t, 0)) for t, b in need.items())
        if total > glb:
            worst = max(g.einsums, key=lambda n: sum(group_tensor_needs(mapping, cascade, Group((n,))).values()))
            _fail(src, f"einsums.{worst}.tiles.glb", f"group schedule[{i}] needs {total} B of global buffer "
                  f"(double-buffered tiles{' + on-chip tensors' if mapping.onchip else ''}), more than "
                  f"the {glb} B of {arch.name}")


# --- the default mapping ------------------------------------------------------------------------------

def _gemm_like(e):
    refs = {a.tensor for a in _tensor_refs(e.expr) if a.tensor != e.output.tensor}
    return bool(e.reduced_vars) and len(refs) >= 2 and (e.reduce or "add") == "add"


def default_mapping(cascade, arch):
    """A simple valid mapping: GEMM-like einsums on the 2D array (one rank per spatial dim, the
    reduction inside the tile for output-stationary), every other einsum on the 1D array when there
    is one; each einsum its own group; nothing fused; tiles shrunk until they fit the buffers."""
    einsums = {}
    for e in cascade.topological_einsums():
        unit = "array" if (_gemm_like(e) or arch.vector is None) else "vector"
        pe_ranks = ()
        if unit == "array" and _gemm_like(e):
            view0 = einsum_view(cascade, e, unit)
            a_ranks = {v.upper() for a in _tensor_refs(e.expr) if a.tensor == view0.a_side for v in a.vars}
            pe_ranks = tuple(r for r in view0.ranks("k") if r not in a_ranks)
            if len(pe_ranks) == len(view0.ranks("k")):
                pe_ranks = ()
        em = _default_einsum(cascade, arch, e, unit, pe_ranks)
        einsums[e.name] = em
    mapping = Mapping(einsums, cascade=cascade.name, arch=arch.name)
    mapping.validate(cascade, arch)
    return mapping


def _largest(cascade, ranks):
    return max(ranks, key=lambda r: cascade.shapes[r]) if ranks else None


def _default_einsum(cascade, arch, e, unit, pe_ranks):
    ranks = [v.upper() for v in e.iteration_vars if v.upper() not in pe_ranks]
    size = {r: cascade.shapes[r] for r in ranks}
    spatial, rf = {}, {}
    view = einsum_view(cascade, e, unit, pe_ranks)
    if unit == "array" and view.kind == "gemm":
        pe = arch.pe_params(_weight_format(cascade, e, view, arch))
        rows_role, cols_role, rf_roles = {"output-stationary": ("m", "n", ("k",)),
                                          "weight-stationary": ("k", "n", ("m",)),
                                          "input-stationary": ("k", "m", ("n",))}[arch.array.dataflow]
        r_rank = _largest(cascade, view.ranks(rows_role))
        c_rank = _largest(cascade, view.ranks(cols_role))
        row_cap = arch.array.rows * (pe.lanes if rows_role == "k" else 1)
        if r_rank:
            spatial["rows"] = {r_rank: min(size[r_rank], row_cap)}
        if c_rank:
            spatial["cols"] = {c_rank: min(size[c_rank], arch.array.cols)}
        for role in rf_roles:
            for r in view.ranks(role):
                if r not in (r_rank, c_rank):
                    rf[r] = size[r]
    elif unit == "array":
        free = sorted((r for r in ranks if r not in {v.upper() for v in e.reduced_vars}),
                      key=lambda r: -size[r]) or sorted(ranks, key=lambda r: -size[r])
        if free:
            spatial["rows"] = {free[0]: min(size[free[0]], arch.array.rows)}
        if len(free) > 1:
            spatial["cols"] = {free[1]: min(size[free[1]], arch.array.cols)}
    else:
        out = [v.upper() for v in e.output_vars]
        lane_rank = _largest(cascade, out) or _largest(cascade, ranks)
        spatial["lanes"] = {lane_rank: min(size[lane_rank], arch.vector.lanes)}
    if view.kind == "elementwise":
        for r in (v.upper() for v in e.reduced_vars):
            if r in ranks and r not in {x for f in spatial.values() for x in f}:
                rf[r] = size[r]

    def build(rf_now):
        sp = {r: math.prod(f.get(r, 1) for f in spatial.values()) for r in ranks}
        dram = {r: -(-size[r] // (sp[r] * rf_now.get(r, 1))) for r in ranks}
        tiles = {"dram": {r: f for r, f in dram.items() if f > 1}}
        rf_clean = {r: f for r, f in rf_now.items() if f > 1}
        if rf_clean:
            tiles["rf"] = rf_clean
        out_first = [v.upper() for v in e.output_vars if v.upper() in ranks]
        order = {"dram": out_first + [r for r in ranks if r not in out_first]}
        return EinsumMapping(e.name, unit, spatial, tiles, order, pe_ranks)

    glb = arch.memory.glb_bytes
    em = build(rf)
    while True:
        need = sum(group_tensor_needs(Mapping({e.name: em}), cascade, Group((e.name,))).values())
        if need <= glb // 2:
            break
        # shrink the largest temporal factor first, then the spatial ones
        cands = [r for r in rf if rf[r] > 1]
        if cands:
            r = max(cands, key=lambda r: rf[r])
            rf[r] = -(-rf[r] // 2)
        else:
            dims = [(d, r) for d, f in spatial.items() for r, v in f.items() if v > 1]
            if not dims:
                raise MappingError(f"mapping: einsums.{e.name}.tiles: even the smallest tile does not "
                                   f"fit the {glb} B global buffer of {arch.name}")
            d, r = max(dims, key=lambda dr: spatial[dr[0]][dr[1]])
            spatial[d] = dict(spatial[d])
            spatial[d][r] = -(-spatial[d][r] // 2)
        em = build(rf)
    return em
