"""Operators of Extended Einsums: map (compute), reduce (merge) and format operators.

Following the EDGE notation used by FuseMax, an Extended Einsum names the operator it applies at
each point of its iteration space (the *map* action) and the operator it uses to merge points that
share an output coordinate (the *reduce* action). Operators are looked up by name in a registry;
users may add their own with :func:`register_operator`.

Every operator is a vectorized NumPy function. Reduce operators also carry their identity, which
the interpreter uses to mask the padding of ranks that are partitioned unevenly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .errors import CascadeError

__all__ = ["Operator", "OPERATORS", "REDUCERS", "register_operator", "get_operator", "get_reducer"]


@dataclass(frozen=True)
class Operator:
    """A named, vectorized operator.

    ``arity`` is the number of arguments (``None`` for variadic). ``category`` is the action it
    counts as in op counts and energy (``mul``, ``add``, ``max``, ``exp``, ``div``, ``shift``,
    ``lookup``, ``cmp``, ``logic``, ``convert``); ``cost`` is the number of those actions per
    application.
    """

    name: str
    fn: Callable = field(repr=False, compare=False)
    arity: int | None = 2
    category: str = "alu"
    cost: int = 1
    identity: float | None = None  # for reduce operators
    integer_only: bool = False


def _shl(x, s):
    x = np.asarray(x)
    s = np.asarray(s)
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(s.dtype, np.integer):
        s64 = s.astype(np.int64)
        left = np.left_shift(x.astype(np.int64), np.clip(s64, 0, 62))
        right = np.right_shift(x.astype(np.int64), np.clip(-s64, 0, 63))
        return np.where(s64 >= 0, left, right)
    return np.ldexp(np.asarray(x, dtype=np.float64), np.asarray(s, dtype=np.int64))


def _shr(x, s):
    return _shl(x, -np.asarray(s))


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.true_divide(a, b)


def _floordiv(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        safe = np.where(b == 0, 1, b)
        return np.where(b == 0, 0, np.floor_divide(a, safe))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.floor_divide(a, b)


def _exp(x):
    with np.errstate(over="ignore"):
        return np.exp(np.asarray(x, dtype=np.float64))


def _log(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(x, dtype=np.float64))


def _format_op(method):
    def apply(x, *args):
        from .formats import get_format  # formats are a leaf module; imported lazily

        *rest, fmt_name = args
        fmt = get_format(str(fmt_name))
        return method(fmt, np.asarray(x), *rest)

    return apply


def _term(fmt, values, t, part):
    """Sign or shift of term ``t`` of each value's signed power-of-two decomposition (BitMoD)."""
    from .formats import pow2_terms

    terms = pow2_terms(fmt, fmt.encode(np.asarray(values)))
    t = np.asarray(t, dtype=np.int64)
    arr = terms.signs if part == "sign" else terms.shifts
    arr = arr.astype(np.int64)
    idx = np.broadcast_to(t, np.broadcast_shapes(t.shape, arr.shape[:-1]))
    full = np.broadcast_to(arr, idx.shape + arr.shape[-1:])
    return np.take_along_axis(full, idx[..., None], axis=-1)[..., 0]


def _bitplane(fmt, values, b):
    """Bit ``b`` of an integer weight in offset-binary form (value + 2^(bits-1) for signed ints)."""
    codes = np.asarray(values).astype(np.int64)
    if getattr(fmt, "is_integer", False) and getattr(fmt, "signed", False):
        codes = codes + (1 << (fmt.bits - 1))
    return np.right_shift(codes, np.asarray(b, dtype=np.int64)) & 1


OPERATORS: dict[str, Operator] = {}
REDUCERS: dict[str, Operator] = {}


def register_operator(op: Operator, *, reducer: bool = False) -> Operator:
    """Add ``op`` to the registry (map operators, or reduce operators when ``reducer``)."""
    table = REDUCERS if reducer else OPERATORS
    table[op.name] = op
    return op


def get_operator(name: str) -> Operator:
    try:
        return OPERATORS[name]
    except KeyError:
        raise CascadeError(f"unknown operator {name!r}; known: {', '.join(sorted(OPERATORS))}") from None


def get_reducer(name: str) -> Operator:
    try:
        return REDUCERS[name]
    except KeyError:
        raise CascadeError(f"unknown reduce operator {name!r}; known: {', '.join(sorted(REDUCERS))}") from None


for _op in [
    Operator("add", np.add, 2, "add"),
    Operator("sub", np.subtract, 2, "add"),
    Operator("mul", np.multiply, 2, "mul"),
    Operator("div", _div, 2, "div"),
    Operator("floordiv", _floordiv, 2, "div"),
    Operator("mod", np.mod, 2, "div"),
    Operator("max", np.maximum, 2, "max"),
    Operator("min", np.minimum, 2, "max"),
    Operator("neg", np.negative, 1, "add"),
    Operator("abs", np.abs, 1, "add"),
    # FuseMax prices exp as 6 MACs plus an add; the vector unit's cost view does the pricing,
    # here exp is one 'exp' action.
    Operator("exp", _exp, 1, "exp"),
    Operator("log", _log, 1, "exp"),
    Operator("sqrt", lambda x: np.sqrt(np.asarray(x, dtype=np.float64)), 1, "div"),
    Operator("recip", lambda x: _div(1.0, x), 1, "div"),
    Operator("shl", _shl, 2, "shift"),
    Operator("shr", _shr, 2, "shift"),
    Operator("ldexp", lambda x, e: np.ldexp(np.asarray(x, dtype=np.float64), np.asarray(e, dtype=np.int64)), 2, "shift"),
    Operator("band", np.bitwise_and, 2, "logic", integer_only=True),
    Operator("bor", np.bitwise_or, 2, "logic", integer_only=True),
    Operator("bxor", np.bitwise_xor, 2, "logic", integer_only=True),
    Operator("bnot", np.invert, 1, "logic", integer_only=True),
    Operator("lt", lambda a, b: np.less(a, b).astype(np.int64), 2, "cmp"),
    Operator("le", lambda a, b: np.less_equal(a, b).astype(np.int64), 2, "cmp"),
    Operator("gt", lambda a, b: np.greater(a, b).astype(np.int64), 2, "cmp"),
    Operator("ge", lambda a, b: np.greater_equal(a, b).astype(np.int64), 2, "cmp"),
    Operator("eq", lambda a, b: np.equal(a, b).astype(np.int64), 2, "cmp"),
    Operator("ne", lambda a, b: np.not_equal(a, b).astype(np.int64), 2, "cmp"),
    Operator("where", lambda c, a, b: np.where(np.asarray(c) != 0, a, b), 3, "cmp"),
    Operator("pos", lambda x: x, 1, "convert", cost=0),
    # Format operators take the format name as their last argument.
    Operator("decode", _format_op(lambda f, x: f.decode(x.astype(np.int64))), 2, "convert"),
    Operator("quantize", _format_op(lambda f, x: f.quantize(x)), 2, "convert"),
    Operator("term_sign", _format_op(lambda f, x, t: _term(f, x, t, "sign")), 3, "convert", cost=0),
    Operator("term_shift", _format_op(lambda f, x, t: _term(f, x, t, "shift")), 3, "convert", cost=0),
    Operator("bitplane", _format_op(_bitplane), 3, "convert", cost=0),
]:
    register_operator(_op)

for _op in [
    Operator("add", np.add.reduce, None, "add", identity=0),
    Operator("mul", np.multiply.reduce, None, "mul", identity=1),
    Operator("max", np.maximum.reduce, None, "max", identity=-np.inf),
    Operator("min", np.minimum.reduce, None, "max", identity=np.inf),
    Operator("bor", np.bitwise_or.reduce, None, "logic", identity=0),
]:
    register_operator(_op, reducer=True)

BINOP_NAMES: Mapping[str, str] = {
    "Add": "add", "Sub": "sub", "Mult": "mul", "Div": "div", "FloorDiv": "floordiv",
    "Mod": "mod", "LShift": "shl", "RShift": "shr", "BitAnd": "band", "BitOr": "bor",
    "BitXor": "bxor",
}
UNARY_NAMES: Mapping[str, str] = {"USub": "neg", "UAdd": "pos", "Invert": "bnot"}
COMPARE_NAMES: Mapping[str, str] = {"Lt": "lt", "LtE": "le", "Gt": "gt", "GtE": "ge", "Eq": "eq", "NotEq": "ne"}
