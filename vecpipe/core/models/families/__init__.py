"""Architecture families, one module each, found by a checkpoint's `model_type`.

A family module writes only the transformer body (token embeddings from the graph inputs);
pooling, Dense layers and normalization come from the checkpoint's modules.json and are the
same for every family (see convert.py). A family module defines:

- MODEL_TYPES: the config.json `model_type` values it converts;
- ARCHITECTURES: class names that identify it in configs without a `model_type`;
- KINDS: the model kinds (kinds.py) it can build, "dense" for an embedder;
- GRAPH_FORMS: the graph forms it can write ("plain" at least);
- INPUTS: the graph inputs it reads, in order (input_ids, attention_mask, ...);
- position_offset(config) -> int: rows of the position table before the first real position
  (RoBERTa's padding_idx + 1), so that the longest usable input is known;
- tensor_names(raw) -> dict: the checkpoint's tensors under the names `body` uses;
- body(g, weights, config, mask_f, n_layers, graph_form) -> the last hidden state.

The families are vecpipe's own (BUILT_IN) and those other packages declare in the entry-point
group `vecpipe.families` (`toyfam = "toy_family.module"` in their pyproject's
[project.entry-points."vecpipe.families"]), as llm and pytest find their plugins. A family is
imported only when a checkpoint is converted or the supported types are listed.
"""
from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from vecpipe.core.errors import ModelError

BUILT_IN = ("bert", "roberta", "mpnet", "qwen3", "gemma3")
ENTRY_POINT_GROUP = "vecpipe.families"
_REQUIRED = ("MODEL_TYPES", "ARCHITECTURES", "KINDS", "GRAPH_FORMS", "INPUTS", "position_offset", "tensor_names", "body")


@functools.cache
def families() -> tuple[ModuleType, ...]:
    """Every family module, built-in first: a plugin cannot take over a built-in model_type."""
    modules = [importlib.import_module(f"{__name__}.{name}") for name in BUILT_IN]
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            module = entry.load()
        except Exception as exc:  # a broken plugin is named, not a traceback
            raise ModelError(f"model family plugin {entry.name!r} ({entry.value}) cannot be imported: {exc}") from None
        missing = [name for name in _REQUIRED if not hasattr(module, name)]
        if missing:
            raise ModelError(f"model family plugin {entry.name!r} ({entry.value}) lacks {', '.join(missing)}")
        modules.append(module)
    return tuple(modules)


@functools.cache
def _by_model_type() -> dict[str, ModuleType]:
    table: dict[str, ModuleType] = {}
    for module in families():
        for model_type in module.MODEL_TYPES:
            table.setdefault(model_type, module)
    return table


def supported_model_types() -> list[str]:
    return sorted(_by_model_type())


def family_for(config: dict, path: Path) -> ModuleType:
    """The family module that converts a checkpoint with this config.json."""
    table = _by_model_type()
    model_type = config.get("model_type")
    if model_type is None:
        classes = config.get("architectures") or []
        model_type = next((t for t, module in table.items() if any(a in classes for a in module.ARCHITECTURES)), None)
    if model_type not in table:
        raise ModelError(
            f"model_type {config.get('model_type')!r} is not supported; vecpipe converts {', '.join(supported_model_types())}",
            str(path / "config.json"),
        )
    return table[model_type]
