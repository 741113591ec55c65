"""Tests for dataflow.expr: parsing one Extended Einsum into frozen IR nodes."""
import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow.errors import CascadeError
from dataflow.expr import (Access, Call, Const, Coord, End, Fixed, Gather, Ref, Shape, Var, accesses,
                           parse_einsum, walk)
from dataflow.operators import BINOP_NAMES, COMPARE_NAMES, OPERATORS


def body(text: str):
    return parse_einsum(f"Z[m] = {text}")[1]


def ref(tensor, *indices):
    return Ref(Access(tensor, tuple(indices)))


# --- indices -------------------------------------------------------------------------------------

def test_output_and_plain_product():
    out, expr = parse_einsum("Z[m, n] = A[m, k] * B[k, n]")
    assert out == Access("Z", (Var("m"), Var("n")))
    assert expr == Call("mul", (ref("A", Var("m"), Var("k")), ref("B", Var("k"), Var("n"))))


def test_offsets_on_both_sides():
    out, expr = parse_einsum("RM[m1+1, p] = max(RM[m1, p], LM[m1 - 2, p+3])")
    assert out.indices == (Var("m1", 1), Var("p"))
    assert expr == Call("max", (ref("RM", Var("m1"), Var("p")), ref("LM", Var("m1", -2), Var("p", 3))))


def test_end_of_rank_and_fixed_coordinates():
    _, expr = parse_einsum("AV[f, p] = RNV[f, M1, p] / RD[0, p]")
    assert expr == Call("div", (ref("RNV", Var("f"), End("M1"), Var("p")), ref("RD", Fixed(0), Var("p"))))


def test_gather_index_nests_any_access():
    _, expr = parse_einsum("Y[m, n] = H[m, kg, HI[b, kg, IDX[n]]]")
    inner = ref("IDX", Var("n"))
    hi = ref("HI", Var("b"), Var("kg"), Gather(inner))
    assert expr == ref("H", Var("m"), Var("kg"), Gather(hi))
    assert expr.access.vars == ("m", "kg", "b", "kg", "n")


def test_single_index_and_zero_index_accesses():
    assert body("A[m]") == ref("A", Var("m"))
    out, _ = parse_einsum("S[()] = A[m]")
    assert out.indices == ()


@pytest.mark.parametrize("index", ["m:2", "1.5", "m + k", "1 + m", "M + 1", "m + True", "-1", "..."])
def test_unsupported_indices(index):
    with pytest.raises(CascadeError, match=r"unsupported index"):
        parse_einsum(f"Z[m] = A[{index}]")


def test_tensor_name_must_come_before_the_bracket():
    with pytest.raises(CascadeError, match=r"a tensor name must come before '\[', not 'A\[m\]'"):
        parse_einsum("Z[m] = A[m][n]")


# --- values --------------------------------------------------------------------------------------

def test_constants_coordinates_and_shapes():
    assert body("2") == Const(2)
    assert body("0.5") == Const(0.5)
    assert body("1e-5") == Const(1e-5)
    assert body("'int4'") == Const("int4")
    assert body("inf") == Const(math.inf)
    assert body("j") == Coord("j")
    assert body("M0") == Shape("M0")
    assert isinstance(body("2").value, int) and isinstance(body("2.0").value, float)


def test_unary_minus_folds_numeric_constants():
    assert body("-2") == Const(-2)
    assert body("-0.25") == Const(-0.25)
    assert body("-inf") == Const(-math.inf)
    assert body("--3") == Const(3)
    assert body("-A[m]") == Call("neg", (ref("A", Var("m")),))
    assert body("-j") == Call("neg", (Coord("j"),))
    assert body("-'x'") == Call("neg", (Const("x"),))  # strings are not folded (rejected later)
    assert body("+A[m]") == Call("pos", (ref("A", Var("m")),))
    assert body("~A[m]") == Call("bnot", (ref("A", Var("m")),))


@pytest.mark.parametrize("text", ["None", "True", "False", "1j", "b'x'"])
def test_unsupported_constants(text):
    with pytest.raises(CascadeError, match=r"unsupported constant"):
        body(text)


# --- operators -------------------------------------------------------------------------------------

# The Python spelling of each binary operator the language accepts.
SYMBOLS = {"Add": "+", "Sub": "-", "Mult": "*", "Div": "/", "FloorDiv": "//", "Mod": "%", "LShift": "<<",
           "RShift": ">>", "BitAnd": "&", "BitOr": "|", "BitXor": "^"}
COMPARISONS = {"Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "Eq": "==", "NotEq": "!="}


@pytest.mark.parametrize("ast_name", sorted(BINOP_NAMES))
def test_every_binary_operator(ast_name):
    assert ast_name in SYMBOLS, f"add {ast_name} to the test's table"
    expr = body(f"A[m] {SYMBOLS[ast_name]} 3")
    assert expr == Call(BINOP_NAMES[ast_name], (ref("A", Var("m")), Const(3)))
    assert expr.op in OPERATORS


@pytest.mark.parametrize("ast_name", sorted(COMPARE_NAMES))
def test_every_comparison(ast_name):
    expr = body(f"A[m] {COMPARISONS[ast_name]} B[m]")
    assert expr == Call(COMPARE_NAMES[ast_name], (ref("A", Var("m")), ref("B", Var("m"))))


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_every_named_operator_with_its_arity(name):
    arity = OPERATORS[name].arity
    n = 3 if arity is None else arity  # None: variadic
    args = ", ".join(f"A{i}[m]" for i in range(n))
    expr = body(f"{name}({args})")
    assert expr == Call(name, tuple(ref(f"A{i}", Var("m")) for i in range(n)))
    if arity is None:
        return
    with pytest.raises(CascadeError, match=rf"operator '{name}' takes {arity} arguments, not {arity + 1}"):
        body(f"{name}({args}, A[m])" if arity else f"{name}(A[m])")


def test_precedence_and_nesting():
    assert body("A[m] + B[m] * C[m]") == Call("add", (ref("A", Var("m")), Call("mul", (ref("B", Var("m")),
                                                                                        ref("C", Var("m"))))))
    assert body("(A[m] + B[m]) * 2") == Call("mul", (Call("add", (ref("A", Var("m")), ref("B", Var("m")))),
                                                      Const(2)))
    assert body("exp(A[m] - max(B[m], 0))") == Call("exp", (Call("sub", (ref("A", Var("m")), Call(
        "max", (ref("B", Var("m")), Const(0))))),))


@pytest.mark.parametrize("text, pattern", [
    ("softplus(A[m])", r"unknown operator 'softplus'"),
    ("A[m] @ B[m]", r"unsupported operator MatMult"),
    ("A[m] ** 2", r"unsupported operator Pow"),
    ("not A[m]", r"unsupported operator Not"),
    ("A[m] < B[m] < C[m]", r"chained comparisons are not supported"),
    ("A[m] is B[m]", r"unsupported comparison Is"),
    ("A[m] in B[m]", r"unsupported comparison In"),
    ("exp(x=A[m])", r"unsupported call 'exp\(x=A\[m\]\)'"),
    ("np.exp(A[m])", r"unsupported call"),
    ("A[m] and B[m]", r"unsupported syntax"),
    ("A[m] if B[m] else 0", r"unsupported syntax"),
    ("exp(*A)", r"unsupported syntax"),
    ("lambda: 1", r"unsupported syntax"),
])
def test_unsupported_syntax(text, pattern):
    with pytest.raises(CascadeError, match=pattern) as info:
        body(text)
    assert str(info.value).endswith(f"in 'Z[m] = {text}'")


# --- the statement -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, pattern", [
    (None, r"an einsum must be a string like 'Z\[m, n\] = A\[m, k\] \* B\[k, n\]', not None"),
    (42, r"an einsum must be a string .*, not 42"),
    ("Z[m] = A[m] * * B[m]", r"syntax error at column \d+"),
    ("Z[m] = A[m]\0", r"syntax error \(.*null bytes\)"),
    ("", r"must have the form 'OUT\[...\] = expression'"),
    ("A[m] * B[m]", r"must have the form"),
    ("Z[m] += A[m]", r"must have the form"),
    ("Z[m] = Y[m] = A[m]", r"must have the form"),
    ("Z[m] = A[m]; Y[m] = A[m]", r"must have the form"),
    ("Z[m]: int = A[m]", r"must have the form"),
    ("Z = A[m]", r"the left side must be a tensor access like 'Z\[m, n\]'"),
    ("Z[0] = A[m]", r"output index '0' must be a rank variable"),
    ("Z[M] = A[m]", r"output index 'M' must be a rank variable"),
    ("Z[IDX[m]] = A[m]", r"output index 'IDX\[m\]' must be a rank variable"),
])
def test_malformed_statements(text, pattern):
    with pytest.raises(CascadeError, match=pattern):
        parse_einsum(text)


def test_surrounding_whitespace_is_ignored():
    assert parse_einsum("  Z[m] = A[m]\n") == parse_einsum("Z[m] = A[m]")


# --- nodes, walking and printing -----------------------------------------------------------------

def test_nodes_are_frozen_and_hashable():
    out, expr = parse_einsum("Y[m, n] = shl(H[m, HI[b, n]] * -2, b) / M0")
    hash((out, expr))
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.tensor = "X"
    assert parse_einsum("Y[m, n] = shl(H[m, HI[b, n]] * -2, b) / M0") == (out, expr)


def test_walk_and_accesses_reach_inside_gathers():
    _, expr = parse_einsum("Y[m, n] = shl(HSG[b, n] * H[m, HI[b, n]], b) + 1")
    names = [a.tensor for a in accesses(expr)]
    assert names == ["HSG", "H", "HI"]
    kinds = {type(n).__name__ for n in walk(expr)}
    assert kinds == {"Call", "Ref", "Coord", "Const"}


def test_str_prints_the_einsum_back():
    text = "RNV[f, m1+1, p] = SLNV[f, m1, p] + RNV[f, m1 - 1, p] * T[M1, 0, IDX[p]]"
    out, expr = parse_einsum(text)
    assert str(out) == "RNV[f, m1+1, p]"
    assert str(expr) == "add(SLNV[f, m1, p], mul(RNV[f, m1-1, p], T[M1, 0, IDX[p]]))"
    assert str(body("decode(W[m], 'int4')")) == "decode(W[m], 'int4')"
    assert str(Var("m")) == "m" and str(Var("m", 2)) == "m+2" and str(Var("m", -1)) == "m-1"


def test_rank_of_a_variable():
    assert Var("m1").rank == "M1" and Var("kg", 1).rank == "KG"


# --- property: any access round-trips through its printed form -------------------------------------

VARS = st.sampled_from(["m", "n", "k", "m1", "m0", "kg", "p"])
INDEX = st.one_of(
    st.builds(Var, VARS, st.integers(-3, 3)),
    st.builds(Fixed, st.integers(0, 9)),
    st.builds(End, st.sampled_from(["M", "M1", "KG"])),
)
ACCESS = st.builds(Access, st.sampled_from(["A", "BQK", "RM", "W2"]), st.lists(INDEX, min_size=1, max_size=4).map(tuple))


@settings(max_examples=60, deadline=None)
@given(ACCESS, st.lists(VARS, min_size=1, max_size=3, unique=True), st.integers(0, 2))
def test_accesses_round_trip(acc, out_vars, offset):
    out = Access("OUT", tuple(Var(v, offset if i == 0 else 0) for i, v in enumerate(out_vars)))
    parsed_out, parsed = parse_einsum(f"{out} = {acc} * 2")
    assert parsed_out == out
    assert parsed == Call("mul", (Ref(acc), Const(2)))
