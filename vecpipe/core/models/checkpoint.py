"""Read a sentence-transformers checkpoint: its transformer config and the module chain after it.

sentence-transformers composes a model from modules listed in `modules.json`: a Transformer,
then Pooling, optional Dense layers and Normalize, each with its own folder and config. This
module reads that chain once, so an architecture family (families/) only writes the body.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vecpipe.core.errors import ModelError
from vecpipe.core.models.manifest import POOLINGS

WEIGHTS = "model.safetensors"
CHECKPOINT_FILES = ("config.json", WEIGHTS, "tokenizer.json")
# Dense activations sentence-transformers checkpoints name, and what vecpipe writes for them.
DENSE_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.Tanh": "tanh",
}


@dataclass
class Dense:
    """One sentence-transformers Dense module: y = activation(x W^T + b)."""

    folder: str
    weight: np.ndarray  # (out, in), as torch stores it
    bias: np.ndarray | None
    activation: str

    def describe(self) -> dict:
        return {"in": int(self.weight.shape[1]), "out": int(self.weight.shape[0]), "bias": self.bias is not None,
                "activation": self.activation}


@dataclass
class Checkpoint:
    """What the converter needs to know about a sentence-transformers checkpoint."""

    path: Path
    config: dict
    pooling: str
    normalize: bool
    max_tokens: int
    prompts: dict = field(default_factory=dict)
    default_prompt: str | None = None
    dense: list[Dense] = field(default_factory=list)

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    @property
    def num_layers(self) -> int:
        return _config_int(self.config, "num_hidden_layers", self.path)

    @property
    def hidden_size(self) -> int:
        return _config_int(self.config, "hidden_size", self.path)

    @property
    def dim(self) -> int:
        """The dimension of the sentence vector: the last Dense layer's, else the hidden size."""
        return int(self.dense[-1].weight.shape[0]) if self.dense else self.hidden_size


def read_json(path: Path, required: bool = True) -> dict | list | None:
    if not path.exists():
        if required:
            raise ModelError("missing file", str(path))
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"not valid JSON ({exc})", str(path)) from None


def _config_int(config: dict, key: str, path: Path) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelError(f"config.json needs a positive integer {key!r}", str(path / "config.json"))
    return value


def is_checkpoint_dir(path: Path) -> bool:
    return (path / "config.json").exists() and (path / WEIGHTS).exists()


@dataclass
class ModuleChain:
    """What sentence-transformers' configs say happens around the transformer."""

    pooling: str = "mean"
    normalize: bool = False
    dense: list[Dense] = field(default_factory=list)
    declared_max_tokens: int | None = None
    prompts: dict = field(default_factory=dict)
    default_prompt: str | None = None


def read_module_chain(path: Path) -> ModuleChain:
    """Pooling, Dense layers and Normalize from modules.json, the length and the prompts, from a
    checkpoint or a ready ONNX export that carries sentence-transformers' configs."""
    chain = ModuleChain()
    for module in _modules(path):
        kind, folder = module.get("type", ""), module.get("path", "")
        if kind.endswith("Pooling"):
            chain.pooling = _pooling_mode(read_json(path / folder / "config.json"), path / folder)
        elif kind.endswith("Dense"):
            chain.dense.append(read_dense(path / folder, folder))
        elif kind.endswith("Normalize"):
            chain.normalize = True
    chain.declared_max_tokens = _declared_max_tokens(path)
    prompts_config = read_json(path / "config_sentence_transformers.json", required=False) or {}
    chain.prompts = dict(prompts_config.get("prompts") or {})
    chain.default_prompt = prompts_config.get("default_prompt_name")
    return chain


def read_checkpoint(path: Path) -> Checkpoint:
    """Read the sentence-transformers json configs that decide pooling, Dense layers, length and prompts."""
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise ModelError("not a JSON object", str(path / "config.json"))
    for name in CHECKPOINT_FILES[1:]:
        if not (path / name).exists():
            raise ModelError(f"missing {name}", str(path))
    load_tokenizer(path / "tokenizer.json")  # refused here, before anything is written, if it is broken
    chain = read_module_chain(path)
    max_positions = _usable_positions(config, path)
    ckpt = Checkpoint(
        path=path,
        config=config,
        pooling=chain.pooling,
        normalize=chain.normalize,
        max_tokens=min(chain.declared_max_tokens or max_positions, max_positions),
        prompts=chain.prompts,
        default_prompt=chain.default_prompt,
        dense=chain.dense,
    )
    check_dense_chain(ckpt.dense, ckpt.hidden_size, path)
    return ckpt


def _usable_positions(config: dict, path: Path) -> int:
    """The longest input the position table allows: its rows less the family's offset (RoBERTa's padding_idx + 1)."""
    from vecpipe.core.models.families import family_for

    rows = int(config.get("max_position_embeddings") or 512)
    return rows - family_for(config, path).position_offset(config)


def _declared_max_tokens(path: Path) -> int | None:
    """sentence-transformers' truncation length: max_seq_length in sentence_bert_config.json (up to 5.x),
    else the tokenizer's model_max_length (6.x keeps it there); HF writes ~1e30 there for "no limit"."""
    st_config = read_json(path / "sentence_bert_config.json", required=False) or {}
    if isinstance(st_config.get("max_seq_length"), int):
        return st_config["max_seq_length"]
    tokenizer_config = read_json(path / "tokenizer_config.json", required=False) or {}
    length = tokenizer_config.get("model_max_length")
    return length if isinstance(length, int) and 0 < length < 10**7 else None


def _modules(path: Path) -> list[dict]:
    modules = read_json(path / "modules.json", required=False) or []
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelError("modules.json should be a list of objects", str(path / "modules.json"))
    return sorted(modules, key=lambda m: int(m.get("idx", 0)))


# sentence-transformers 6.x names one mode in `pooling_mode`; earlier versions set one flag per mode.
_POOLING_NAMES = {"mean": "mean", "cls": "cls", "max": "max", "lasttoken": "last"}


def _pooling_mode(pool_config: dict, folder: Path) -> str:
    if isinstance(pool_config.get("pooling_mode"), str):
        mode = _POOLING_NAMES.get(pool_config["pooling_mode"])
        if mode is None:
            raise ModelError(f"unsupported pooling mode {pool_config['pooling_mode']!r} (vecpipe pools {', '.join(_POOLING_NAMES)})",
                             str(folder / "config.json"))
        return mode
    modes = {
        "mean": pool_config.get("pooling_mode_mean_tokens"),
        "cls": pool_config.get("pooling_mode_cls_token"),
        "max": pool_config.get("pooling_mode_max_tokens"),
        "last": pool_config.get("pooling_mode_lasttoken"),
    }
    chosen = [name for name, on in modes.items() if on]
    if len(chosen) != 1 or chosen[0] not in POOLINGS:
        raise ModelError(f"unsupported pooling configuration {pool_config}", str(folder / "config.json"))
    return chosen[0]


def read_dense(folder: Path, name: str) -> Dense:
    config = read_json(folder / "config.json")
    activation = DENSE_ACTIVATIONS.get(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
    if activation is None:
        known = ", ".join(DENSE_ACTIVATIONS)
        raise ModelError(f"Dense activation {config.get('activation_function')!r} is not supported (known: {known})", str(folder / "config.json"))
    if not (folder / WEIGHTS).exists():
        # Older checkpoints keep Dense weights in pytorch_model.bin, a pickle vecpipe never loads.
        raise ModelError(f"missing {WEIGHTS} (vecpipe reads safetensors only, never pickled .bin files)", str(folder))
    tensors = load_safetensors(folder / WEIGHTS)
    weight = tensors.get("linear.weight")
    if weight is None or weight.ndim != 2:
        raise ModelError("Dense weights lack a 2-D 'linear.weight'", str(folder / WEIGHTS))
    bias = tensors.get("linear.bias")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ModelError(f"Dense bias has shape {bias.shape}, expected ({weight.shape[0]},)", str(folder / WEIGHTS))
    expected = (config.get("out_features"), config.get("in_features"))
    if None not in expected and tuple(weight.shape) != expected:
        raise ModelError(f"Dense weight has shape {tuple(weight.shape)}, config says {expected}", str(folder))
    return Dense(name, weight, bias, activation)


def check_dense_chain(dense: list[Dense], width: int, path: Path) -> None:
    for layer in dense:
        if layer.weight.shape[1] != width:
            raise ModelError(f"Dense layer takes {layer.weight.shape[1]} inputs but receives {width}", str(path / layer.folder))
        width = int(layer.weight.shape[0])


def load_tokenizer(path: Path):
    """The HF `tokenizers` Tokenizer in `path`; a broken file is one ModelError naming it, not a traceback."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception for unreadable or garbled JSON
        raise ModelError(f"not a usable tokenizer ({(str(exc).splitlines() or [type(exc).__name__])[0]})", str(path)) from None


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as float32 (integer tensors kept as they are)."""
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(path))
    except Exception as exc:  # safetensors raises its own untyped errors for cut or garbled files
        first = (str(exc).splitlines() or ["unreadable"])[0]
        raise ModelError(f"{path.name} is unreadable ({first})", str(path.parent)) from None
    return {k: v if v.dtype.kind in "iu" else v.astype(np.float32) for k, v in raw.items()}
