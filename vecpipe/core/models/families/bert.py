"""BERT (and its sentence-transformers descendants: MiniLM, bge, e5, gte ...): the encoder body.

Two graph forms are written from the same weights:
- "plain" (the default): standard ONNX ops only, the reference the parity tests check;
- "fused": onnxruntime's CPU contrib ops (com.microsoft domain): EmbedLayerNormalization,
  Attention with one packed QKV weight, SkipLayerNormalization with the dense bias folded
  in, and BiasGelu (erf GELU, the exact BERT activation). ORT's optimizer never fuses the
  attention of a torch export of this model; writing the fused ops directly does.
The fused graph assumes right padding (every mask row is ones then zeros), which is what
vecpipe's batcher feeds: EmbedLayerNormalization turns the mask into per-row lengths.
On this project's AVX2 CPU the fused form measured slower than the plain one as onnxruntime
optimizes it (see convert.DEFAULT_GRAPH); it stays for CPUs and inputs where it may win.
"""
from __future__ import annotations

import math

import numpy as np

from vecpipe.core.models.graph import GraphBuilder, gelu, layer_norm, linear, padding_mask_bias

MODEL_TYPES = ("bert",)
ARCHITECTURES = ("BertModel",)  # old checkpoints name the class but not the model_type
KINDS = ("dense",)  # what it builds: an embedder (kinds.py)
GRAPH_FORMS = ("fused", "plain")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def position_offset(cfg: dict) -> int:
    """Rows of the position table before the first position: none for BERT."""
    return 0


def tensor_names(raw: dict) -> dict:
    """Some checkpoints prefix every tensor name with "bert."; others do not."""
    return {k.removeprefix("bert."): v for k, v in raw.items()}


def body(g: GraphBuilder, w: dict, cfg: dict, mask_f: str, n_layers: int, graph_form: str) -> str:
    """The last hidden state (B, S, H) after the first `n_layers` layers."""
    if graph_form == "fused":
        return _fused_encoder(g, w, cfg, n_layers)
    x = _embeddings(g, w, cfg)
    mask_bias = padding_mask_bias(g, mask_f)
    for i in range(n_layers):
        x = encoder_layer(g, x, mask_bias, w, i, cfg)
    return x


def _eps(cfg: dict) -> float:
    return float(cfg.get("layer_norm_eps", 1e-12))


def _attention(g: GraphBuilder, x: str, mask_bias: str, w: dict, prefix: str, heads: int, hidden: int) -> str:
    head_dim = hidden // heads
    split = g.const("split_shape", np.array([0, 0, heads, head_dim], np.int64))

    def project(name: str, perm: list[int]) -> str:
        y = linear(g, x, w, f"{prefix}.self.{name}")
        return g.op("Transpose", [g.op("Reshape", [y, split])], perm=perm)

    q = project("query", [0, 2, 1, 3])  # (B, heads, S, d)
    k = project("key", [0, 2, 3, 1])  # (B, heads, d, S)
    v = project("value", [0, 2, 1, 3])
    scores = g.op("MatMul", [q, k])
    scores = g.op("Div", [scores, g.const("sqrt_d", np.array(math.sqrt(head_dim), np.float32))])
    probs = g.op("Softmax", [g.op("Add", [scores, mask_bias])], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    merged = g.op("Reshape", [context, g.const("merge_shape", np.array([0, 0, hidden], np.int64))])
    return linear(g, merged, w, f"{prefix}.output.dense")


def encoder_layer(g: GraphBuilder, x: str, mask_bias: str, w: dict, i: int, cfg: dict) -> str:
    prefix = f"encoder.layer.{i}"
    attn = _attention(g, x, mask_bias, w, f"{prefix}.attention", int(cfg["num_attention_heads"]), int(cfg["hidden_size"]))
    x = layer_norm(g, g.op("Add", [attn, x]), w, f"{prefix}.attention.output.LayerNorm", _eps(cfg))
    inner = gelu(g, linear(g, x, w, f"{prefix}.intermediate.dense"))
    out = linear(g, inner, w, f"{prefix}.output.dense")
    return layer_norm(g, g.op("Add", [out, x]), w, f"{prefix}.output.LayerNorm", _eps(cfg))


def _embeddings(g: GraphBuilder, w: dict, cfg: dict) -> str:
    words = g.op("Gather", [g.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"])
    # Positions 0..S-1 are the first S rows of the position table.
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    zero = g.const("zero_1d", np.array([0], np.int64))
    pos = g.op("Slice", [g.const("position_embeddings", w["embeddings.position_embeddings.weight"]), zero, seq_len, zero])
    types = g.op("Gather", [g.const("token_type_embeddings", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"])
    summed = g.op("Add", [g.op("Add", [words, pos]), types])
    return layer_norm(g, summed, w, "embeddings.LayerNorm", _eps(cfg))


# -- fused form: onnxruntime contrib ops ---------------------------------------------


def _fused_embeddings(g: GraphBuilder, w: dict, cfg: dict) -> tuple[str, str]:
    """Embedding sum + LayerNorm in one op; also gives each row's length for Attention."""
    from onnx import TensorProto

    ids, types, mask = (g.op("Cast", [name], to=TensorProto.INT32) for name in ("input_ids", "token_type_ids", "attention_mask"))
    tables = [
        g.const(name, w[f"embeddings.{name}.weight"])
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")
    ]
    gamma = g.const("embeddings.gamma", w["embeddings.LayerNorm.weight"])
    beta = g.const("embeddings.beta", w["embeddings.LayerNorm.bias"])
    x, lengths = g.ms("EmbedLayerNormalization", [ids, types, *tables, gamma, beta, mask], 2, epsilon=_eps(cfg))
    return x, lengths


def _skip_layer_norm(g: GraphBuilder, x: str, skip: str, w: dict, dense: str, norm: str, eps: float) -> str:
    """LayerNorm(x + dense.bias + skip): the dense layer's bias add rides along in the fused op."""
    inputs = [x, skip, g.const(norm + ".gamma", w[norm + ".weight"]), g.const(norm + ".beta", w[norm + ".bias"]), g.const(dense + ".b", w[dense + ".bias"])]
    return g.ms("SkipLayerNormalization", inputs, epsilon=eps)[0]


def _fused_encoder_layer(g: GraphBuilder, x: str, lengths: str, w: dict, i: int, cfg: dict) -> str:
    prefix = f"encoder.layer.{i}"
    heads = int(cfg["num_attention_heads"])
    names = [f"{prefix}.attention.self.{n}" for n in ("query", "key", "value")]
    # One (hidden, 3*hidden) GEMM for Q, K and V instead of three.
    qkv_w = g.const(prefix + ".qkv.w", np.concatenate([w[n + ".weight"].T for n in names], axis=1))
    qkv_b = g.const(prefix + ".qkv.b", np.concatenate([w[n + ".bias"] for n in names]))
    context = g.ms("Attention", [x, qkv_w, qkv_b, lengths], num_heads=heads)[0]
    attn_dense = f"{prefix}.attention.output.dense"
    projected = g.op("MatMul", [context, g.const(attn_dense + ".w", w[attn_dense + ".weight"].T)])
    x = _skip_layer_norm(g, projected, x, w, attn_dense, f"{prefix}.attention.output.LayerNorm", _eps(cfg))
    inner_dense = f"{prefix}.intermediate.dense"
    inner = g.op("MatMul", [x, g.const(inner_dense + ".w", w[inner_dense + ".weight"].T)])
    inner = g.ms("BiasGelu", [inner, g.const(inner_dense + ".b", w[inner_dense + ".bias"])])[0]
    out_dense = f"{prefix}.output.dense"
    out = g.op("MatMul", [inner, g.const(out_dense + ".w", w[out_dense + ".weight"].T)])
    return _skip_layer_norm(g, out, x, w, out_dense, f"{prefix}.output.LayerNorm", _eps(cfg))


def _fused_encoder(g: GraphBuilder, w: dict, cfg: dict, n_layers: int) -> str:
    x, lengths = _fused_embeddings(g, w, cfg)
    for i in range(n_layers):
        x = _fused_encoder_layer(g, x, lengths, w, i, cfg)
    return x
