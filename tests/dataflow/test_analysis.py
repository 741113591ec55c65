"""Op counts, footprints, FuseMax pass counts and the attention I/O lower bound."""
import pytest

from dataflow import load_cascade
from dataflow.analysis import (attention_io_lower_bound, compulsory_bytes, footprints, iteration_points,
                               op_counts, op_totals, pass_count, pass_counts)
from dataflow.errors import EinsynthError


def test_gemm_op_counts_and_footprints():
    c = load_cascade("gemm", M=3, N=5, K=7)
    tot = op_totals(c)
    assert tot == {"mul": 3 * 5 * 7, "add": 3 * 5 * 6}
    assert {oc.format for oc in op_counts(c)} == {"int32"}
    fp = footprints(c)
    assert fp == {"A": 21, "B": 35, "Z": 15 * 4}
    assert compulsory_bytes(c) == 21 + 35 + 60


def test_uneven_partition_counts_only_valid_points():
    c = load_cascade("attention-1pass", P=2, M=10, E=3, F=1, M0=4)
    bqk = c.einsum("BQK")
    assert iteration_points(c, bqk) == 2 * 10 * 3  # not 2 * 12 * 3: padding is not work
    assert op_totals(c)["exp"] == 2 * 10 + 2 * 3  # SLN over every key, PRM once per m1 block


@pytest.mark.parametrize("name, passes", [("attention-3pass", 3), ("attention-2pass", 2), ("attention-1pass", 1),
                                          ("softmax", 3), ("gemm", 1)])
@pytest.mark.parametrize("M, M0", [(64, 16), (100, 7)])
def test_pass_counts(name, passes, M, M0):
    shapes = {"M": M} if name in ("gemm", "softmax") else {"M": M, "P": 8}
    if name in ("attention-2pass", "attention-1pass"):
        shapes["M0"] = M0
    c = load_cascade(name, **shapes)
    assert pass_counts(c)["M"] == passes
    assert pass_count(c) == passes


def test_one_pass_attention_is_one_pass_in_every_rank():
    c = load_cascade("attention-1pass")
    assert set(pass_counts(c).values()) == {1}


def test_layernorm_is_three_pass_over_e():
    # mean, then variance, then normalize: three traversals of E
    assert pass_counts(load_cascade("layernorm"))["E"] == 3


def test_attention_io_lower_bound():
    b = attention_io_lower_bound(4096, 4096, 64, 64, onchip_words=2 ** 20)
    assert b.compulsory_words == 4 * 4096 * 64
    assert b.tiling_words == 4096 * 4096 * 64 * 64 // 2 ** 20
    assert b.words == max(b.compulsory_words, b.tiling_words)
    # doubling on-chip memory halves the tiling term (Theta(N^2 d^2 / M))
    b2 = attention_io_lower_bound(4096, 4096, 64, 64, onchip_words=2 ** 21)
    assert b2.tiling_words * 2 == b.tiling_words
    # below d^2 words the bound saturates at the S = d^2 value
    small = attention_io_lower_bound(1024, 1024, 64, 64, onchip_words=100)
    assert small.tiling_words == 1024 * 1024
    with pytest.raises(EinsynthError, match="onchip_words must be a positive integer, not 0"):
        attention_io_lower_bound(1, 1, 1, 1, onchip_words=0)
