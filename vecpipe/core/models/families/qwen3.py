"""Qwen3 (Qwen3-Embedding): a causal decoder read as an encoder, pooled at its last token.

RMSNorm before attention and MLP and on each head's queries and keys, RoPE (`rope_theta`),
grouped-query attention, a SwiGLU MLP; sliding-window layers when `use_sliding_window` is set
(from `max_window_layers` on, or as `layer_types` lists them). The blocks are in decoder.py.
Both config spellings are read: transformers 4.x's top-level `rope_theta`, 5.x's `rope_parameters`.
"""
from __future__ import annotations

from pathlib import Path

from vecpipe.core.models.families.decoder import FULL, SLIDING, DecoderShape, body as decoder_body, check_layer_types, config_int, read_rope
from vecpipe.core.models.families.decoder import GRAPH_FORMS, INPUTS, position_offset, tensor_names  # noqa: F401 (the family interface)
from vecpipe.core.models.graph import GraphBuilder

MODEL_TYPES = ("qwen3",)
ARCHITECTURES = ("Qwen3Model", "Qwen3ForCausalLM")
KINDS = ("dense",)  # what it builds: an embedder (kinds.py)


def shape(cfg: dict, path: Path) -> DecoderShape:
    heads = config_int(cfg, "num_attention_heads", path)
    hidden = config_int(cfg, "hidden_size", path)
    n_layers = config_int(cfg, "num_hidden_layers", path)
    head_dim = config_int(cfg, "head_dim", path, hidden // heads)
    sliding = bool(cfg.get("use_sliding_window")) and cfg.get("sliding_window") is not None
    types = cfg.get("layer_types") or [SLIDING if sliding and i >= cfg.get("max_window_layers", 28) else FULL for i in range(n_layers)]
    rope = read_rope(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}, cfg.get("rope_theta", 10000.0), path)
    return DecoderShape(
        hidden=hidden, heads=heads, kv_heads=config_int(cfg, "num_key_value_heads", path, heads), head_dim=head_dim,
        eps=float(cfg.get("rms_norm_eps", 1e-6)), layer_types=check_layer_types(types, n_layers, path), rope={FULL: rope, SLIDING: rope},
        window=config_int(cfg, "sliding_window", path) if sliding else None, bidirectional=False, scaling=head_dim**-0.5,
        activation="silu", attention_bias=bool(cfg.get("attention_bias", False)),
    )


def body(g: GraphBuilder, w: dict, cfg: dict, mask_f: str, n_layers: int, graph_form: str) -> str:
    return decoder_body(g, w, shape(cfg, w.path), mask_f, n_layers)
