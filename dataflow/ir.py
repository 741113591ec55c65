"""The Extended-Einsum IR: tensors, einsums and the cascade that connects them.

A :class:`Cascade` is a DAG (networkx) of :class:`Einsum` s over named :class:`Tensor` s. Ranks are
named in upper case (``M``, ``P``, ``M1``); every rank has a size bound when the cascade is built.
A rank may be partitioned (``M -> M1, M0``): ``m = m1*M0 + m0``, ``M1 = ceil(M / M0)``, and the
points past ``M`` are padding that the interpreter masks out of every reduction.

An einsum whose output is written at an offset along a rank (``RM[m1+1, p] = max(RM[m1, p], ...)``)
makes that rank *iterative* for its output: the tensor gets one extra element along it, holding
the initialization, and the einsum is evaluated as a recurrence from ``0`` up to its stopping
coordinate (the rank's size unless ``until`` says otherwise). A cycle in the cascade is legal only
when it goes through such an iterative rank.

Cascades are validated on construction (:func:`make_cascade`): an undefined tensor, a rank-size
mismatch, a format mismatch or an illegal cycle raises :class:`~dataflow.errors.CascadeError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import networkx as nx

from .errors import CascadeError
from .expr import Access, Call, Const, Coord, End, Fixed, Gather, Ref, Shape, Var, accesses, walk
from .operators import OPERATORS, get_reducer

__all__ = ["Tensor", "Einsum", "Cascade", "make_cascade", "expr_is_integer"]

# Operators whose last argument is a format name (the only place a string may appear).
_FORMAT_OPS = ("decode", "quantize", "term_sign", "term_shift", "bitplane")


@dataclass(frozen=True)
class Tensor:
    """A named tensor: its ranks (upper-case names, outermost first) and its number format."""
    name: str
    ranks: tuple[str, ...]
    format: str = "fp32"

    def __str__(self):
        return f"{self.name}[{', '.join(self.ranks)}]:{self.format}"


@dataclass(frozen=True)
class Einsum:
    """One Extended Einsum: ``output = reduce_{reduced ranks}(expr)``.

    ``reduce`` names the reduce operator (``add`` by default when ranks are reduced). ``init`` is
    the value of the iterative output before the first step; ``until`` the stopping coordinate of
    the iterative rank (defaults to the rank's size). ``text`` is the source line.
    """
    name: str
    output: Access
    expr: object
    reduce: str | None = None
    init: float | None = None
    until: int | None = None
    text: str = ""

    @property
    def input_accesses(self) -> list[Access]:
        return accesses(self.expr)

    @property
    def output_vars(self) -> tuple[str, ...]:
        return tuple(i.var for i in self.output.indices)

    @property
    def iteration_vars(self) -> tuple[str, ...]:
        """Output variables first, then the reduced ones in order of first appearance."""
        seen = list(self.output_vars)
        for n in walk(self.expr):
            if isinstance(n, Coord) and n.var not in seen:
                seen.append(n.var)
            if isinstance(n, Ref):
                for v in n.access.vars:
                    if v not in seen:
                        seen.append(v)
        return tuple(seen)

    @property
    def reduced_vars(self) -> tuple[str, ...]:
        out = set(self.output_vars)
        return tuple(v for v in self.iteration_vars if v not in out)

    @property
    def recurrence_var(self) -> str | None:
        """The iterative variable when the einsum reads its own output, else None."""
        for acc in self.input_accesses:
            if acc.tensor == self.output.tensor:
                for w in self.output.indices:
                    if w.offset > 0:
                        return w.var
        return None

    def __str__(self):
        return self.text or f"{self.output} = {self.expr}"


@dataclass(frozen=True)
class Cascade:
    """A validated cascade. Build it with :func:`make_cascade` (or ``load_cascade``)."""
    name: str
    shapes: Mapping[str, int]
    partitions: Mapping[str, tuple[str, str]]
    tensors: Mapping[str, Tensor]
    einsums: tuple[Einsum, ...]
    extents: Mapping[str, tuple[int, ...]]
    description: str = ""
    source: str | None = None
    graph: nx.DiGraph = field(default=None, compare=False, repr=False)

    @property
    def producers(self) -> Mapping[str, Einsum]:
        return {e.output.tensor: e for e in self.einsums}

    @property
    def inputs(self) -> tuple[str, ...]:
        produced = {e.output.tensor for e in self.einsums}
        used = {a.tensor for e in self.einsums for a in e.input_accesses}
        return tuple(t for t in self.tensors if t not in produced and (t in used or not self.einsums))

    @property
    def outputs(self) -> tuple[str, ...]:
        consumed = {a.tensor for e in self.einsums for a in e.input_accesses if a.tensor != e.output.tensor}
        return tuple(e.output.tensor for e in self.einsums if e.output.tensor not in consumed)

    @property
    def intermediates(self) -> tuple[str, ...]:
        outs = set(self.outputs)
        return tuple(e.output.tensor for e in self.einsums if e.output.tensor not in outs)

    def einsum(self, name: str) -> Einsum:
        for e in self.einsums:
            if e.name == name:
                return e
        raise KeyError(name)

    def rank_size(self, rank: str) -> int:
        return self.shapes[rank]

    def parent_of(self, rank: str) -> str | None:
        for parent, children in self.partitions.items():
            if rank in children:
                return parent
        return None

    def family(self, rank: str) -> frozenset[str]:
        """A rank together with every rank it is partitioned into, transitively."""
        out = {rank}
        stack = [rank]
        while stack:
            r = stack.pop()
            for child in self.partitions.get(r, ()):
                if child not in out:
                    out.add(child)
                    stack.append(child)
        return frozenset(out)

    def root_of(self, rank: str) -> str:
        while (p := self.parent_of(rank)) is not None:
            rank = p
        return rank

    def topological_einsums(self) -> list[Einsum]:
        order = list(nx.topological_sort(self._dag()))
        by_name = {e.name: e for e in self.einsums}
        return [by_name[n] for n in order]

    def _dag(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(e.name for e in self.einsums)
        g.add_edges_from((u, v) for u, v in self.graph.edges if u != v)
        return g


def expr_is_integer(expr, tensors: Mapping[str, Tensor], is_integer_format) -> bool:
    """Whether ``expr`` yields integers (used for format checks and interpreter dtypes)."""
    if isinstance(expr, Const):
        return isinstance(expr.value, int)
    if isinstance(expr, (Coord, Shape)):
        return True
    if isinstance(expr, Ref):
        return is_integer_format(tensors[expr.access.tensor].format)
    if isinstance(expr, Call):
        if expr.op in ("div", "exp", "log", "sqrt", "recip", "ldexp"):
            return False
        if expr.op in ("term_sign", "term_shift", "bitplane", "lt", "le", "gt", "ge", "eq", "ne"):
            return True
        if expr.op in ("decode", "quantize"):
            return is_integer_format(str(expr.args[-1].value))
        if expr.op == "where":
            return all(expr_is_integer(a, tensors, is_integer_format) for a in expr.args[1:])
        if expr.op in ("shl", "shr"):
            return expr_is_integer(expr.args[0], tensors, is_integer_format)
        return all(expr_is_integer(a, tensors, is_integer_format) for a in expr.args
                   if not (isinstance(a, Const) and isinstance(a.value, str)))
    raise TypeError(expr)


def _default_is_integer(fmt: str) -> bool:
    from .formats import get_format

    return get_format(fmt).is_integer


def make_cascade(
    name: str,
    shapes: Mapping[str, int],
    tensors: Mapping[str, Tensor],
    einsums: list[Einsum],
    partitions: Mapping[str, tuple[str, str]] | None = None,
    default_format: str = "fp32",
    description: str = "",
    source: str | None = None,
    locate=None,
) -> Cascade:
    """Validate and build a cascade.

    ``shapes`` gives the size of every rank that is not the outer child of a partition (that one
    is derived). Tensors that an einsum defines but ``tensors`` does not declare are declared from
    the einsum's output ranks in ``default_format``. ``locate(kind, key)`` returns a prefix naming
    where an item came from (file and line) for error messages.
    """
    locate = locate or (lambda kind, key: f"{kind} {key}")
    partitions = dict(partitions or {})
    sizes = dict(shapes)

    def check_size(rank, size):
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise CascadeError(f"{locate('shapes', rank)}: size of rank {rank} must be a positive integer, not {size!r}")

    for rank, size in sizes.items():
        check_size(rank, size)  # before the partitions divide by them

    # -- partitions: M -> (M1, M0) with M0 given and M1 = ceil(M / M0)
    for parent, children in partitions.items():
        where = locate("partitions", parent)
        if not (isinstance(children, (list, tuple)) and len(children) == 2
                and all(isinstance(c, str) for c in children)):
            raise CascadeError(f"{where}: a partition must name two ranks [outer, inner], not {children!r}")
        outer, inner = children
        partitions[parent] = (outer, inner)  # YAML gives lists; the dim checks compare tuples
        if parent not in sizes:
            raise CascadeError(f"{where}: partitioned rank {parent!r} has no size")
        if inner not in sizes:
            raise CascadeError(f"{where}: inner rank {inner!r} of {parent} needs a size in shapes")
        if outer in shapes:
            raise CascadeError(f"{where}: outer rank {outer!r} is derived as ceil({parent}/{inner}); do not give its size")
        sizes[outer] = -(-sizes[parent] // sizes[inner])
    for rank, size in sizes.items():
        check_size(rank, size)

    from .formats import get_format
    from .errors import FormatError

    tensors = dict(tensors)
    for t in tensors.values():
        try:
            get_format(t.format)
        except FormatError as exc:
            raise CascadeError(f"{locate('tensors', t.name)}.format: {exc}") from None
        for r in t.ranks:
            if r not in sizes:
                raise CascadeError(f"{locate('tensors', t.name)}.ranks: rank {r!r} of tensor {t.name} has no size")

    # -- each tensor is defined once; declare intermediates from their output access
    producers: dict[str, Einsum] = {}
    for e in einsums:
        where = locate("einsums", e.name)
        if e.output.tensor in producers:
            raise CascadeError(f"{where}: tensor {e.output.tensor} is defined twice")
        producers[e.output.tensor] = e
        vars_ = e.output_vars
        if len(set(vars_)) != len(vars_):
            raise CascadeError(f"{where}: output {e.output} repeats an index")
        if e.output.tensor not in tensors:
            tensors[e.output.tensor] = Tensor(e.output.tensor, tuple(v.upper() for v in vars_), default_format)

    names = set(tensors)

    def check_access(where, acc: Access, e: Einsum):
        if acc.tensor not in names:
            raise CascadeError(f"{where}: undefined tensor {acc.tensor!r} in {e.text or e.name!r}")
        t = tensors[acc.tensor]
        _match_dims(where, t, acc, sizes, partitions, e)

    for e in einsums:
        where = locate("einsums", e.name)
        format_args = {id(n.args[-1]) for n in walk(e.expr)
                       if isinstance(n, Call) and n.op in _FORMAT_OPS and n.args}
        for n in walk(e.expr):
            if isinstance(n, Const) and isinstance(n.value, str) and id(n) not in format_args:
                raise CascadeError(f"{where}: the string {n.value!r} is not a value; strings name formats "
                                   f"as the last argument of {', '.join(_FORMAT_OPS)} in {e.text!r}")
            if isinstance(n, Ref):
                check_access(where, n.access, e)
            elif isinstance(n, (Coord,)) and n.var.upper() not in sizes:
                raise CascadeError(f"{where}: rank {n.var.upper()!r} has no size in {e.text!r}")
            elif isinstance(n, Shape) and n.rank not in sizes:
                raise CascadeError(f"{where}: unknown shape constant {n.rank!r} in {e.text!r}")
            elif isinstance(n, Call) and n.op in _FORMAT_OPS:
                fmt_arg = n.args[-1]
                if not (isinstance(fmt_arg, Const) and isinstance(fmt_arg.value, str)):
                    raise CascadeError(f"{where}: the last argument of {n.op} must be a format name in {e.text!r}")
                try:
                    get_format(fmt_arg.value)
                except FormatError as exc:
                    raise CascadeError(f"{where}: {exc}") from None
        check_access(where, e.output, e)
        for v in e.iteration_vars:
            if v.upper() not in sizes:
                raise CascadeError(f"{where}: rank {v.upper()!r} (index {v!r}) has no size in {e.text!r}")
        if e.reduce is not None:
            try:
                get_reducer(e.reduce)
            except CascadeError as exc:
                raise CascadeError(f"{where}.reduce: {exc}") from None
            if not e.reduced_vars:
                raise CascadeError(f"{where}.reduce: {e.reduce!r} given but no rank is reduced in {e.text!r}")
        _check_formats(where, e, tensors)

    # -- extents: one extra element per unit of write offset along an iterative rank
    extents: dict[str, tuple[int, ...]] = {}
    for t in tensors.values():
        ext = [sizes[r] for r in t.ranks]
        e = producers.get(t.name)
        if e is not None:
            for dim, idx in enumerate(e.output.indices):
                if idx.offset < 0:
                    raise CascadeError(f"{locate('einsums', e.name)}: output index {idx} may not have a negative offset")
                if dim < len(ext):
                    ext[dim] += idx.offset
        extents[t.name] = tuple(ext)

    # -- recurrences and out-of-range offsets
    for e in einsums:
        where = locate("einsums", e.name)
        rv = e.recurrence_var
        self_reads = [a for a in e.input_accesses if a.tensor == e.output.tensor]
        if self_reads:
            if rv is None:
                raise CascadeError(f"{where}: {e.output.tensor} reads itself without an iterative rank "
                                   f"(write it at an offset such as [m1+1, ...]) in {e.text!r}")
            w_off = {i.var: i.offset for i in e.output.indices}
            for a in self_reads:
                for i, w in zip(a.indices, e.output.indices):
                    if not (isinstance(i, Var) and i.var == w.var and i.offset < w.offset) and w.var == rv:
                        raise CascadeError(f"{where}: the recurrence must read {e.output.tensor} at an earlier "
                                           f"{rv} than it writes ({a} vs {e.output}) in {e.text!r}")
                    if w.var != rv and not (isinstance(i, Var) and i.var == w.var and i.offset == w_off[w.var]):
                        raise CascadeError(f"{where}: {a} must read its own output at the written "
                                           f"coordinates except along {rv} in {e.text!r}")
            if e.init is None:
                raise CascadeError(f"{where}.init: the iterative einsum {e.name} needs an initial value")
        elif e.init is not None and not any(i.offset > 0 for i in e.output.indices):
            raise CascadeError(f"{where}.init: only an einsum written at an offset (an iterative rank) takes init")
        if e.until is not None:
            iv = rv or next((i.var for i in e.output.indices if i.offset > 0), None)
            if iv is None:
                raise CascadeError(f"{where}.until: only an einsum written at an offset (an iterative rank) "
                                   f"takes until, not {e.text or e.name!r}")
            if not (0 <= e.until <= sizes[iv.upper()]):
                raise CascadeError(f"{where}.until: must be between 0 and the size of the iterative rank "
                                   f"{iv.upper()} ({sizes[iv.upper()]}), not {e.until!r}")
        for acc in e.input_accesses + [e.output]:
            ext = extents[acc.tensor]
            for dim, idx in enumerate(_dims_of(tensors[acc.tensor], acc, partitions)):
                if idx is None:
                    continue
                kind, value = idx
                if kind == "var" and value.offset != 0:
                    hi = value.offset + sizes[value.rank]
                    if value.offset < 0 or hi > ext[dim]:
                        side = "before the start" if value.offset < 0 else "past the end"
                        raise CascadeError(f"{where}: {acc} reads {side} of rank {value.rank} "
                                           f"(extent {ext[dim]}) in {e.text!r}")
                elif kind == "fixed" and not (0 <= value < ext[dim]):
                    raise CascadeError(f"{where}: coordinate {value} is outside rank "
                                       f"{tensors[acc.tensor].ranks[dim]} (extent {ext[dim]}) in {e.text!r}")
                elif kind == "end" and sizes[value] >= ext[dim]:
                    raise CascadeError(f"{where}: {acc} reads the end of {value}, but only an iterative "
                                       f"output has an element there, in {e.text!r}")

    # -- the graph: einsum -> einsum through tensors; only self-loops through an iterative rank
    g = nx.DiGraph()
    for e in einsums:
        g.add_node(e.name, einsum=e)
    for e in einsums:
        for acc in e.input_accesses:
            p = producers.get(acc.tensor)
            if p is not None:
                g.add_edge(p.name, e.name, tensor=acc.tensor)
    dag = nx.DiGraph((u, v) for u, v in g.edges if u != v)
    dag.add_nodes_from(g.nodes)
    try:
        cycle = nx.find_cycle(dag)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise CascadeError(f"{locate('einsums', cycle[0][0])}: cycle {path} does not go through an iterative rank")

    return Cascade(
        name=name,
        shapes=MappingProxyType(sizes),
        partitions=MappingProxyType({k: tuple(v) for k, v in partitions.items()}),
        tensors=MappingProxyType(tensors),
        einsums=tuple(einsums),
        extents=MappingProxyType(extents),
        description=description,
        source=source,
        graph=g,
    )


def _dims_of(t: Tensor, acc: Access, partitions) -> list:
    """Pair each tensor dim with the index that addresses it (None where a split/merge covers it)."""
    out = []
    i = 0
    d = 0
    idx = acc.indices
    while d < len(t.ranks) and i < len(idx):
        r = t.ranks[d]
        x = idx[i]
        children = partitions.get(r)
        if (children and i + 1 < len(idx) and isinstance(x, Var) and isinstance(idx[i + 1], Var)
                and x.rank == children[0] and idx[i + 1].rank == children[1]):
            out.append(None)
            i += 2
            d += 1
            continue
        if (isinstance(x, Var) and d + 1 < len(t.ranks) and partitions.get(x.rank) == (t.ranks[d], t.ranks[d + 1])):
            out.extend([None, None])
            i += 1
            d += 2
            continue
        if isinstance(x, Var):
            out.append(("var", x))
        elif isinstance(x, Fixed):
            out.append(("fixed", x.value))
        elif isinstance(x, End):
            out.append(("end", x.rank))
        else:
            out.append(None)
        i += 1
        d += 1
    return out


def _match_dims(where, t: Tensor, acc: Access, sizes, partitions, e: Einsum):
    """Check that ``acc`` addresses every dim of ``t`` with an index of the same rank."""
    idx = acc.indices
    i = d = 0
    while d < len(t.ranks) or i < len(idx):
        if d >= len(t.ranks) or i >= len(idx):
            raise CascadeError(f"{where}: {acc} has {len(idx)} indices but {t} has {len(t.ranks)} ranks in {e.text!r}")
        r = t.ranks[d]
        x = idx[i]
        children = partitions.get(r)
        if (children and i + 1 < len(idx) and isinstance(x, Var) and isinstance(idx[i + 1], Var)
                and x.rank == children[0] and idx[i + 1].rank == children[1]):
            i += 2
            d += 1
            continue
        if isinstance(x, Var) and d + 1 < len(t.ranks) and partitions.get(x.rank) == (t.ranks[d], t.ranks[d + 1]):
            i += 1
            d += 2
            continue
        if isinstance(x, Var) and x.rank != r:
            raise CascadeError(f"{where}: index {x.var!r} of {acc} is rank {x.rank} but dim {d} of {t.name} "
                               f"is rank {r} in {e.text!r}")
        if isinstance(x, End) and x.rank != r:
            raise CascadeError(f"{where}: index {x.rank!r} of {acc} names rank {x.rank} but dim {d} of "
                               f"{t.name} is rank {r} in {e.text!r}")
        i += 1
        d += 1


def _check_formats(where, e: Einsum, tensors):
    from .formats import get_format

    def is_int(fmt):
        return get_format(fmt).is_integer

    out_t = tensors[e.output.tensor]
    for n in walk(e.expr):
        if isinstance(n, Call):
            op = OPERATORS[n.op]
            if op.integer_only:
                for a in n.args:
                    if not expr_is_integer(a, tensors, is_int):
                        raise CascadeError(f"{where}: format mismatch: {n.op} needs integer operands, "
                                           f"but {a} is not an integer format in {e.text!r}")
        if isinstance(n, Ref):
            for idx in n.access.indices:
                if isinstance(idx, Gather) and not expr_is_integer(idx.expr, tensors, is_int):
                    raise CascadeError(f"{where}: format mismatch: the lookup index {idx.expr} of "
                                       f"{n.access.tensor} must be an integer format in {e.text!r}")
    if is_int(out_t.format) and not expr_is_integer(e.expr, tensors, is_int):
        raise CascadeError(f"{where}: format mismatch: {out_t.name} is {out_t.format} but its expression "
                           f"yields non-integers (quantize it explicitly) in {e.text!r}")
    if e.init is not None and is_int(out_t.format) and not float(e.init).is_integer():
        raise CascadeError(f"{where}.init: format mismatch: {out_t.name} is {out_t.format} but init is {e.init!r}")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def product(xs) -> int:
    return math.prod(xs)
