"""Tests for dataflow.ir: tensors, einsums and make_cascade's validation."""
import dataclasses
import math

import networkx as nx
import pytest

from dataflow.errors import CascadeError
from dataflow.expr import parse_einsum
from dataflow.formats import get_format
from dataflow.ir import Cascade, Einsum, Tensor, expr_is_integer, make_cascade
from dataflow.parser import load_cascade


def ein(text, name=None, **kw) -> Einsum:
    out, expr = parse_einsum(text)
    return Einsum(name or out.tensor, out, expr, text=text, **kw)


def cascade(einsums, shapes, tensors=(), partitions=None, **kw) -> Cascade:
    return make_cascade("t", shapes, {t.name: t for t in tensors}, [ein(e) if isinstance(e, str) else e
                                                                     for e in einsums],
                        partitions=partitions, **kw)


# --- roles ---------------------------------------------------------------------------------------

def test_roles():
    c = cascade(["T[m, n] = A[m, k] * B[k, n]", "Z[m, n] = T[m, n] + 1", "W[m] = T[m, n]"],
                {"M": 2, "N": 3, "K": 4},
                [Tensor("A", ("M", "K")), Tensor("B", ("K", "N")), Tensor("U", ("M",))])
    assert c.inputs == ("A", "B")          # U is declared but never read: not an input
    assert c.intermediates == ("T",)
    assert c.outputs == ("Z", "W")
    assert set(c.producers) == {"T", "Z", "W"}


def test_a_tensor_read_only_by_its_own_recurrence_is_an_output():
    c = cascade([ein("R[m+1] = R[m] + X[m]", init=0)], {"M": 5}, [Tensor("X", ("M",))])
    assert c.outputs == ("R",) and c.intermediates == () and c.inputs == ("X",)


def test_attention_1pass_roles():
    c = load_cascade("attention-1pass")
    assert c.inputs == ("Q", "K", "V")
    assert c.outputs == ("AV",)
    assert set(c.intermediates) == {"BQK", "LM", "RM", "SLN", "SLD", "SLNV", "PRM", "RD", "RNV"}


def test_undeclared_outputs_get_their_ranks_from_the_access_and_the_default_format():
    c = cascade(["Y[n, m] = X[m, n] * 2"], {"M": 2, "N": 3}, [Tensor("X", ("M", "N"), "int8")],
                default_format="int16")
    assert c.tensors["Y"] == Tensor("Y", ("N", "M"), "int16")
    assert c.tensors["X"].format == "int8"


# --- sizes and extents -----------------------------------------------------------------------------

@pytest.mark.parametrize("m, m0", [(8, 4), (10, 4), (1000, 64), (3, 8), (1, 1)])
def test_partition_outer_size_is_the_ceiling(m, m0):
    c = cascade(["Y[m1, m0] = X[m1, m0] * 2"], {"M": m, "M0": m0}, [Tensor("X", ("M",))],
                partitions={"M": ("M1", "M0")})
    assert c.shapes["M1"] == math.ceil(m / m0)
    assert c.extents["X"] == (m,)
    assert c.extents["Y"] == (math.ceil(m / m0), m0)
    assert c.partitions == {"M": ("M1", "M0")}


def test_partitions_given_as_lists_are_normalized():
    c = cascade(["Y[m1, m0] = X[m1, m0]", "Z[m] = Y[m]"], {"M": 10, "M0": 4}, [Tensor("X", ("M",))],
                partitions={"M": ["M1", "M0"]})
    assert c.partitions["M"] == ("M1", "M0")
    assert c.extents["Z"] == (10,)


def test_iterative_tensors_get_one_extra_element_per_unit_of_offset():
    c = cascade([ein("R[m+1, p] = R[m, p] + X[m, p]", init=0),
                 ein("S[m+2, p] = S[m, p] * X[m, p]", init=1),
                 ein("L[p, m+1] = X[m, p]", init=-1)],
                {"M": 5, "P": 3}, [Tensor("X", ("M", "P"))])
    assert c.extents["X"] == (5, 3)
    assert c.extents["R"] == (6, 3)
    assert c.extents["S"] == (7, 3)
    assert c.extents["L"] == (3, 6)
    assert c.einsum("R").recurrence_var == "m"
    assert c.einsum("L").recurrence_var is None  # written at an offset but not a recurrence


def test_attention_1pass_extents_with_uneven_partition():
    c = load_cascade("attention-1pass", P=5, M=1000, M0=64, E=3, F=2)
    assert c.shapes["M1"] == 16
    assert c.extents["RM"] == (17, 5)
    assert c.extents["RNV"] == (2, 17, 5)
    assert c.extents["BQK"] == (16, 64, 5)
    assert c.extents["K"] == (3, 1000)


# --- order and graph -----------------------------------------------------------------------------

def test_topological_order_and_edges():
    # given consumer-first; the recurrence is a self-loop
    c = cascade(["Z[m] = T[m] + R[M]", ein("R[m+1] = R[m] + T[m]", init=0), "T[m] = X[m] * 2"],
                {"M": 4}, [Tensor("X", ("M",))])
    order = [e.name for e in c.topological_einsums()]
    assert order == ["T", "R", "Z"]
    edges = {(u, v): d["tensor"] for u, v, d in c.graph.edges(data=True)}
    assert edges == {("T", "Z"): "T", ("R", "Z"): "R", ("T", "R"): "T", ("R", "R"): "R"}
    assert nx.is_directed_acyclic_graph(c._dag())


@pytest.mark.parametrize("name", ["attention-1pass", "attention-2pass", "attention-3pass", "mpgemm-lut",
                                  "transformer-layer"])
def test_topological_order_puts_every_producer_first(name):
    c = load_cascade(name)
    seen = set(c.inputs)
    for e in c.topological_einsums():
        for acc in e.input_accesses:
            assert acc.tensor in seen or acc.tensor == e.output.tensor, (e.name, acc.tensor)
        seen.add(e.output.tensor)
    assert len(c.topological_einsums()) == len(c.einsums)


def test_family_root_and_parent_with_nested_partitions():
    c = cascade(["Y[m1, m0] = X[m1, m0]", "Z[m1, m01, m00] = Y[m1, m01, m00]"],
                {"M": 10, "M0": 4, "M00": 3}, [Tensor("X", ("M",))],
                partitions={"M": ("M1", "M0"), "M0": ("M01", "M00")})
    assert c.shapes["M1"] == 3 and c.shapes["M01"] == 2
    assert c.family("M") == frozenset({"M", "M1", "M0", "M01", "M00"})
    assert c.family("M0") == frozenset({"M0", "M01", "M00"})
    assert c.family("M1") == frozenset({"M1"})
    assert c.root_of("M00") == "M" and c.root_of("M1") == "M" and c.root_of("M") == "M"
    assert c.parent_of("M00") == "M0" and c.parent_of("M0") == "M" and c.parent_of("M") is None


# --- einsums -------------------------------------------------------------------------------------

def test_einsum_variables():
    e = ein("Z[m, n] = shl(H[m, kg, HI[b, kg, n]], b) * j")
    assert e.output_vars == ("m", "n")
    assert e.iteration_vars == ("m", "n", "kg", "b", "j")
    assert e.reduced_vars == ("kg", "b", "j")
    assert e.recurrence_var is None
    assert [a.tensor for a in e.input_accesses] == ["H", "HI"]
    assert str(e) == "Z[m, n] = shl(H[m, kg, HI[b, kg, n]], b) * j"


def test_einsum_lookup():
    c = load_cascade("attention-3pass")
    assert c.einsum("GM").reduce == "max"
    with pytest.raises(KeyError):
        c.einsum("nope")


def test_cascade_is_frozen():
    c = load_cascade("gemm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "x"
    with pytest.raises(TypeError):
        c.shapes["M"] = 3
    with pytest.raises(TypeError):
        c.tensors["A"] = None


def test_until_is_accepted_within_the_rank():
    for until in (0, 2, 4):
        c = cascade([ein("R[m+1] = R[m] + X[m]", init=0, until=until)], {"M": 4}, [Tensor("X", ("M",))])
        assert c.einsum("R").until == until


def test_expr_is_integer():
    tensors = {"I": Tensor("I", ("M",), "int8"), "F": Tensor("F", ("M",), "fp16")}

    def is_int(text):
        return expr_is_integer(parse_einsum(f"Z[m] = {text}")[1], tensors, lambda f: get_format(f).is_integer)

    for text in ["I[m]", "3", "m", "M", "I[m] * 2 + m", "shl(I[m], 2)", "lt(F[m], 0)", "F[m] > 0",
                 "where(F[m], I[m], 1)", "quantize(F[m], 'int4')", "bitplane(I[m], 1, 'int8')",
                 "term_sign(I[m], 0, 'int8')", "I[m] // 2", "max(I[m], 0)"]:
        assert is_int(text), text
    for text in ["F[m]", "0.5", "I[m] / 2", "exp(I[m])", "sqrt(I[m])", "recip(I[m])", "ldexp(I[m], 1)",
                 "log(I[m])", "shl(F[m], 2)", "where(I[m], F[m], 1)", "decode(I[m], 'e2m1')", "I[m] + F[m]"]:
        assert not is_int(text), text


# --- validation through the Python API ----------------------------------------------------------------

X = Tensor("X", ("M", "P"))
SHAPES = {"M": 4, "P": 2}


@pytest.mark.parametrize("einsums, pattern", [
    (["Y[m, p] = X[m, p]", ein("Y[m, p] = X[m, p] * 2", name="Y2")], r"^einsums Y2: tensor Y is defined twice$"),
    (["A[m, p] = B[m, p] + X[m, p]", "B[m, p] = A[m, p]"],
     r"^einsums A: cycle A -> B -> A does not go through an iterative rank$"),
    (["Y[m, m] = X[m, p]"], r"^einsums Y: output Y\[m, m\] repeats an index$"),
    ([ein("Y[m-1, p] = X[m, p]")], r"^einsums Y: output index m-1 may not have a negative offset$"),
    (["Y[m, p] = Q[m, p]"], r"^einsums Y: undefined tensor 'Q'"),
    (["Y[p, m] = X[p, m]"], r"^einsums Y: index 'p' of X\[p, m\] is rank P but dim 0 of X is rank M"),
    (["Y[m] = X[m]"], r"^einsums Y: X\[m\] has 1 indices but X\[M, P\]:fp32 has 2 ranks"),
    (["Y[m, p] = X[m, p] * 'int8'"], r"^einsums Y: the string 'int8' is not a value"),
    (["Y[m, p] = where('int8', X[m, p], 1)"], r"^einsums Y: the string 'int8' is not a value; strings name formats"),
    (["Y[m, p] = quantize(X[m, p], 4)"], r"^einsums Y: the last argument of quantize must be a format name"),
    (["Y[m, p] = quantize(X[m, p], 'int99')"], r"^einsums Y: unknown number format 'int99'"),
    (["Y[m, p] = X[m, p] * q"], r"^einsums Y: rank 'Q' has no size"),
    (["Y[m, p] = X[m, p] * Q"], r"^einsums Y: unknown shape constant 'Q'"),
    ([ein("Y[m] = X[m, p]", reduce="avg")], r"^einsums Y\.reduce: unknown reduce operator 'avg'; known: add, "),
    ([ein("Y[m, p] = X[m, p]", reduce="max")], r"^einsums Y\.reduce: 'max' given but no rank is reduced"),
    ([ein("S[m, p] = S[m, p] + X[m, p]", init=0)], r"^einsums S: S reads itself without an iterative rank"),
    ([ein("R[m+1, p] = R[m+1, p] + X[m, p]", init=0)], r"^einsums R: the recurrence must read R at an earlier m"),
    ([ein("R[m+1, p] = R[m, p+1] + X[m, p]", init=0)],
     r"^einsums R: R\[m, p\+1\] must read its own output at the written coordinates except along m"),
    ([ein("R[m+1, p] = R[m, p] + X[m, p]")], r"^einsums R\.init: the iterative einsum R needs an initial value$"),
    ([ein("Y[m, p] = X[m, p]", init=0)], r"^einsums Y\.init: only an einsum written at an offset"),
    ([ein("Y[m, p] = X[m, p]", until=2)], r"^einsums Y\.until: only an einsum written at an offset"),
    ([ein("R[m+1, p] = R[m, p] + X[m, p]", init=0, until=5)],
     r"^einsums R\.until: must be between 0 and the size of the iterative rank M \(4\), not 5$"),
    ([ein("R[m+1, p] = R[m, p] + X[m, p]", init=0, until=-1)], r"^einsums R\.until: must be between 0"),
    (["Y[m, p] = X[m+1, p]"], r"^einsums Y: X\[m\+1, p\] reads past the end of rank M \(extent 4\)"),
    (["Y[m, p] = X[m-1, p]"], r"^einsums Y: X\[m-1, p\] reads before the start of rank M \(extent 4\)"),
    (["Y[m, p] = X[4, p]"], r"^einsums Y: coordinate 4 is outside rank M \(extent 4\)"),
    (["Y[p] = X[M, p]"], r"^einsums Y: X\[M, p\] reads the end of M, but only an iterative output"),
    (["Y[m, p] = X[P, p]"], r"^einsums Y: index 'P' of X\[P, p\] names rank P but dim 0 of X is rank M"),
])
def test_validation_errors(einsums, pattern):
    with pytest.raises(CascadeError, match=pattern):
        cascade(einsums, SHAPES, [X])


def test_iterative_tensor_may_be_read_at_its_end_and_at_offsets():
    c = cascade([ein("R[m+1, p] = R[m, p] + X[m, p]", init=0), "Y[p] = R[M, p] - R[0, p]",
                 "D[m, p] = R[m+1, p] - R[m, p]"], SHAPES, [X])
    assert c.outputs == ("Y", "D")


@pytest.mark.parametrize("tensors, shapes, partitions, pattern", [
    ([X], {"M": 0, "P": 2}, None, r"^shapes M: size of rank M must be a positive integer, not 0$"),
    ([X], {"M": 4, "P": True}, None, r"^shapes P: size of rank P must be a positive integer, not True$"),
    ([X], {"M": 4.0, "P": 2}, None, r"^shapes M: size of rank M must be a positive integer, not 4\.0$"),
    ([X], {"M": 4, "P": 2, "M0": 0}, {"M": ("M1", "M0")}, r"^shapes M0: size of rank M0 must be a positive"),
    ([X], {"M": 4, "P": 2, "M0": 2}, {"M": ("M1", "M0", "M2")}, r"^partitions M: a partition must name two ranks"),
    ([X], {"M": 4, "P": 2}, {"M": ("M1", "M0")}, r"^partitions M: inner rank 'M0' of M needs a size in shapes$"),
    ([X], {"M": 4, "P": 2, "N0": 2}, {"N": ("N1", "N0")}, r"^partitions N: partitioned rank 'N' has no size$"),
    ([X], {"M": 4, "P": 2, "M0": 2, "M1": 2}, {"M": ("M1", "M0")}, r"^partitions M: outer rank 'M1' is derived"),
    ([Tensor("X", ("M", "L"))], SHAPES, None, r"^tensors X\.ranks: rank 'L' of tensor X has no size$"),
    ([Tensor("X", ("M", "P"), "int99")], SHAPES, None, r"^tensors X\.format: unknown number format 'int99'"),
])
def test_shape_partition_and_tensor_errors(tensors, shapes, partitions, pattern):
    with pytest.raises(CascadeError, match=pattern):
        cascade(["Y[m, p] = X[m, p]"], shapes, tensors, partitions)


@pytest.mark.parametrize("tensors, text, pattern", [
    ([Tensor("X", ("M", "P"), "int8"), Tensor("Y", ("M", "P"), "int16")], "Y[m, p] = exp(X[m, p])",
     r"format mismatch: Y is int16 but its expression yields non-integers"),
    ([Tensor("X", ("M", "P"), "fp16")], "Y[m, p] = band(X[m, p], 3)",
     r"format mismatch: band needs integer operands, but X\[m, p\] is not an integer format"),
    ([Tensor("X", ("M", "P"), "fp16"), Tensor("T", ("P",), "int8")], "Y[m, p] = T[X[m, p]]",
     r"format mismatch: the lookup index X\[m, p\] of T must be an integer format"),
])
def test_format_mismatches(tensors, text, pattern):
    with pytest.raises(CascadeError, match=pattern):
        cascade([text], SHAPES, tensors)


def test_integer_init_for_an_integer_output():
    tensors = [Tensor("X", ("M",), "int8"), Tensor("R", ("M",), "int32")]
    with pytest.raises(CascadeError, match=r"^einsums R\.init: format mismatch: R is int32 but init is 0\.5$"):
        cascade([ein("R[m+1] = R[m] + X[m]", init=0.5)], {"M": 3}, tensors)
    assert cascade([ein("R[m+1] = R[m] + X[m]", init=2)], {"M": 3}, tensors).einsum("R").init == 2


def test_locate_prefixes_every_message():
    def locate(kind, key):
        return f"here.yaml:7: {kind}.{key}"

    with pytest.raises(CascadeError, match=r"^here\.yaml:7: einsums\.Y: undefined tensor 'Q'"):
        make_cascade("t", SHAPES, {"X": X}, [ein("Y[m, p] = Q[m, p]")], locate=locate)
