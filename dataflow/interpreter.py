"""A vectorized NumPy interpreter for any cascade.

Each einsum is evaluated over its whole iteration space at once: products reduced by ``add`` go
to BLAS through batched ``matmul`` (or ``np.einsum``), everything else is built by broadcasting
and reduced with the reduce operator's ufunc. The only Python loop is the one over the steps of
an iterative rank (the ``m1`` of 1-pass attention), whose body is again vectorized.

Values are held as int64 for integer formats and float64 otherwise. After each einsum the result
is brought into its tensor's format: integers wrap in two's complement at the format's width (as an
accumulator register does), floats round to the format's nearest value.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from .errors import CascadeError
from .expr import Call, Const, Coord, End, Fixed, Gather, Ref, Shape, Var, walk
from .ir import Cascade, Einsum
from .operators import get_operator, get_reducer

__all__ = ["evaluate", "random_inputs", "to_format"]

_EXACT_FLOAT = 2.0 ** 52


def evaluate(cascade: Cascade, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate ``cascade`` on ``inputs``; return every tensor it defines (inputs included)."""
    env: dict[str, np.ndarray] = {}
    for name in cascade.inputs:
        if name not in inputs:
            raise CascadeError(f"input tensor {name} of cascade {cascade.name} was not given")
        arr = np.asarray(inputs[name])
        want = cascade.extents[name]
        if arr.shape != want:
            raise CascadeError(f"input tensor {name} has shape {arr.shape}, cascade {cascade.name} expects {want}")
        fmt = cascade.tensors[name].format
        env[name] = _zero_padding(cascade, name, to_format(arr, fmt))
    for e in cascade.topological_einsums():
        env[e.output.tensor] = _eval_einsum(cascade, e, env)
    return env


def random_inputs(cascade: Cascade, seed: int = 0) -> dict[str, np.ndarray]:
    """Random values for every input, drawn over each tensor's format (padding zeroed)."""
    from .formats import get_format

    rng = np.random.default_rng(seed)
    out = {}
    for name in cascade.inputs:
        t = cascade.tensors[name]
        fmt = get_format(t.format)
        shape = cascade.extents[name]
        if fmt.is_integer:
            vals = fmt.values()
            arr = rng.choice(np.asarray(vals, dtype=np.int64), size=shape)
        else:
            arr = to_format(rng.standard_normal(shape), t.format)
        out[name] = _zero_padding(cascade, name, arr)
    return out


def to_format(arr, fmt_name: str) -> np.ndarray:
    """Bring ``arr`` into format ``fmt_name`` (int64 wrap for integers, rounding for floats)."""
    from .formats import get_format

    fmt = get_format(fmt_name)
    arr = np.asarray(arr)
    if fmt.is_integer:
        if not np.issubdtype(arr.dtype, np.integer):
            arr = np.rint(arr)
        arr = arr.astype(np.int64)
        bits = fmt.bits
        if fmt_name == "ternary":
            return np.clip(arr, -1, 1)
        if bits < 64:
            if getattr(fmt, "signed", True):
                half = 1 << (bits - 1)
                arr = ((arr + half) & ((1 << bits) - 1)) - half
            else:
                arr = arr & ((1 << bits) - 1)
        return arr
    arr = arr.astype(np.float64, copy=False)
    if fmt_name == "fp64":
        return arr
    if fmt_name == "fp32":
        return arr.astype(np.float32).astype(np.float64)
    if fmt_name == "fp16":
        with np.errstate(over="ignore"):
            return arr.astype(np.float16).astype(np.float64)
    return np.asarray(fmt.quantize(arr), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
def _zero_padding(cascade: Cascade, name: str, arr: np.ndarray) -> np.ndarray:
    """Zero the elements of ``name`` that lie past the end of a partitioned rank."""
    ranks = cascade.tensors[name].ranks
    mask = None
    for parent, (outer, inner) in cascade.partitions.items():
        if outer in ranks and inner in ranks and cascade.shapes[outer] * cascade.shapes[inner] != cascade.shapes[parent]:
            io, ii = ranks.index(outer), ranks.index(inner)
            ext = cascade.extents[name]
            c = np.arange(ext[io])[:, None] * cascade.shapes[inner] + np.arange(ext[ii])[None, :]
            valid = c < cascade.shapes[parent]
            shape = [1] * len(ranks)
            shape[io], shape[ii] = ext[io], ext[ii]
            if io > ii:
                valid = valid.T
            m = valid.reshape(shape)
            mask = m if mask is None else (mask & m)
    if mask is None:
        return arr
    return np.where(mask, arr, np.zeros((), dtype=arr.dtype))


class _Space:
    """The iteration space of one einsum evaluation (with some variables fixed)."""

    def __init__(self, cascade: Cascade, e: Einsum, fixed: Mapping[str, int]):
        self.cascade = cascade
        self.fixed = dict(fixed)
        self.vars = [v for v in e.iteration_vars if v not in fixed]
        self.out_vars = [v for v in e.output_vars if v not in fixed]
        self.red_vars = [v for v in self.vars if v not in self.out_vars]
        self.size = {v: cascade.shapes[v.upper()] for v in e.iteration_vars}
        self.axis = {v: i for i, v in enumerate(self.vars)}

    def shape_for(self, v: str) -> tuple[int, ...]:
        s = [1] * len(self.vars)
        s[self.axis[v]] = self.size[v]
        return tuple(s)

    def coord(self, v: str):
        if v in self.fixed:
            return np.int64(self.fixed[v])
        return np.arange(self.size[v], dtype=np.int64).reshape(self.shape_for(v))

    def partition_pairs(self):
        """(outer var, inner var, parent size, inner size) for partitions present in the space."""
        out = []
        present = set(self.vars) | set(self.fixed)
        for parent, (outer, inner) in self.cascade.partitions.items():
            ov, iv = outer.lower(), inner.lower()
            psize = self.cascade.shapes[parent]
            isize = self.cascade.shapes[inner]
            if ov in present and iv in present and self.cascade.shapes[outer] * isize != psize:
                if ov in self.fixed and iv in self.fixed:
                    continue
                out.append((ov, iv, psize, isize))
        return out

    def mask(self, pairs=None):
        m = None
        for ov, iv, psize, isize in (self.partition_pairs() if pairs is None else pairs):
            valid = self.coord(ov) * isize + self.coord(iv) < psize
            m = valid if m is None else (m & valid)
        return m


def _operand(space: _Space, acc, env) -> tuple[np.ndarray, list[str]]:
    """The accessed tensor as an array whose dims are labeled by iteration variables.

    Returns ``(array, labels)``: either compact (one dim per label, labels in space order) or,
    when the access gathers, fully broadcast over the space (labels == space.vars).
    """
    c = space.cascade
    t = c.tensors[acc.tensor]
    arr = env[acc.tensor]
    ranks = t.ranks
    labels: list = []  # per current dim of arr: ("var", name, offset) | ("int", value) | ("gather", expr)
    idx = acc.indices
    i = d = 0
    cur = 0  # current dim in arr
    while d < len(ranks):
        r = ranks[d]
        x = idx[i]
        children = c.partitions.get(r)
        if (children and i + 1 < len(idx) and isinstance(x, Var) and isinstance(idx[i + 1], Var)
                and x.rank == children[0] and idx[i + 1].rank == children[1]):
            n_out, n_in = c.shapes[children[0]], c.shapes[children[1]]
            pad = n_out * n_in - arr.shape[cur]
            if pad > 0:
                widths = [(0, 0)] * arr.ndim
                widths[cur] = (0, pad)
                arr = np.pad(arr, widths)
            arr = arr.reshape(arr.shape[:cur] + (n_out, n_in) + arr.shape[cur + 1:])
            labels += [("var", x.var, x.offset), ("var", idx[i + 1].var, idx[i + 1].offset)]
            i, d, cur = i + 2, d + 1, cur + 2
            continue
        if isinstance(x, Var) and d + 1 < len(ranks) and c.partitions.get(x.rank) == (ranks[d], ranks[d + 1]):
            merged = arr.shape[cur] * arr.shape[cur + 1]
            arr = arr.reshape(arr.shape[:cur] + (merged,) + arr.shape[cur + 2:])
            arr = np.take(arr, np.arange(c.shapes[x.rank]), axis=cur) if merged != c.shapes[x.rank] else arr
            labels.append(("var", x.var, x.offset))
            i, d, cur = i + 1, d + 2, cur + 1
            continue
        if isinstance(x, Var):
            labels.append(("var", x.var, x.offset))
        elif isinstance(x, Fixed):
            labels.append(("int", x.value))
        elif isinstance(x, End):
            labels.append(("int", c.shapes[x.rank]))
        else:
            labels.append(("gather", x.expr))
        i, d, cur = i + 1, d + 1, cur + 1

    # Basic indexing first: fixed coordinates, and offset windows along variables.
    sl = []
    rest = []
    for lab in labels:
        if lab[0] == "int":
            sl.append(lab[1])
        elif lab[0] == "var" and lab[1] in space.fixed:
            sl.append(space.fixed[lab[1]] + lab[2])
        elif lab[0] == "var":
            n = space.size[lab[1]]
            sl.append(slice(lab[2], lab[2] + n))
            rest.append(lab)
        else:
            sl.append(slice(None))
            rest.append(lab)
    arr = arr[tuple(sl)]
    names = [lab[1] for lab in rest if lab[0] == "var"]
    if all(lab[0] == "var" for lab in rest) and len(set(names)) == len(names):
        order = sorted(range(len(names)), key=lambda k: space.axis[names[k]])
        return np.transpose(arr, order), [names[k] for k in order]
    # Gathers (or a repeated index): advanced indexing, broadcast over the whole space.
    index = []
    for lab in rest:
        if lab[0] == "var":
            index.append(space.coord(lab[1]))
        else:
            index.append(np.asarray(_node(space, lab[1], env)).astype(np.int64))
    out = arr[tuple(index)] if index else arr
    out = np.broadcast_to(out, np.broadcast_shapes(np.shape(out), (1,) * len(space.vars)))
    return out, list(space.vars)


def _expand(space: _Space, arr, labels) -> np.ndarray:
    if labels == space.vars or np.ndim(arr) == 0:
        return arr
    shape = [1] * len(space.vars)
    for lab, n in zip(labels, arr.shape):
        shape[space.axis[lab]] = n
    return arr.reshape(shape)


def _node(space: _Space, n, env):
    if isinstance(n, Const):
        return n.value
    if isinstance(n, Coord):
        return space.coord(n.var)
    if isinstance(n, Shape):
        return np.int64(space.cascade.shapes[n.rank])
    if isinstance(n, Ref):
        arr, labels = _operand(space, n.access, env)
        return _expand(space, arr, labels)
    if isinstance(n, Call):
        args = [_node(space, a, env) for a in n.args]
        return get_operator(n.op).fn(*args)
    raise TypeError(n)


def _product_terms(expr):
    """Flatten a product into (accesses, numeric constant) or None if it is not a pure product."""
    if isinstance(expr, Ref):
        return [expr.access], 1
    if isinstance(expr, Const) and isinstance(expr.value, (int, float)):
        return [], expr.value
    if isinstance(expr, Call) and expr.op == "mul":
        left, right = _product_terms(expr.args[0]), _product_terms(expr.args[1])
        if left is None or right is None:
            return None
        return left[0] + right[0], left[1] * right[1]
    return None


def _contract(space: _Space, operands, out_labels, integer: bool):
    """Sum-of-products over the space: batched matmul for two operands, einsum otherwise."""
    if integer:
        bound = float(space_reduction_size(space))
        for arr, _ in operands:
            bound *= float(np.max(np.abs(arr))) if arr.size else 0.0
        if bound >= _EXACT_FLOAT:
            arrays = [a.astype(np.int64) for a, _ in operands]
            return _einsum(arrays, [l for _, l in operands], out_labels).astype(np.int64)
    arrays = [a.astype(np.float64, copy=False) for a, _ in operands]
    labels = [l for _, l in operands]
    if len(arrays) == 2:
        res = _matmul2(arrays[0], labels[0], arrays[1], labels[1], out_labels)
    else:
        res = _einsum(arrays, labels, out_labels)
    if integer:
        return np.rint(res).astype(np.int64)
    return res


def space_reduction_size(space: _Space) -> int:
    return math.prod(space.size[v] for v in space.red_vars) if space.red_vars else 1


def _einsum(arrays, labels, out_labels):
    letters = {}
    for labs in labels + [out_labels]:
        for l in labs:
            letters.setdefault(l, chr(ord("a") + len(letters)))
    spec = ",".join("".join(letters[l] for l in labs) for labs in labels) + "->" + "".join(letters[l] for l in out_labels)
    return np.einsum(spec, *arrays, optimize=True)


def _matmul2(a, la, b, lb, out):
    """``sum`` over the labels not in ``out``, as one batched BLAS matmul."""
    sa, sb = set(la), set(lb)
    # Labels that live in one operand only and are reduced: sum them out first.
    for arr_name in ("a", "b"):
        arr, labs, other = (a, la, sb) if arr_name == "a" else (b, lb, sa)
        drop = [k for k, l in enumerate(labs) if l not in other and l not in out]
        if drop:
            arr = arr.sum(axis=tuple(drop))
            labs = [l for k, l in enumerate(labs) if k not in drop]
        if arr_name == "a":
            a, la = arr, labs
        else:
            b, lb = arr, labs
    sa, sb = set(la), set(lb)
    batch = [l for l in out if l in sa and l in sb]
    contr = [l for l in la if l in sb and l not in out]
    afree = [l for l in la if l not in sb]
    bfree = [l for l in lb if l not in sa]
    dims = dict(zip(la, a.shape))
    dims.update(zip(lb, b.shape))
    nb = math.prod(dims[l] for l in batch)
    nk = math.prod(dims[l] for l in contr)
    na = math.prod(dims[l] for l in afree)
    nbf = math.prod(dims[l] for l in bfree)
    A = np.transpose(a, [la.index(l) for l in batch + afree + contr]).reshape(nb, na, nk)
    B = np.transpose(b, [lb.index(l) for l in batch + contr + bfree]).reshape(nb, nk, nbf)
    C = np.matmul(A, B).reshape([dims[l] for l in batch + afree + bfree])
    cur = batch + afree + bfree
    return np.transpose(C, [cur.index(l) for l in out])


def _eval_space(cascade: Cascade, e: Einsum, env, fixed, integer: bool):
    space = _Space(cascade, e, fixed)
    reducer = get_reducer(e.reduce) if e.reduce else get_reducer("add")
    pairs = space.partition_pairs()
    red = set(space.red_vars)
    red_pairs = [p for p in pairs if p[0] in red or p[1] in red]

    terms = _product_terms(e.expr) if reducer.name == "add" else None
    if terms is not None and terms[0] and space.red_vars and not any(
            isinstance(i, Gather) for a in terms[0] for i in a.indices):
        operands = [_operand(space, a, env) for a in terms[0]]
        if any(l != space.vars and len(set(l)) != len(l) for _, l in operands) or any(
                l == space.vars and any(isinstance(i, Gather) for i in a.indices) for (_, l), a in zip(operands, terms[0])):
            operands = None
        if operands is not None and not set(space.out_vars) <= {v for _, l in operands for v in l}:
            operands = None  # an output rank no operand carries: broadcast in the generic path
        if operands is not None:
            for ov, iv, psize, isize in red_pairs:
                # Padding is zero in every stored tensor, so a product that carries both
                # coordinates is already masked; otherwise mask explicitly.
                if not any(ov in l and iv in l for _, l in operands):
                    m = space.mask([(ov, iv, psize, isize)])
                    labs = [v for v in space.vars if m.shape[space.axis[v]] != 1]
                    operands.append((np.squeeze(m, axis=tuple(k for k, s in enumerate(m.shape) if s == 1))
                                     .astype(np.int64 if integer else np.float64), labs))
            res = _contract(space, operands, space.out_vars, integer)
            if terms[1] != 1:
                res = res * terms[1]
            return space, res

    val = np.asarray(_node(space, e.expr, env))
    full = tuple(space.size[v] for v in space.vars)
    if space.red_vars:
        val = np.broadcast_to(val, np.broadcast_shapes(val.shape, (1,) * len(full)))
        if red_pairs:
            m = space.mask(red_pairs)
            ident = reducer.identity
            if np.issubdtype(val.dtype, np.integer) and ident is not None and math.isinf(ident):
                ident = np.iinfo(np.int64).min if ident < 0 else np.iinfo(np.int64).max
            val = np.where(m, val, np.asarray(ident, dtype=val.dtype))
        val = np.broadcast_to(val, full)
        axes = tuple(space.axis[v] for v in space.red_vars)
        val = reducer.fn(val, axis=axes)
    else:
        val = np.broadcast_to(val, full)
    return space, val


def _eval_einsum(cascade: Cascade, e: Einsum, env) -> np.ndarray:
    name = e.output.tensor
    fmt = cascade.tensors[name].format
    ext = cascade.extents[name]
    from .formats import get_format

    integer = get_format(fmt).is_integer
    rv = e.recurrence_var
    if rv is None and not any(w.offset for w in e.output.indices):
        _, val = _eval_space(cascade, e, env, {}, integer)
        val = to_format(val, fmt)
        if not val.flags.writeable or val.shape != ext:
            val = np.array(np.broadcast_to(val, ext))
        return _zero_padding(cascade, name, val)
    out = np.zeros(ext, dtype=np.int64 if integer else np.float64)
    window = []
    for idx in e.output.indices:
        if idx.offset:
            sl = [slice(None)] * len(ext)
            sl[len(window)] = slice(0, idx.offset)
            out[tuple(sl)] = e.init
        window.append(idx)

    if rv is None:
        _, val = _eval_space(cascade, e, env, {}, integer)
        sl = tuple(slice(w.offset, w.offset + cascade.shapes[w.rank]) for w in e.output.indices)
        out[sl] = to_format(val, fmt)
    else:
        stop = e.until if e.until is not None else cascade.shapes[rv.upper()]
        local = dict(env)
        local[name] = out
        for step in range(stop):
            _, val = _eval_space(cascade, e, local, {rv: step}, integer)
            sl = tuple(step + w.offset if w.var == rv else slice(w.offset, w.offset + cascade.shapes[w.rank])
                       for w in e.output.indices)
            out[sl] = to_format(val, fmt)
    return _zero_padding(cascade, name, out)
