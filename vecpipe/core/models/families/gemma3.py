"""Gemma3 text (EmbeddingGemma): Gemma's decoder, bidirectional when the config says so.

Against Qwen3 (decoder.py has the shared blocks): RMSNorm multiplies by (1 + weight) and also
follows attention and the MLP ("sandwich" norms); embeddings are scaled by sqrt(hidden); GeGLU
(tanh GELU); q.k is scaled by `query_pre_attn_scalar`^-1/2; sliding-window layers (per
`layer_types`, or every layer but each `sliding_window_pattern`-th) use the local RoPE base, the
others the global one. With `use_bidirectional_attention`, attention is not causal and
transformers turns the window W of config.json into W // 2 + 1 keys on each side
(|i - j| < W // 2 + 1). Both config spellings are read: transformers 4.x's `rope_theta`,
`rope_local_base_freq`, `rope_scaling` and `sliding_window_pattern`, or 5.x's
`rope_parameters` by layer type and `layer_types`.
"""
from __future__ import annotations

from pathlib import Path

from vecpipe.core.errors import ModelError
from vecpipe.core.models.families.decoder import FULL, SLIDING, DecoderShape, body as decoder_body, check_layer_types, config_int, read_rope
from vecpipe.core.models.families.decoder import GRAPH_FORMS, INPUTS, position_offset, tensor_names  # noqa: F401 (the family interface)
from vecpipe.core.models.graph import GraphBuilder

MODEL_TYPES = ("gemma3_text",)
ARCHITECTURES = ("Gemma3TextModel", "Gemma3ForCausalLM")
KINDS = ("dense",)  # what it builds: an embedder (kinds.py)
GLOBAL_THETA, LOCAL_THETA = 1_000_000.0, 10_000.0  # transformers' defaults
ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh"}


def shape(cfg: dict, path: Path) -> DecoderShape:
    heads = config_int(cfg, "num_attention_heads", path)
    hidden = config_int(cfg, "hidden_size", path)
    n_layers = config_int(cfg, "num_hidden_layers", path)
    head_dim = config_int(cfg, "head_dim", path, 256)
    bidirectional = bool(cfg.get("use_bidirectional_attention", False))
    window = config_int(cfg, "sliding_window", path, 4096)
    pattern = config_int(cfg, "sliding_window_pattern", path, 6)
    types = cfg.get("layer_types") or [SLIDING if (i + 1) % pattern else FULL for i in range(n_layers)]
    activation = ACTIVATIONS.get(cfg.get("hidden_activation", cfg.get("hidden_act", "gelu_pytorch_tanh")))
    if activation is None:
        raise ModelError(f"hidden_activation {cfg.get('hidden_activation')!r} is not supported (known: {', '.join(ACTIVATIONS)})", str(path / "config.json"))
    return DecoderShape(
        hidden=hidden, heads=heads, kv_heads=config_int(cfg, "num_key_value_heads", path, heads), head_dim=head_dim,
        eps=float(cfg.get("rms_norm_eps", 1e-6)), layer_types=check_layer_types(types, n_layers, path), rope=_ropes(cfg, path),
        window=window // 2 + 1 if bidirectional else window, bidirectional=bidirectional,
        scaling=float(cfg.get("query_pre_attn_scalar", 256)) ** -0.5, activation=activation, norm_offset=1.0,
        embed_scale=hidden**0.5, sandwich_norms=True, softcap=cfg.get("attn_logit_softcapping"),
        attention_bias=bool(cfg.get("attention_bias", False)),
    )


def _ropes(cfg: dict, path: Path) -> dict:
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and (FULL in params or SLIDING in params):  # transformers 5.x
        return {FULL: read_rope(params.get(FULL) or {}, GLOBAL_THETA, path), SLIDING: read_rope(params.get(SLIDING) or {}, LOCAL_THETA, path)}
    full = {"rope_theta": cfg.get("rope_theta", GLOBAL_THETA), **(cfg.get("rope_scaling") or {})}  # 4.x: scaling on global layers only
    return {FULL: read_rope(full, GLOBAL_THETA, path), SLIDING: read_rope({"rope_theta": cfg.get("rope_local_base_freq", LOCAL_THETA)}, LOCAL_THETA, path)}


def body(g: GraphBuilder, w: dict, cfg: dict, mask_f: str, n_layers: int, graph_form: str) -> str:
    return decoder_body(g, w, shape(cfg, w.path), mask_f, n_layers)
