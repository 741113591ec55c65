"""The expression language of an Extended Einsum.

An einsum is written ``OUT[i, j] = <expression>``, for example::

    QK[m, p]        = Q[e, p] * K[e, m]                  # map mul, reduce add over e
    SLN[m1, m0, p]  = exp(BQK[m1, m0, p] - RM[m1+1, p])  # an iterative rank read at an offset
    AV[f, p]        = RNV[f, M1, p] / RD[M1, p]          # ``M1`` alone indexes the end of rank M1
    Y[m, n]         = T[m, kg, IDX[b, kg, n]]            # a data-dependent index: a table lookup

Index variables are lower case and name the rank of the same name in upper case. An index is a
variable plus an optional integer offset, an integer, an upper-case rank name (the end of that
rank) or a nested tensor access (a gather). Upper-case names in the body are shape constants, lower
case names are the coordinate along that rank, ``inf`` is infinity and strings are format names.

The text is parsed with Python's own parser (:mod:`ast`) and turned into the frozen nodes below;
nothing is ever evaluated by Python.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterator, Union

from .errors import CascadeError
from .operators import BINOP_NAMES, COMPARE_NAMES, UNARY_NAMES, OPERATORS

__all__ = [
    "Var", "Fixed", "End", "Gather", "Index", "Access", "Const", "Coord", "Shape", "Ref", "Call",
    "Expr", "parse_einsum", "walk", "accesses",
]


@dataclass(frozen=True)
class Var:
    """Index ``rank_var + offset`` (``m1+1``)."""
    var: str
    offset: int = 0

    @property
    def rank(self) -> str:
        return self.var.upper()

    def __str__(self):
        return self.var + (f"+{self.offset}" if self.offset > 0 else f"{self.offset}" if self.offset else "")


@dataclass(frozen=True)
class Fixed:
    """A literal coordinate (``RM[0, p]``)."""
    value: int

    def __str__(self):
        return str(self.value)


@dataclass(frozen=True)
class End:
    """The end of a rank (``RD[M1, p]``): coordinate equal to the rank's size."""
    rank: str

    def __str__(self):
        return self.rank


@dataclass(frozen=True)
class Gather:
    """A data-dependent coordinate: the value of another expression (a table lookup)."""
    expr: "Expr"

    def __str__(self):
        return str(self.expr)


Index = Union[Var, Fixed, End, Gather]


@dataclass(frozen=True)
class Access:
    tensor: str
    indices: tuple

    def __str__(self):
        return f"{self.tensor}[{', '.join(str(i) for i in self.indices)}]"

    @property
    def vars(self) -> tuple[str, ...]:
        out = []
        for idx in self.indices:
            if isinstance(idx, Var):
                out.append(idx.var)
            elif isinstance(idx, Gather):
                out.extend(v for v in _expr_vars(idx.expr))
        return tuple(out)


@dataclass(frozen=True)
class Const:
    value: Union[int, float, str]

    def __str__(self):
        return repr(self.value) if isinstance(self.value, str) else str(self.value)


@dataclass(frozen=True)
class Coord:
    """The coordinate along a rank used as a value (``t`` in ``term_sign(W[k,n], t, 'int4')``)."""
    var: str

    def __str__(self):
        return self.var


@dataclass(frozen=True)
class Shape:
    """A shape constant (``M0``) used as a value."""
    rank: str

    def __str__(self):
        return self.rank


@dataclass(frozen=True)
class Ref:
    access: Access

    def __str__(self):
        return str(self.access)


@dataclass(frozen=True)
class Call:
    op: str
    args: tuple

    def __str__(self):
        return f"{self.op}({', '.join(str(a) for a in self.args)})"


Expr = Union[Const, Coord, Shape, Ref, Call]


def walk(expr) -> Iterator:
    """Every node of ``expr``, depth first, including the expressions inside gathers."""
    yield expr
    if isinstance(expr, Call):
        for a in expr.args:
            yield from walk(a)
    elif isinstance(expr, Ref):
        for idx in expr.access.indices:
            if isinstance(idx, Gather):
                yield from walk(idx.expr)


def accesses(expr) -> list[Access]:
    return [n.access for n in walk(expr) if isinstance(n, Ref)]


def _expr_vars(expr) -> list[str]:
    out = []
    for n in walk(expr):
        if isinstance(n, Coord):
            out.append(n.var)
        elif isinstance(n, Ref):
            out.extend(i.var for i in n.access.indices if isinstance(i, Var))
    return out


class _Converter:
    def __init__(self, text: str):
        self.text = text

    def fail(self, msg: str) -> CascadeError:
        return CascadeError(f"{msg} in {self.text!r}")

    def index(self, node) -> Index:
        if isinstance(node, ast.Name):
            return End(node.id) if node.id[0].isupper() else Var(node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return Fixed(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) \
                and isinstance(node.left, ast.Name) and node.left.id[0].islower() \
                and isinstance(node.right, ast.Constant) and isinstance(node.right.value, int) \
                and not isinstance(node.right.value, bool):
            off = node.right.value if isinstance(node.op, ast.Add) else -node.right.value
            return Var(node.left.id, off)
        if isinstance(node, ast.Subscript):
            return Gather(self.expr(node))
        raise self.fail(f"unsupported index {ast.unparse(node)!r}")

    def access(self, node: ast.Subscript) -> Access:
        if not isinstance(node.value, ast.Name):
            raise self.fail(f"a tensor name must come before '[', not {ast.unparse(node.value)!r}")
        sl = node.slice
        elts = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        return Access(node.value.id, tuple(self.index(e) for e in elts))

    def expr(self, node) -> Expr:
        if isinstance(node, ast.Subscript):
            return Ref(self.access(node))
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
                raise self.fail(f"unsupported constant {node.value!r}")
            return Const(node.value)
        if isinstance(node, ast.Name):
            if node.id == "inf":
                return Const(float("inf"))
            if node.id[0].isupper():
                return Shape(node.id)
            return Coord(node.id)
        if isinstance(node, ast.BinOp):
            name = BINOP_NAMES.get(type(node.op).__name__)
            if name is None:
                raise self.fail(f"unsupported operator {type(node.op).__name__}")
            return Call(name, (self.expr(node.left), self.expr(node.right)))
        if isinstance(node, ast.UnaryOp):
            name = UNARY_NAMES.get(type(node.op).__name__)
            if name is None:
                raise self.fail(f"unsupported operator {type(node.op).__name__}")
            operand = self.expr(node.operand)
            if name == "neg" and isinstance(operand, Const) and not isinstance(operand.value, str):
                return Const(-operand.value)
            return Call(name, (operand,))
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise self.fail("chained comparisons are not supported")
            name = COMPARE_NAMES.get(type(node.ops[0]).__name__)
            if name is None:
                raise self.fail(f"unsupported comparison {type(node.ops[0]).__name__}")
            return Call(name, (self.expr(node.left), self.expr(node.comparators[0])))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.keywords:
                raise self.fail(f"unsupported call {ast.unparse(node)!r}")
            name = node.func.id
            if name not in OPERATORS:
                raise self.fail(f"unknown operator {name!r}")
            args = tuple(self.expr(a) for a in node.args)
            arity = OPERATORS[name].arity
            if arity is not None and len(args) != arity:
                raise self.fail(f"operator {name!r} takes {arity} arguments, not {len(args)}")
            return Call(name, args)
        raise self.fail(f"unsupported syntax {ast.unparse(node)!r}")


def parse_einsum(text: str) -> tuple[Access, Expr]:
    """Parse ``'OUT[i, j] = expression'`` into the output access and the body expression."""
    if not isinstance(text, str):
        raise CascadeError(f"an einsum must be a string like 'Z[m, n] = A[m, k] * B[k, n]', not {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="exec")
    except SyntaxError as exc:
        at = f"at column {exc.offset}" if exc.offset else f"({exc.msg})"
        raise CascadeError(f"syntax error {at} in {text!r}") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign) or len(tree.body[0].targets) != 1:
        raise CascadeError(f"an einsum must have the form 'OUT[...] = expression', not {text!r}")
    assign = tree.body[0]
    conv = _Converter(text)
    target = assign.targets[0]
    if not isinstance(target, ast.Subscript):
        raise CascadeError(f"the left side must be a tensor access like 'Z[m, n]' in {text!r}")
    out = conv.access(target)
    for idx in out.indices:
        if not isinstance(idx, Var):
            raise CascadeError(f"output index {str(idx)!r} must be a rank variable (optionally +offset) in {text!r}")
    return out, conv.expr(assign.value)
