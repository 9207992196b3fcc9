"""A disk cache of embeddings, so that a sweep or a second evaluation never re-embeds a text.

Vectors depend on the model, the text put in front (prompt or prefix), the token limit and
the text itself. The first three pick a directory under `$VECPIPE_HOME/embeddings/`:

    <model name>-<sha256 of the key, 16 hex>/
        key.json                  what the directory holds, for humans and for checking
        <shard>.npy               (n, dim) float32 vectors, memory-mapped when read
        <shard>.keys.npy          (n,) S32: the sha256 of each vector's text (without prompt)

Shards are immutable and only ever added: each call that embeds something new writes one,
vectors first and keys second, each atomically. A reader only looks at complete key files,
so a crash or a concurrent writer can leave at most an unused .npy behind, never a wrong
vector. Everything is read with `allow_pickle=False`.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import orjson

from vecpipe.core.atomic import atomic_file, write_bytes_atomic
from vecpipe.core.errors import StorageError
from vecpipe.core.paths import embedding_cache_dir

KEY_FILE = "key.json"
KEYS_SUFFIX = ".keys.npy"
DIGEST = np.dtype("S32")  # a raw sha256; fixed width, so sorting and searching compare every byte

Embedder = Callable[[list[str]], np.ndarray]


def text_digests(texts: Sequence[str]) -> np.ndarray:
    return np.array([hashlib.sha256(text.encode("utf-8")).digest() for text in texts], dtype=DIGEST)


def cache_key(model, prefix: str, max_tokens: int, normalize: bool) -> dict:
    """Everything besides the text that decides a vector: the model's manifest hash covers its
    weights, tokenizer, pooling, layers and variant; pooling and normalization can be overridden."""
    return {
        "model": model.name,
        "model_sha256": model.sha256,
        "pooling": model.pooling,
        "normalize": normalize,
        "prefix": prefix,
        "max_tokens": max_tokens,
    }


@dataclass
class CacheStats:
    hits: int = 0
    embedded: int = 0


class EmbeddingCache:
    """The vectors of one (model, prefix, max tokens, normalization) combination."""

    def __init__(self, key: dict, root: Path | None = None):
        self.key = key
        digest = hashlib.sha256(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key["model"]))
        self.dir = (root or embedding_cache_dir()) / f"{safe_name}-{digest}"
        self.stats = CacheStats()

    def embed(self, texts: Sequence[str], embed_missing: Embedder) -> np.ndarray:
        """Vectors for `texts` in order: cached ones read back, the rest embedded once and stored."""
        if not len(texts):
            return np.zeros((0, 0), dtype=np.float32)
        unique, first_of, position_of = np.unique(text_digests(texts), return_index=True, return_inverse=True)
        vectors, found = self._lookup(unique)
        missing = np.flatnonzero(~found)
        self.stats.hits += len(unique) - len(missing)
        if len(missing):
            new = np.asarray(embed_missing([texts[i] for i in first_of[missing]]), dtype=np.float32)
            self._store(unique[missing], new)
            self.stats.embedded += len(missing)
            if vectors is None:
                vectors = np.empty((len(unique), new.shape[1]), dtype=np.float32)
            vectors[missing] = new
        return vectors[position_of.ravel()]

    def _lookup(self, digests: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Cached vectors for the (unique) digests, and which of them were found."""
        found = np.zeros(len(digests), dtype=bool)
        vectors = None
        for keys, shard_vectors in self._shards():
            if vectors is None:
                vectors = np.empty((len(digests), shard_vectors.shape[1]), dtype=np.float32)
            order = np.argsort(keys)
            sorted_keys = keys[order]
            places = np.minimum(np.searchsorted(sorted_keys, digests), len(sorted_keys) - 1)
            hit = (sorted_keys[places] == digests) & ~found
            vectors[hit] = shard_vectors[order[places[hit]]]
            found |= hit
        return vectors, found

    def _shards(self):
        """(keys, memory-mapped vectors) of every complete shard."""
        if not self.dir.is_dir():
            return
        for keys_path in sorted(self.dir.glob("*" + KEYS_SUFFIX)):
            vectors_path = keys_path.with_name(keys_path.name[: -len(KEYS_SUFFIX)] + ".npy")
            try:
                keys = np.load(keys_path, allow_pickle=False)
                vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                continue  # a shard another process is deleting, or a damaged one: embed again
            if keys.dtype == DIGEST and vectors.ndim == 2 and len(vectors) == len(keys) > 0:
                yield keys, vectors

    def _store(self, digests: np.ndarray, vectors: np.ndarray) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(exc.strerror or str(exc), str(self.dir)) from None
        key_path = self.dir / KEY_FILE
        if not key_path.exists():
            write_bytes_atomic(key_path, orjson.dumps(self.key, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        # Unique per writer, and sortable by time, so concurrent evaluations never collide.
        shard = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(4)}"
        with atomic_file(self.dir / f"{shard}.npy") as fh:
            np.save(fh, vectors, allow_pickle=False)
        with atomic_file(self.dir / f"{shard}{KEYS_SUFFIX}") as fh:
            np.save(fh, digests, allow_pickle=False)
