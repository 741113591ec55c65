"""Transformer model shapes used by the built-in workloads and the FuseMax study.

Dimensions come from each model's published configuration: d_model, heads, head dimension and the
FFN width. ``layer_shapes`` binds them to the ``transformer-layer`` and attention cascades.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import EinsynthError

__all__ = ["ModelShape", "MODELS", "get_model", "layer_shapes", "attention_shapes", "attention_instances"]


@dataclass(frozen=True)
class ModelShape:
    name: str
    d_model: int
    heads: int
    head_dim: int
    ffn: int
    weight_format: str = "fp16"
    act_format: str = "fp16"
    seq_len: int = 4096


MODELS = {m.name: m for m in [
    ModelShape("bert-base", 768, 12, 64, 3072, seq_len=512),
    ModelShape("t5-small", 512, 8, 64, 2048, seq_len=512),
    ModelShape("xlm", 2048, 16, 128, 8192, seq_len=512),
    ModelShape("trxl", 1024, 16, 64, 4096, seq_len=512),
    ModelShape("llama-2-7b", 4096, 32, 128, 11008, seq_len=4096),
    # BitNet b1.58-style: ternary weights, int8 activations (the 3B configuration)
    ModelShape("bitnet-b1.58-3b", 3200, 32, 100, 8640, weight_format="ternary", act_format="int8", seq_len=2048),
    ModelShape("llama-2-7b-w2", 4096, 32, 128, 11008, weight_format="int2", act_format="int8", seq_len=4096),
]}


def get_model(name: str) -> ModelShape:
    try:
        return MODELS[name]
    except KeyError:
        raise EinsynthError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def layer_shapes(name: str, seq_len: int | None = None) -> dict[str, int]:
    """Shapes for the ``transformer-layer`` cascade."""
    m = get_model(name)
    p = seq_len or m.seq_len
    return {"D": m.d_model, "H": m.heads, "E": m.head_dim, "F": m.head_dim, "G": m.ffn, "P": p, "M": p}


def attention_shapes(name: str, seq_len: int) -> dict[str, int]:
    """Shapes for one (batch, head) instance of the attention cascades."""
    m = get_model(name)
    return {"P": seq_len, "M": seq_len, "E": m.head_dim, "F": m.head_dim}


def attention_instances(name: str, batch: int) -> int:
    """Independent attention instances in a layer: batch × heads."""
    return batch * get_model(name).heads
