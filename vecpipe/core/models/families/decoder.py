"""The body of a decoder-style embedder (Qwen3, Gemma3), from the blocks they share.

RMSNorm (also on each head's queries and keys), rotary position embeddings, grouped-query
attention, a gated MLP, and attention masks by layer type: causal or bidirectional, over the
whole input or a sliding window. qwen3.py and gemma3.py read their configs into a
`DecoderShape`; this module writes the graph. It is not a family (no model_type maps here).

The graph runs without a KV cache: every layer attends over the batch's own tensors only.
vecpipe pads on the right. Under a causal mask that is exact: pads come after every real
token, so no real token sees one, and positions start at 0 for every row. sentence-transformers
pads Qwen3 on the left instead; RoPE and sliding windows depend only on distances between
tokens, so both give the same vectors (the parity tests check batch sizes 1 and 32).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vecpipe.core.errors import ModelError
from vecpipe.core.models.graph import GraphBuilder

FULL, SLIDING = "full_attention", "sliding_attention"
# The family interface (families/__init__.py), the same for every decoder family.
GRAPH_FORMS = ("plain",)
INPUTS = ("input_ids", "attention_mask")
ROPE_TYPES = ("default", "linear")


@dataclass(frozen=True)
class Rope:
    theta: float
    factor: float = 1.0  # "linear" scaling divides the frequencies

    def inverse_frequencies(self, head_dim: int) -> np.ndarray:
        """As transformers computes them, in float32."""
        exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
        return (np.float32(1.0) / (np.float32(self.theta) ** exponents) / np.float32(self.factor)).astype(np.float32)


@dataclass(frozen=True)
class DecoderShape:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    layer_types: tuple[str, ...]
    rope: dict  # layer type -> Rope
    window: int | None  # a sliding layer lets a query see keys at distance < window
    bidirectional: bool
    scaling: float  # multiplies q.k
    activation: str  # "silu" or "gelu_tanh"
    norm_offset: float = 0.0  # Gemma's RMSNorm multiplies by (1 + weight)
    embed_scale: float | None = None  # Gemma scales the token embeddings by sqrt(hidden)
    sandwich_norms: bool = False  # Gemma also normalizes each block's output before the residual add
    softcap: float | None = None
    attention_bias: bool = False


def config_int(cfg: dict, key: str, path, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelError(f"config.json needs a positive integer {key!r}", str(path / "config.json"))
    return value


def read_rope(params: dict, default_theta: float, path) -> Rope:
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise ModelError(f"RoPE type {kind!r} is not supported (vecpipe writes {', '.join(ROPE_TYPES)})", str(path / "config.json"))
    return Rope(float(params.get("rope_theta", default_theta)), float(params.get("factor", 1.0)) if kind == "linear" else 1.0)


def check_layer_types(types: list, n_layers: int, path) -> tuple[str, ...]:
    if not isinstance(types, list) or len(types) < n_layers or not set(types[:n_layers]) <= {FULL, SLIDING}:
        raise ModelError(f"layer_types must name {FULL!r} or {SLIDING!r} for each of the {n_layers} layers", str(path / "config.json"))
    return tuple(types[:n_layers])


def position_offset(cfg: dict) -> int:
    return 0  # RoPE: no position table to skip rows of


def tensor_names(raw: dict) -> dict:
    """Checkpoints saved from a *ForCausalLM class prefix the body's tensors with "model."."""
    return {k.removeprefix("model."): v for k, v in raw.items()}


def body(g: GraphBuilder, w: dict, shape: DecoderShape, mask_f: str, n_layers: int) -> str:
    """The last hidden state (B, S, H) after the first `n_layers` layers and the final norm."""
    table = w["embed_tokens.weight"]
    if shape.embed_scale is not None:  # folded into the table: the same float32 product as scaling after the lookup
        table = table * np.float32(shape.embed_scale)
    x = g.op("Gather", [g.const("embed_tokens", table), "input_ids"])
    positions = g.op("Range", [g.const("zero_i", np.array(0, np.int64)), g.op("Squeeze", [g.op("Shape", ["input_ids"], start=1, end=2)]),
                               g.const("one_i", np.array(1, np.int64))])
    used = sorted(set(shape.layer_types[:n_layers]))
    rotations = {kind: _rotation(g, positions, shape.rope[kind], shape.head_dim) for kind in used}
    biases = {kind: _attention_bias(g, positions, mask_f, kind, shape) for kind in used}
    for i in range(n_layers):
        kind = shape.layer_types[i]
        x = _layer(g, x, w, i, shape, rotations[kind], biases[kind])
    return rms_norm(g, x, w["norm.weight"], shape, "norm")


def rms_norm(g: GraphBuilder, x: str, weight: np.ndarray, shape: DecoderShape, hint: str) -> str:
    """x / sqrt(mean(x^2) + eps) * weight, in the op order onnxruntime fuses into SimplifiedLayerNormalization."""
    squared = g.op("Pow", [x, g.const("two", np.array(2.0, np.float32))])
    mean = g.op("ReduceMean", [squared], axes=[-1], keepdims=1)
    root = g.op("Sqrt", [g.op("Add", [mean, g.const("eps", np.array(shape.eps, np.float32))])])
    scale = (weight.astype(np.float32) + np.float32(shape.norm_offset)).astype(np.float32)
    return g.op("Mul", [g.op("Div", [x, root]), g.const(hint + ".w", scale)])


def _rotation(g: GraphBuilder, positions: str, rope: Rope, head_dim: int) -> tuple[str, str]:
    """cos and sin (S, head_dim) of each position's angles, each half repeated as transformers does."""
    from onnx import TensorProto

    angles = g.op("Mul", [g.op("Unsqueeze", [g.op("Cast", [positions], to=TensorProto.FLOAT), g.const("axis_1", np.array([1], np.int64))]),
                          g.const("inv_freq", rope.inverse_frequencies(head_dim)[None, :])])
    both = g.op("Concat", [angles, angles], axis=-1)
    return g.op("Cos", [both]), g.op("Sin", [both])


def _attention_bias(g: GraphBuilder, positions: str, mask_f: str, kind: str, shape: DecoderShape) -> str:
    """(B, 1, 1, S, S): 0 where a query may see a key, the float32 minimum elsewhere.

    A key is visible when it is a real token and, by the layer's rule: causal (not after the
    query) or bidirectional; within the window on a sliding layer (transformers' masks:
    distance < window, on one side or both).
    """
    from onnx import TensorProto

    queries = g.op("Unsqueeze", [positions, g.const("axis_1", np.array([1], np.int64))])
    keys = g.op("Unsqueeze", [positions, g.const("axis_0", np.array([0], np.int64))])
    ahead = g.op("Sub", [queries, keys])  # query position - key position, (S, S)
    zero = g.const("zero_i", np.array(0, np.int64))
    allowed = None if shape.bidirectional else g.op("GreaterOrEqual", [ahead, zero])
    if kind == SLIDING and shape.window is not None:
        window = g.const("window", np.array(shape.window, np.int64))
        near = g.op("Less", [g.op("Abs", [ahead]) if shape.bidirectional else ahead, window])
        allowed = near if allowed is None else g.op("And", [allowed, near])
    real_keys = g.op("Cast", [mask_f], to=TensorProto.BOOL)
    real_keys = g.op("Unsqueeze", [real_keys, g.const("axes_1_2_3", np.array([1, 2, 3], np.int64))])  # (B, 1, 1, 1, S)
    if allowed is not None:
        allowed = g.op("And", [real_keys, g.op("Unsqueeze", [allowed, g.const("axes_0_1_2", np.array([0, 1, 2], np.int64))])])
    else:
        allowed = real_keys
    return g.op("Where", [allowed, g.const("zero_f", np.array(0.0, np.float32)), g.const("min_f", np.array(np.finfo(np.float32).min, np.float32))])


def _project(g: GraphBuilder, x: str, w: dict, name: str, shape: DecoderShape) -> str:
    y = g.op("MatMul", [x, g.const(name + ".w", w[name + ".weight"].T)])
    return g.op("Add", [y, g.const(name + ".b", w[name + ".bias"])]) if shape.attention_bias else y


def _heads(g: GraphBuilder, x: str, w: dict, prefix: str, proj: str, n_heads: int, shape: DecoderShape, norm: str | None) -> str:
    """(B, n_heads, S, d) of one projection, each head RMS-normalized when the layer has that norm."""
    y = g.op("Reshape", [_project(g, x, w, f"{prefix}.{proj}", shape), g.const("heads_shape", np.array([0, 0, n_heads, shape.head_dim], np.int64))])
    if norm is not None:
        y = rms_norm(g, y, w[f"{prefix}.{norm}.weight"], shape, f"{prefix}.{norm}")
    return g.op("Transpose", [y], perm=[0, 2, 1, 3])


def _rotate(g: GraphBuilder, x: str, rotation: tuple[str, str], head_dim: int) -> str:
    """x * cos + rotate_half(x) * sin, with rotate_half(x) = concat(-x2, x1) of x's two halves."""
    cos, sin = rotation
    first, second = g.op_n("Split", [x, g.const("halves", np.array([head_dim // 2, head_dim // 2], np.int64))], 2, axis=-1)
    rotated = g.op("Concat", [g.op("Neg", [second]), first], axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])])


def _attention(g: GraphBuilder, x: str, w: dict, prefix: str, shape: DecoderShape, rotation: tuple[str, str], bias: str) -> str:
    """Grouped-query attention: the query heads of each key/value head form one axis, so K and V are never copied."""
    group = shape.heads // shape.kv_heads
    has_norm = f"{prefix}.q_norm.weight" in w
    q = _rotate(g, _heads(g, x, w, prefix, "q_proj", shape.heads, shape, "q_norm" if has_norm else None), rotation, shape.head_dim)
    k = _rotate(g, _heads(g, x, w, prefix, "k_proj", shape.kv_heads, shape, "k_norm" if has_norm else None), rotation, shape.head_dim)
    v = _heads(g, x, w, prefix, "v_proj", shape.kv_heads, shape, None)
    q = g.op("Reshape", [q, g.const("group_shape", np.array([0, shape.kv_heads, group, -1, shape.head_dim], np.int64))])
    axis_2 = g.const("axis_2", np.array([2], np.int64))
    k = g.op("Transpose", [g.op("Unsqueeze", [k, axis_2])], perm=[0, 1, 2, 4, 3])  # (B, kv, 1, d, S)
    v = g.op("Unsqueeze", [v, axis_2])  # (B, kv, 1, S, d)
    scores = g.op("Mul", [g.op("MatMul", [q, k]), g.const("scaling", np.array(shape.scaling, np.float32))])
    if shape.softcap is not None:
        cap = g.const("softcap", np.array(shape.softcap, np.float32))
        scores = g.op("Mul", [g.op("Tanh", [g.op("Div", [scores, cap])]), cap])
    probs = g.op("Softmax", [g.op("Add", [scores, bias])], axis=-1)
    context = g.op("Reshape", [g.op("MatMul", [probs, v]), g.const("merge_heads", np.array([0, shape.heads, -1, shape.head_dim], np.int64))])
    merged = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), g.const("merge_shape", np.array([0, 0, shape.heads * shape.head_dim], np.int64))])
    return _project(g, merged, w, f"{prefix}.o_proj", shape)


def _mlp(g: GraphBuilder, x: str, w: dict, prefix: str, shape: DecoderShape) -> str:
    gate = g.op("MatMul", [x, g.const(prefix + ".gate", w[prefix + ".gate_proj.weight"].T)])
    up = g.op("MatMul", [x, g.const(prefix + ".up", w[prefix + ".up_proj.weight"].T)])
    return g.op("MatMul", [g.op("Mul", [_activate(g, gate, shape.activation), up]), g.const(prefix + ".down", w[prefix + ".down_proj.weight"].T)])


def _activate(g: GraphBuilder, x: str, activation: str) -> str:
    if activation == "silu":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    # GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    cubed = g.op("Mul", [g.op("Pow", [x, g.const("three", np.array(3.0, np.float32))]), g.const("gelu_c", np.array(0.044715, np.float32))])
    inner = g.op("Mul", [g.op("Add", [x, cubed]), g.const("gelu_k", np.array(math.sqrt(2.0 / math.pi), np.float32))])
    one_plus = g.op("Add", [g.op("Tanh", [inner]), g.const("one", np.array(1.0, np.float32))])
    return g.op("Mul", [g.op("Mul", [x, g.const("half", np.array(0.5, np.float32))]), one_plus])


def _layer(g: GraphBuilder, x: str, w: dict, i: int, shape: DecoderShape, rotation: tuple[str, str], bias: str) -> str:
    prefix = f"layers.{i}"
    attn = _attention(g, rms_norm(g, x, w[f"{prefix}.input_layernorm.weight"], shape, f"{prefix}.in"), w, f"{prefix}.self_attn", shape, rotation, bias)
    if shape.sandwich_norms:
        attn = rms_norm(g, attn, w[f"{prefix}.post_attention_layernorm.weight"], shape, f"{prefix}.post_attn")
        x = g.op("Add", [x, attn])
        mlp = _mlp(g, rms_norm(g, x, w[f"{prefix}.pre_feedforward_layernorm.weight"], shape, f"{prefix}.pre_ff"), w, f"{prefix}.mlp", shape)
        return g.op("Add", [x, rms_norm(g, mlp, w[f"{prefix}.post_feedforward_layernorm.weight"], shape, f"{prefix}.post_ff")])
    x = g.op("Add", [x, attn])
    mlp = _mlp(g, rms_norm(g, x, w[f"{prefix}.post_attention_layernorm.weight"], shape, f"{prefix}.post_attn"), w, f"{prefix}.mlp", shape)
    return g.op("Add", [x, mlp])
