"""Lattice arrow 1: every library cascade, run by the interpreter, equals its closed form."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import evaluate, load_cascade, random_inputs
from dataflow.errors import CascadeError
from dataflow.formats import bcq_dequantize, bcq_quantize, get_format
from dataflow.interpreter import to_format

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def softmax_av(Q, K, V):
    """softmax(Q^T K) V^T in the cascades' layout: Q[e,p], K[e,m], V[f,m] -> AV[f,p]."""
    s = Q.T @ K
    s = s - s.max(axis=1, keepdims=True)
    a = np.exp(s)
    a /= a.sum(axis=1, keepdims=True)
    return (a @ V.T).T


@SETTINGS
@given(form=st.sampled_from(["attention-3pass", "attention-2pass", "attention-1pass"]),
       P=st.integers(1, 40), M=st.integers(1, 90), E=st.integers(1, 12), F=st.integers(1, 12),
       M0=st.integers(1, 32), seed=st.integers(0, 2 ** 16))
def test_attention_equals_softmax(form, P, M, E, F, M0, seed):
    shapes = dict(P=P, M=M, E=E, F=F)
    if form != "attention-3pass":
        shapes["M0"] = M0  # M0 need not divide M: the padding is masked
    c = load_cascade(form, **shapes)
    ins = random_inputs(c, seed)
    out = evaluate(c, ins)
    np.testing.assert_allclose(out["AV"], softmax_av(ins["Q"], ins["K"], ins["V"]), rtol=2e-5, atol=2e-6)


def test_attention_large_scores_stay_finite():
    """The running max keeps exp from overflowing even when scores are huge."""
    c = load_cascade("attention-1pass", P=4, M=10, E=2, F=3, M0=3)
    ins = random_inputs(c, 0)
    ins["Q"] = ins["Q"] * 300.0
    out = evaluate(c, ins)
    assert np.all(np.isfinite(out["AV"]))
    np.testing.assert_allclose(out["AV"], softmax_av(to_format(ins["Q"], "fp32"), ins["K"], ins["V"]), rtol=1e-4, atol=1e-5)


def test_transformer_layer_equals_numpy():
    c = load_cascade("transformer-layer", D=16, H=2, E=4, F=4, G=24, P=6, M=10, M0=4)
    ins = random_inputs(c, 1)
    out = evaluate(c, ins)
    X, XKV = ins["X"], ins["XKV"]
    heads = []
    for h in range(2):
        Q = np.einsum("dp,de->ep", X, ins["WQ"][:, :, h])
        K = np.einsum("dm,de->em", XKV, ins["WK"][:, :, h])
        V = np.einsum("dm,df->fm", XKV, ins["WV"][:, :, h])
        heads.append(softmax_av(Q, K, V))
    AV = np.stack(heads, axis=1)  # f,h,p
    O = np.einsum("fhp,fhd->dp", AV, ins["WO"])
    R1 = O + X
    U = np.maximum(ins["W1"].T @ R1, 0)
    Y = ins["W2"].T @ U + R1
    np.testing.assert_allclose(out["Y"], Y, rtol=1e-4, atol=1e-4)


def test_softmax_and_layernorm():
    c = load_cascade("softmax", M=33, P=5)
    ins = random_inputs(c, 2)
    x = ins["X"]
    ref = np.exp(x - x.max(0)) / np.exp(x - x.max(0)).sum(0)
    np.testing.assert_allclose(evaluate(c, ins)["Y"], ref, rtol=1e-5, atol=1e-7)
    c = load_cascade("layernorm", E=48, P=3)
    ins = random_inputs(c, 3)
    x = ins["X"]
    ref = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) * ins["G"][:, None] + ins["H"][:, None]
    np.testing.assert_allclose(evaluate(c, ins)["Y"], ref, rtol=1e-4, atol=1e-5)


# ---- mpGEMM: bit-exact against dequantize-then-matmul when activations are integers --------------
INT_WEIGHTS = ["int1", "int2", "int3", "int4", "int6", "int8"]


def _dequant_ref(ins, group, k):
    return ins["A"] @ (ins["W"] * np.repeat(ins["S"], group, axis=0)[:k])


@SETTINGS
@given(wfmt=st.sampled_from(INT_WEIGHTS + ["e2m1", "e3m2", "e2m3"]), afmt=st.sampled_from(["int4", "int8", "int16"]),
       M=st.integers(1, 9), N=st.integers(1, 9), K=st.integers(1, 80), group=st.integers(1, 40),
       seed=st.integers(0, 2 ** 16))
def test_mpgemm_dequant_exact(wfmt, afmt, M, N, K, group, seed):
    integer_w = get_format(wfmt).is_integer
    fmts = {"dfmt": "int32", "yfmt": "int64"} if integer_w else {"dfmt": "fp64", "yfmt": "fp64"}
    c = load_cascade("mpgemm-dequant", M=M, N=N, K=K, KI=group, wfmt=wfmt, afmt=afmt, **fmts)
    ins = random_inputs(c, seed)
    out = evaluate(c, ins)
    assert np.array_equal(out["Y"], _dequant_ref(ins, group, K))


@SETTINGS
@given(wfmt=st.sampled_from(INT_WEIGHTS + ["e2m1", "e3m2"]), afmt=st.sampled_from(["int4", "int8"]),
       M=st.integers(1, 8), N=st.integers(1, 8), K=st.integers(1, 70), group=st.integers(1, 40),
       seed=st.integers(0, 2 ** 16))
def test_mpgemm_bitserial_exact(wfmt, afmt, M, N, K, group, seed):
    c = load_cascade("mpgemm-bitserial", M=M, N=N, K=K, KI=group, wfmt=wfmt, afmt=afmt)
    ins = random_inputs(c, seed)
    out = evaluate(c, ins)
    assert np.array_equal(out["Y"], _dequant_ref(ins, group, K))
    # the number of terms per weight is the format's fixed serial-term count
    assert out["WS"].shape[0] == get_format(wfmt).serial_terms


@SETTINGS
@given(wfmt=st.sampled_from(INT_WEIGHTS + ["ternary", "uint1", "uint2", "uint3", "uint4"]), afmt=st.sampled_from(["int4", "int8"]),
       M=st.integers(1, 8), N=st.integers(1, 8), K=st.integers(1, 70), KL=st.integers(1, 5),
       seed=st.integers(0, 2 ** 16))
def test_mpgemm_lut_exact(wfmt, afmt, M, N, K, KL, seed):
    if wfmt == "ternary":
        # ternary weights ride on 2-bit bit-planes
        c = load_cascade("mpgemm-lut", M=M, N=N, K=K, KL=KL, wfmt="int2", afmt=afmt)
        ins = random_inputs(c, seed)
        ins["W"] = np.random.default_rng(seed).integers(-1, 2, size=ins["W"].shape)
    else:
        c = load_cascade("mpgemm-lut", M=M, N=N, K=K, KL=KL, wfmt=wfmt, afmt=afmt)
        ins = random_inputs(c, seed)
    out = evaluate(c, ins)
    assert np.array_equal(out["Y"], (ins["A"] @ ins["W"]) * ins["S"])
    # the table is the symmetric half: 2^(KL-1) entries per group
    assert out["H"].shape[-1] == 2 ** (KL - 1)


@SETTINGS
@given(M=st.integers(1, 8), N=st.integers(1, 8), K=st.integers(1, 70), KL=st.integers(1, 5), bits=st.integers(1, 4),
       seed=st.integers(0, 2 ** 16))
def test_mpgemm_shiftadd_exact(M, N, K, KL, bits, seed):
    c = load_cascade("mpgemm-shiftadd", M=M, N=N, K=K, KL=KL, I=bits)
    ins = random_inputs(c, seed)
    out = evaluate(c, ins)
    W = np.einsum("in,ikn->kn", 2.0 ** ins["E"], 2 * ins["BB"] - 1)
    assert np.array_equal(out["Y"], ins["A"] @ W)


def test_mpgemm_shiftadd_with_real_bcq_weights():
    """Weights quantized by BCQ with power-of-two scales feed the shift-add cascade exactly."""
    rng = np.random.default_rng(7)
    K, N, bits = 32, 6, 3
    w = rng.standard_normal((K, N))
    bcq = bcq_quantize(w, bits, group_size=K, axis=0, pow2_scales=True)
    c = load_cascade("mpgemm-shiftadd", M=4, N=N, K=K, KL=4, I=bits, efmt="int8")
    alphas = np.asarray(bcq.alphas).reshape(bits, N)
    E = np.log2(alphas).astype(np.int64)
    assert np.array_equal(2.0 ** E, alphas)
    ins = {"A": rng.integers(-128, 128, size=(4, K)), "BB": (np.asarray(bcq.signs) > 0).astype(np.int64), "E": E}
    out = evaluate(c, ins)
    np.testing.assert_array_equal(out["Y"], ins["A"] @ bcq_dequantize(bcq))


def test_integer_accumulator_wraps_like_hardware():
    c = load_cascade("gemm", M=2, N=2, K=300, zfmt="int16")
    ins = {"A": np.full((2, 300), 127), "B": np.full((300, 2), 127)}
    out = evaluate(c, ins)
    exact = 127 * 127 * 300
    wrapped = (exact + 2 ** 15) % 2 ** 16 - 2 ** 15
    assert np.all(out["Z"] == wrapped)


def test_big_integer_products_stay_exact():
    """Integer contractions beyond 2^53 fall back from BLAS to exact int64 arithmetic."""
    c = load_cascade("gemm", M=3, N=3, K=2, afmt="int32", bfmt="int32", zfmt="int64")
    ins = {"A": np.full((3, 2), 2 ** 31 - 1), "B": np.full((2, 3), 2 ** 31 - 1)}
    assert np.all(evaluate(c, ins)["Z"] == 2 * (2 ** 31 - 1) ** 2)


def test_evaluate_returns_every_tensor():
    c = load_cascade("attention-1pass", P=3, M=5, E=2, F=2, M0=2)
    out = evaluate(c, random_inputs(c, 0))
    assert set(out) == set(c.tensors)
    assert out["RM"].shape == (c.shapes["M1"] + 1, 3)
    assert np.all(out["RM"][0] == -np.inf)


def test_missing_or_misshapen_input_is_an_error():
    c = load_cascade("gemm", M=2, N=3, K=4)
    with pytest.raises(CascadeError, match="input tensor B of cascade gemm was not given"):
        evaluate(c, {"A": np.zeros((2, 4))})
    with pytest.raises(CascadeError, match=r"input tensor A has shape \(4, 2\), cascade gemm expects \(2, 4\)"):
        evaluate(c, {"A": np.zeros((4, 2)), "B": np.zeros((4, 3))})


def test_random_inputs_are_in_format_and_reproducible():
    c = load_cascade("mpgemm-dequant", wfmt="int3")
    a, b = random_inputs(c, 5), random_inputs(c, 5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["W"].min() >= -4 and a["W"].max() <= 3
    assert not np.array_equal(random_inputs(c, 6)["A"], a["A"])


def test_until_stops_a_recurrence_early():
    from dataflow.parser import parse_cascade

    c = parse_cascade("""
shapes: {I: 6, N: 3}
tensors: {X: [I, N]}
einsums:
  - {einsum: "S[i+1, n] = S[i, n] + X[i, n]", init: 0, until: 4}
""", path="until.yaml")
    x = np.arange(18, dtype=float).reshape(6, 3)
    out = evaluate(c, {"X": x})
    np.testing.assert_array_equal(out["S"][4], x[:4].sum(0))
    np.testing.assert_array_equal(out["S"][5], 0)


def test_output_rank_missing_from_the_body_broadcasts():
    from dataflow.parser import parse_cascade

    c = parse_cascade("""
shapes: {M: 3, N: 4, K: 5}
tensors: {X: [M, K]}
einsums:
  - Y[m, n] = X[m, k] * 2
""", path="bcast.yaml")
    x = np.arange(15, dtype=float).reshape(3, 5)
    out = evaluate(c, {"X": x})
    np.testing.assert_array_equal(out["Y"], np.repeat((2 * x.sum(1))[:, None], 4, axis=1))
