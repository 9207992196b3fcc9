"""What every loaded model shares, whatever computes its vectors: manifest, tokenizer, prompts, provenance.

model.py's `Model` runs an ONNX graph; static.py's `StaticModel` averages rows of a table.
Batching (batching.py) drives both through `tokenizer`, `special_tokens` and `vectors_of`.
"""
from __future__ import annotations

import abc
import os
from pathlib import Path

import numpy as np

from vecpipe.core.errors import UsageError
from vecpipe.core.models.manifest import POOLINGS, manifest_sha256, read_manifest


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def weights_sha256(manifest: dict) -> str | None:
    """The sha256 of the weights a model was made from: the same wherever and by whichever vecpipe
    it was converted, unlike model_sha256 (the manifest's own hash, which records paths and versions).
    Two checkpoints that share a name (two training runs' `checkpoint-500`) differ here."""
    sources = manifest.get("source_sha256") or {}
    return sources.get("model.safetensors") or next((v for k, v in sources.items() if k.endswith(".onnx")), None)


class EmbeddingModel(abc.ABC):
    # Beyond this many characters per allowed token, no realistic text still has tokens left
    # to keep, so truncation may cut the string first and spare the tokenizer huge lines.
    chars_per_token_cap = 128

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
        self.weights_sha256: str | None = weights_sha256(self.manifest)
        self.threads = threads or default_threads()
        self._tokenizer = None
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

    @abc.abstractmethod
    def vectors_of(self, id_lists: list[list[int]], batch_tokens: int, max_batch: int) -> np.ndarray:
        """Pooled, not normalized, float32 vectors of token id sequences (special tokens included), in order."""

    def provenance(self, prompt: str | None = None, prefix: str | None = None, normalized: bool | None = None) -> dict:
        prov = {
            "model": self.name,
            "model_sha256": self.sha256,
            **({"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}),
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
