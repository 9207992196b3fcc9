"""Static embeddings (model2vec, sentence-transformers' StaticEmbedding): the mean of table rows.

A static model is a table with one row per token id; a text's vector is the mean of the rows
of its tokens (tokenized without special tokens), normalized as configured. No network runs,
so no onnxruntime session either: numpy gathers the rows and averages them.

The two libraries that write these checkpoints differ in two details, and vecpipe embeds each
checkpoint as the library that wrote it does (the tensor's name tells which):
- model2vec (`embeddings`, with `mapping` and `weights` in vocabulary-quantized models) drops
  the unknown token and truncates at config.json's `max_length` tokens (512 when absent, none
  when null), after cutting the string at max_length × the vocabulary's median token length;
- sentence-transformers (`embedding.weight`) keeps every token and never truncates.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecpipe import __version__
from vecpipe.core.errors import ModelError
from vecpipe.core.hashing import sha256_file
from vecpipe.core.models.base import EmbeddingModel
from vecpipe.core.models.checkpoint import load_safetensors, load_tokenizer, read_json, read_module_chain
from vecpipe.core.models.manifest import MANIFEST, MANIFEST_VERSION, TOKENIZER_FILE, write_manifest

TABLE_FILE = "embeddings.safetensors"
STATIC_FILES = (TABLE_FILE, TOKENIZER_FILE)
MODEL2VEC_MAX_LENGTH = 512  # model2vec's default when config.json sets none
# "No limit" still needs a number for --max-tokens and chunking: a million tokens is more
# than any line vecpipe reads in one window.
NO_LIMIT = 1 << 20
# Rows gathered at once: 64k tokens of a 256-wide table are 64 MB, whatever the texts' lengths.
GATHER_TOKENS = 1 << 16


@dataclass(frozen=True)
class StaticLayout:
    weights: Path
    tokenizer: Path
    config: dict  # model2vec's config.json, or {} for sentence-transformers' layout


def static_layout(path: Path) -> StaticLayout | None:
    """Where a static checkpoint keeps its table and tokenizer, or None when `path` is not one."""
    modules = read_json(path / "modules.json", required=False) if (path / "modules.json").is_file() else None
    first = modules[0] if isinstance(modules, list) and modules and isinstance(modules[0], dict) else {}
    config = read_json(path / "config.json", required=False) if (path / "config.json").is_file() else None
    config = config if isinstance(config, dict) else {}
    if str(first.get("type", "")).endswith("StaticEmbedding"):
        folder = path / str(first.get("path") or ".")
        return StaticLayout(folder / "model.safetensors", folder / TOKENIZER_FILE, config)
    if config.get("model_type") == "model2vec" or "StaticModel" in (config.get("architectures") or []):
        return StaticLayout(path / "model.safetensors", path / TOKENIZER_FILE, config)
    return None


def is_static_checkpoint(path: Path) -> bool:
    return path.is_dir() and static_layout(path) is not None


def convert_static(ckpt_path: Path, out_dir: Path, name: str, layers: int | None = None, source: dict | None = None) -> dict:
    """Write the table, the tokenizer and the manifest of a static checkpoint into `out_dir`."""
    layout = static_layout(ckpt_path)
    if layers is not None:
        raise ModelError("a static model has no layers to cut (--layer)", str(ckpt_path))
    for needed in (layout.weights, layout.tokenizer):
        if not needed.is_file():
            raise ModelError(f"missing {needed.relative_to(ckpt_path)}", str(ckpt_path))
    tokenizer = load_tokenizer(layout.tokenizer)
    library, table = _read_table(layout.weights)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    if len(table) < vocab:
        raise ModelError(f"the table has {len(table)} rows but the tokenizer has {vocab} tokens", str(layout.weights))
    from safetensors.numpy import save_file

    save_file({"embeddings": np.ascontiguousarray(table)}, str(out_dir / TABLE_FILE))
    shutil.copyfile(layout.tokenizer, out_dir / TOKENIZER_FILE)
    chain = read_module_chain(ckpt_path)
    model2vec = library == "model2vec"
    max_tokens = _model2vec_max_length(layout) if model2vec else NO_LIMIT
    manifest = {
        "format_version": MANIFEST_VERSION,
        "name": name,
        "source": source or {"kind": "static", "path": str(ckpt_path)},
        "source_sha256": {"model.safetensors": sha256_file(layout.weights), "tokenizer.json": sha256_file(layout.tokenizer)},
        "architecture": "static",
        "static": {
            "library": library,
            "drop_token_id": _unknown_token_id(tokenizer) if model2vec else None,
            "median_token_chars": _median_token_chars(tokenizer) if model2vec and max_tokens != NO_LIMIT else None,
        },
        "dim": int(table.shape[1]),
        "pooling": "mean",
        "normalize": bool(layout.config.get("normalize", False)) if model2vec else chain.normalize,
        "max_tokens": max_tokens,
        "max_position_embeddings": max_tokens,
        "prompts": chain.prompts,
        "default_prompt": chain.default_prompt,
        "matryoshka_dims": None,
        "variant": "fp32",
        "converter": f"vecpipe {__version__}",
        "files": {f: sha256_file(out_dir / f) for f in STATIC_FILES},
    }
    write_manifest(out_dir, manifest)
    return manifest


def _read_table(weights: Path) -> tuple[str, np.ndarray]:
    """Which library wrote the table, and the table with one float32 row per token id."""
    tensors = load_safetensors(weights)
    if "embedding.weight" in tensors:
        library, table = "sentence-transformers", tensors["embedding.weight"]
    elif "embeddings" in tensors:
        library, table = "model2vec", tensors["embeddings"]
    else:
        raise ModelError("has neither a model2vec 'embeddings' nor a sentence-transformers 'embedding.weight' tensor", str(weights))
    if table.ndim != 2 or 0 in table.shape:
        raise ModelError(f"the embedding table has shape {table.shape}, expected (tokens, dim)", str(weights))
    table = table.astype(np.float32, copy=False)
    mapping, token_weights = tensors.get("mapping"), tensors.get("weights")
    if mapping is not None:  # vocabulary quantization: each token id points at a shared row
        if mapping.ndim != 1 or mapping.dtype.kind not in "iu" or (len(mapping) and not 0 <= mapping.min() <= mapping.max() < len(table)):
            raise ModelError(f"'mapping' must be 1-D integer row numbers below {len(table)}", str(weights))
        table = table[mapping.astype(np.int64)]
    if token_weights is not None:  # per-token weights, folded into the rows as model2vec multiplies them
        if token_weights.shape != (len(table),):
            raise ModelError(f"'weights' has shape {token_weights.shape}, expected ({len(table)},)", str(weights))
        table = table * token_weights.astype(np.float32)[:, None]
    return library, table


def _model2vec_max_length(layout: StaticLayout) -> int:
    length = layout.config.get("max_length", MODEL2VEC_MAX_LENGTH)
    if length is None:
        return NO_LIMIT
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ModelError(f"max_length must be a positive integer or null, not {json.dumps(length)}", str(layout.weights.parent / "config.json"))
    return length


def _unknown_token_id(tokenizer) -> int | None:
    """The id of the tokenizer's unknown token, as model2vec finds it (WordPiece, BPE, WordLevel or Unigram)."""
    model = json.loads(tokenizer.to_str())["model"]
    if "unk_id" in model:
        return model["unk_id"]
    unk = model.get("unk_token")
    return tokenizer.token_to_id(unk) if unk is not None else None


def _median_token_chars(tokenizer) -> int:
    """model2vec cuts a text at max_length times this many characters before tokenizing it."""
    return int(np.median([len(token) for token in tokenizer.get_vocab(with_added_tokens=True)]))


def _static_details(manifest: dict, path: Path) -> dict:
    """The manifest's `static` settings, checked: each a count or null."""
    details = manifest.get("static") or {}
    if not isinstance(details, dict):
        raise ModelError(f"manifest key 'static' should be an object, not {type(details).__name__}", str(path))
    for key, least in (("drop_token_id", 0), ("median_token_chars", 1)):
        value = details.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise ModelError(f"manifest's static {key} should be null or an integer of at least {least}, not {value!r}", str(path))
    return details


class StaticModel(EmbeddingModel):
    """Vectors as the mean of table rows: a numpy gather and a segmented sum."""

    def __init__(self, model_dir: Path, threads: int | None = None, pooling: str | None = None):
        super().__init__(model_dir, threads=threads, pooling=pooling)
        if self.pooling != "mean":
            raise ModelError("a static model averages its token rows; --pooling cannot change that", str(model_dir))
        details = _static_details(self.manifest, self.dir / MANIFEST)
        self.drop_token_id: int | None = details.get("drop_token_id")
        if details.get("median_token_chars"):
            self.chars_per_token_cap = details["median_token_chars"]
        self._table: np.ndarray | None = None

    @property
    def special_tokens(self) -> tuple[list[int], list[int]]:
        return [], []  # static tables are looked up without special tokens

    @property
    def table(self) -> np.ndarray:
        """The rows, and one zero row after them that dropped tokens point at."""
        if self._table is None:
            rows = load_safetensors(self.dir / TABLE_FILE)["embeddings"]
            self._table = np.vstack([rows, np.zeros((1, rows.shape[1]), np.float32)])
        return self._table

    def vectors_of(self, id_lists: list[list[int]], batch_tokens: int = 0, max_batch: int = 0) -> np.ndarray:
        """The mean row of each id list (zeros for a text with no tokens left), in order.

        Texts of one length are gathered as one matrix, which numpy sums 7x faster than a
        segmented sum over all texts at once (np.add.reduceat; measured on 2,048 short texts).
        """
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        out = np.zeros((len(id_lists), self.dim), dtype=np.float32)
        for group in _same_length_groups(lengths):
            ids = np.array([id_lists[i] for i in group], dtype=np.int64)
            counts = np.full(len(group), ids.shape[1], dtype=np.int64)
            if self.drop_token_id is not None:
                dropped = ids == self.drop_token_id
                ids[dropped] = len(self.table) - 1
                counts -= dropped.sum(1)
            out[group] = self.table[ids].sum(1) / np.maximum(counts, 1)[:, None]
        return out


def _same_length_groups(lengths: np.ndarray):
    """Indices of non-empty texts grouped by token count, each group under GATHER_TOKENS tokens."""
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    for group in np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1):
        if len(group):
            rows = max(1, GATHER_TOKENS // int(lengths[group[0]]))
            yield from (group[i : i + rows] for i in range(0, len(group), rows))
