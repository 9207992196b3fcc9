"""A loaded embedding model: tokenizer + onnxruntime session + pooling.

`load_model(name)` resolves and verifies the model directory (see registry.py);
`Model.embed(texts)` is the simple library entry point; `vecpipe.core.models.batching`
streams large inputs through `Model.tokenize` and `Model.run`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from vecpipe.core.errors import ModelError, UsageError
from vecpipe.core.models import registry
from vecpipe.core.models.manifest import GRAPH_FILE, MANIFEST, POOLINGS, manifest_sha256, read_manifest


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Model:
    def __init__(self, model_dir: Path, threads: int | None = None, pooling: str | None = None):
        self.dir = Path(model_dir)
        self.manifest = read_manifest(self.dir)
        self.sha256 = manifest_sha256(self.dir)
        self.name: str = self.manifest["name"]
        self.dim: int = int(self.manifest["dim"])
        self.max_tokens: int = int(self.manifest["max_tokens"])
        self.prompts: dict = self.manifest.get("prompts") or {}
        self.pooling = pooling or self.manifest["pooling"]
        if self.pooling not in POOLINGS:
            raise UsageError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if self.pooling != self.manifest["pooling"] and self.manifest.get("dense"):
            raise UsageError(f"model {self.name} has Dense layers trained on {self.manifest['pooling']} pooling; --pooling cannot change it")
        self.normalize: bool = bool(self.manifest.get("normalize", False))
        self.threads = threads or default_threads()
        self._tokenizer = None
        self._session = None
        self._special: tuple[list[int], list[int]] | None = None

    # -- tokenization -------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from vecpipe.core.models.checkpoint import load_tokenizer

            tok = load_tokenizer(self.dir / "tokenizer.json")
            tok.no_padding()
            tok.no_truncation()  # vecpipe truncates, counts and chunks by itself
            self._tokenizer = tok
        return self._tokenizer

    @property
    def special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the post-processor puts before and after a text ([CLS] and [SEP] for BERT)."""
        if self._special is None:
            plain = self.tokenizer.encode("a", add_special_tokens=False).ids
            full = self.tokenizer.encode("a", add_special_tokens=True).ids
            start = next(i for i in range(len(full)) if full[i : i + len(plain)] == plain)
            self._special = (full[:start], full[start + len(plain) :])
        return self._special

    def prompt_prefix(self, prompt: str | None = None, prefix: str | None = None) -> str:
        if prompt is not None and prefix is not None:
            raise UsageError("use either --prompt or --prefix, not both")
        if prefix is not None:
            return prefix
        if prompt is None:
            default = self.manifest.get("default_prompt")
            return self.prompts.get(default, "") if default else ""
        if prompt not in self.prompts:
            known = ", ".join(self.prompts) or "none"
            raise UsageError(f"model {self.name} has no prompt named {prompt!r} (it has: {known})")
        return self.prompts[prompt]

    def query_prompt(self) -> str | None:
        return "query" if "query" in self.prompts else None

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text without special tokens (the Rust tokenizer runs in parallel)."""
        return [enc.ids for enc in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    # -- inference ----------------------------------------------------------------
    @property
    def session(self):
        if self._session is None:
            self._session = _open_session(self.dir / GRAPH_FILE, self.threads)
            self._outputs = {o.name for o in self._session.get_outputs()}
            self._inputs = [i.name for i in self._session.get_inputs()]
        return self._session

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled (not normalized) float32 vectors for one padded batch."""
        session = self.session
        given = {"input_ids": ids, "attention_mask": mask}
        feed = {name: given[name] if name in given else np.zeros_like(ids) for name in self._inputs}  # token_type_ids: one type
        if self.pooling == self.manifest["pooling"] and "sentence_embedding" in self._outputs:
            return session.run(["sentence_embedding"], feed)[0]
        tokens = session.run(["token_embeddings"], feed)[0]
        return pool_tokens(tokens, mask, self.pooling)

    def provenance(self, prompt: str | None = None, prefix: str | None = None, normalized: bool | None = None) -> dict:
        prov = {
            "model": self.name,
            "model_sha256": self.sha256,
            "dim": self.dim,
            "normalized": self.normalize if normalized is None else normalized,
        }
        if prompt is not None:
            prov["prompt"] = prompt
        elif prefix is not None:
            prov["prefix"] = prefix
        if self.pooling != self.manifest["pooling"]:
            prov["pooling"] = self.pooling
        if self.manifest.get("layers") != self.manifest.get("num_layers"):
            prov["layer"] = self.manifest["layers"]
        if self.manifest.get("variant", "fp32") != "fp32":
            prov["variant"] = self.manifest["variant"]
        return prov

    def embed(self, texts: list[str], prompt: str | None = None, normalize: bool | None = None) -> np.ndarray:
        """Vectors for `texts` in order: the library's one-call entry point."""
        from vecpipe.core.models.batching import EmbedOptions, embed_texts

        options = EmbedOptions(prefix=self.prompt_prefix(prompt), normalize=normalize)
        return embed_texts(self, texts, options)


def pool_tokens(tokens: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    maskf = mask.astype(np.float32)
    if pooling == "mean":
        summed = np.einsum("bs,bsh->bh", maskf, tokens)
        return summed / np.maximum(maskf.sum(1, keepdims=True), 1e-9)
    if pooling == "cls":
        return np.ascontiguousarray(tokens[:, 0])
    if pooling == "max":
        return np.where(maskf[..., None] > 0, tokens, -1e9).max(1)
    if pooling == "last":  # the last unmasked position, under right or left padding
        last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
        return tokens[np.arange(len(tokens)), last]
    raise UsageError(f"unknown pooling {pooling!r}")


def _open_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # shape-merge warnings from the optimizer are noise for users
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"onnxruntime cannot load the model ({str(exc).splitlines()[0]})", str(path)) from None


def load_model(
    name: str | None = None,
    *,
    layers: int | None = None,
    threads: int | None = None,
    pooling: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> Model:
    model_dir = registry.resolve(name, layers=layers, notify=notify or (lambda _: None))
    return Model(model_dir, threads=threads, pooling=pooling)


def find_manifest(name: str | None) -> dict | None:
    """The manifest of an already available model, without converting anything (for warnings)."""
    try:
        path = Path(name or "").expanduser()
        if (path / MANIFEST).exists():
            return read_manifest(path)
        cached = registry.cache_path(registry.ALIASES.get(name or registry.DEFAULT_MODEL, name or registry.DEFAULT_MODEL))
        return read_manifest(cached) if (cached / MANIFEST).exists() else None
    except ModelError:
        return None
