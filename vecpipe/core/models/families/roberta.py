"""RoBERTa and XLM-RoBERTa (multilingual-e5, paraphrase-multilingual-*, bge-m3's dense part): BERT's
encoder with RoBERTa's embeddings.

What differs from BERT: position ids start at `padding_idx + 1` and count only the real tokens
(HF computes them from input_ids != padding_idx; vecpipe pads on the right, so the attention mask
gives the same ids), there is one token type, and the tokenizer (byte-level BPE or SentencePiece)
comes whole from tokenizer.json. The layers are BERT's, names and all.
"""
from __future__ import annotations

import numpy as np

from vecpipe.core.models.families import bert
from vecpipe.core.models.graph import GraphBuilder, layer_norm, padding_mask_bias

MODEL_TYPES = ("roberta", "xlm-roberta", "camembert")
ARCHITECTURES = ("RobertaModel", "XLMRobertaModel", "CamembertModel")
KINDS = ("dense",)  # what it builds: an embedder (kinds.py)
GRAPH_FORMS = ("plain",)
INPUTS = ("input_ids", "attention_mask")


def position_offset(cfg: dict) -> int:
    """Rows of the position table before the first real position: padding_idx + 1."""
    return int(cfg.get("pad_token_id", 1)) + 1


def tensor_names(raw: dict) -> dict:
    for prefix in ("roberta.", "xlm_roberta.", "camembert."):
        raw = {k.removeprefix(prefix): v for k, v in raw.items()}
    return raw


def body(g: GraphBuilder, w: dict, cfg: dict, mask_f: str, n_layers: int, graph_form: str) -> str:
    x = embeddings(g, w, cfg, "embeddings.token_type_embeddings.weight")
    mask_bias = padding_mask_bias(g, mask_f)
    for i in range(n_layers):
        x = bert.encoder_layer(g, x, mask_bias, w, i, cfg)
    return x


def position_ids(g: GraphBuilder, cfg: dict) -> str:
    """(B, S) ids: padding_idx + 1, + 2, ... over the real tokens, padding_idx over the padding."""
    pad = int(cfg.get("pad_token_id", 1))
    counted = g.op("CumSum", ["attention_mask", g.const("axis_1_scalar", np.array(1, np.int64))])
    return g.op("Add", [g.op("Mul", [counted, "attention_mask"]), g.const("padding_idx", np.array(pad, np.int64))])


def embeddings(g: GraphBuilder, w: dict, cfg: dict, token_type_table: str | None) -> str:
    """Word + position (+ the one token type's row, when the checkpoint has the table), then LayerNorm."""
    words = g.op("Gather", [g.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"])
    positions = g.op("Gather", [g.const("position_embeddings", w["embeddings.position_embeddings.weight"]), position_ids(g, cfg)])
    summed = g.op("Add", [words, positions])
    if token_type_table is not None:
        summed = g.op("Add", [summed, g.const("token_type_0", w[token_type_table][0])])
    return layer_norm(g, summed, w, "embeddings.LayerNorm", float(cfg.get("layer_norm_eps", 1e-12)))
