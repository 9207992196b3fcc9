"""MPNet (all-mpnet-base-v2, multi-qa-mpnet-base-*): RoBERTa-style positions, no token types, and a
relative position bias added to every layer's attention scores.

The bias is T5's bucketed scheme as transformers' MPNet computes it: 32 buckets (half for each
direction), exact up to 8, logarithmic up to a distance of 128, one learned value per bucket and
head in `encoder.relative_attention_bias`, shared by all layers. The bucket of each (query, key)
pair depends only on their distance, so the bucket matrix for the longest input is a constant of
the graph, sliced to the batch's length.
"""
from __future__ import annotations

import math

import numpy as np

from vecpipe.core.models.families.roberta import embeddings
from vecpipe.core.models.graph import GraphBuilder, gelu, layer_norm, linear, padding_mask_bias

MODEL_TYPES = ("mpnet",)
ARCHITECTURES = ("MPNetModel", "MPNetForMaskedLM")
KINDS = ("dense",)  # what it builds: an embedder (kinds.py)
GRAPH_FORMS = ("plain",)
INPUTS = ("input_ids", "attention_mask")


def position_offset(cfg: dict) -> int:
    return int(cfg.get("pad_token_id", 1)) + 1


def tensor_names(raw: dict) -> dict:
    return {k.removeprefix("mpnet."): v for k, v in raw.items()}


def relative_buckets(length: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """(length, length) bucket of key position j for query position i, in transformers' float32 arithmetic."""
    positions = np.arange(length, dtype=np.int64)
    n = -(positions[None, :] - positions[:, None])  # n = -(memory - context)
    half = num_buckets // 2
    buckets = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) on the diagonal: that bucket is taken from `n` below
        scaled = np.log(n.astype(np.float32) / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact))
        large = max_exact + (scaled * np.float32(half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return buckets + np.where(n < max_exact, n, large)


def body(g: GraphBuilder, w: dict, cfg: dict, mask_f: str, n_layers: int, graph_form: str) -> str:
    x = embeddings(g, w, cfg, None)
    heads = int(cfg["num_attention_heads"])
    mask_bias = padding_mask_bias(g, mask_f)  # (B, 1, 1, S)
    scores_bias = g.op("Add", [mask_bias, _position_bias(g, w, cfg)])  # (B, heads, S, S), shared by every layer
    for i in range(n_layers):
        x = _layer(g, x, scores_bias, w, i, cfg, heads)
    return x


def _position_bias(g: GraphBuilder, w: dict, cfg: dict) -> str:
    """(1, heads, S, S): the learned bias of each pair's bucket, for the batch's length S."""
    table = w["encoder.relative_attention_bias.weight"]  # (buckets, heads)
    buckets = relative_buckets(int(cfg["max_position_embeddings"]), int(cfg.get("relative_attention_num_buckets", 32)))
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    zero = g.const("zero_1d", np.array([0], np.int64))
    rows = g.op("Slice", [g.const("relative_buckets", buckets.astype(np.int64)), zero, seq_len, zero])
    square = g.op("Slice", [rows, zero, seq_len, g.const("axis_1_1d", np.array([1], np.int64))])  # (S, S)
    bias = g.op("Gather", [g.const("relative_attention_bias", table), square])  # (S, S, heads)
    return g.op("Unsqueeze", [g.op("Transpose", [bias], perm=[2, 0, 1]), g.const("axis_0", np.array([0], np.int64))])


def _layer(g: GraphBuilder, x: str, scores_bias: str, w: dict, i: int, cfg: dict, heads: int) -> str:
    prefix = f"encoder.layer.{i}"
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    hidden = int(cfg["hidden_size"])
    head_dim = hidden // heads
    split = g.const("split_shape", np.array([0, 0, heads, head_dim], np.int64))

    def project(name: str, perm: list[int]) -> str:
        y = linear(g, x, w, f"{prefix}.attention.attn.{name}")
        return g.op("Transpose", [g.op("Reshape", [y, split])], perm=perm)

    q, k, v = project("q", [0, 2, 1, 3]), project("k", [0, 2, 3, 1]), project("v", [0, 2, 1, 3])
    scores = g.op("Div", [g.op("MatMul", [q, k]), g.const("sqrt_d", np.array(math.sqrt(head_dim), np.float32))])
    probs = g.op("Softmax", [g.op("Add", [scores, scores_bias])], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    merged = g.op("Reshape", [context, g.const("merge_shape", np.array([0, 0, hidden], np.int64))])
    attn = linear(g, merged, w, f"{prefix}.attention.attn.o")
    x = layer_norm(g, g.op("Add", [attn, x]), w, f"{prefix}.attention.LayerNorm", eps)
    inner = gelu(g, linear(g, x, w, f"{prefix}.intermediate.dense"))
    out = linear(g, inner, w, f"{prefix}.output.dense")
    return layer_norm(g, g.op("Add", [out, x]), w, f"{prefix}.output.LayerNorm", eps)
