"""Architecture families, one module each, found by a checkpoint's `model_type`.

A family module writes only the transformer body (token embeddings from the graph inputs);
pooling, Dense layers and normalization come from the checkpoint's modules.json and are the
same for every family (see convert.py). A family module defines:

- MODEL_TYPES: the config.json `model_type` values it converts;
- ARCHITECTURES: class names that identify it in configs without a `model_type`;
- GRAPH_FORMS: the graph forms it can write ("plain" at least);
- INPUTS: the graph inputs it reads, in order (input_ids, attention_mask, ...);
- position_offset(config) -> int: rows of the position table before the first real position
  (RoBERTa's padding_idx + 1), so that the longest usable input is known;
- tensor_names(raw) -> dict: the checkpoint's tensors under the names `body` uses;
- body(g, weights, config, mask_f, n_layers, graph_form) -> the last hidden state.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from vecpipe.core.errors import ModelError

# model_type -> module; imported only when a checkpoint of that family is converted.
FAMILIES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta", "mpnet": "mpnet",
            "qwen3": "qwen3", "gemma3_text": "gemma3"}


def supported_model_types() -> list[str]:
    return sorted(FAMILIES)


def family_for(config: dict, path: Path) -> ModuleType:
    """The family module that converts a checkpoint with this config.json."""
    model_type = config.get("model_type")
    if model_type is None:
        model_type = next((t for t in FAMILIES if any(a in (config.get("architectures") or []) for a in _module(t).ARCHITECTURES)), None)
    if model_type not in FAMILIES:
        raise ModelError(
            f"model_type {config.get('model_type')!r} is not supported; vecpipe converts {', '.join(supported_model_types())}",
            str(path / "config.json"),
        )
    return _module(model_type)


def _module(model_type: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{FAMILIES[model_type]}")
