"""The front door to indexes: every caller outside core/index opens, builds, changes and
describes an index through these functions, for one index directory and a sharded one alike.

    open_index(path)                      -> Index (search, lexical search, hits, provenance)
    build(path, batches, options, write)  -> WriteReport   (shard_count=N: sharded; engine="ray": on a cluster)
    add(path, batches, write)             -> WriteReport   (upsert by id; build_or_add makes it first)
    delete(path, ids)                     -> WriteReport   (report.missing: ids not found)
    info(path), provenance(path), text_hashes(path, keys), exists(path)

Whether a directory is sharded is decided here (is_sharded), and what kind of vector store a
new index gets is decided in kinds.py; nothing else tests either.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from vecpipe.core.errors import UsageError
from vecpipe.core.index import shards, vector_index
from vecpipe.core.index.lexical import LexicalSettings, text_of
from vecpipe.core.index.meta import id_key
from vecpipe.core.index.shards import ShardedIndex, is_sharded
from vecpipe.core.index.store import is_index_dir
from vecpipe.core.index.types import BuildOptions, Hit, SearchResult, WriteOptions, WriteReport
from vecpipe.core.index.vector_index import DEFAULT_EF, VectorIndex

__all__ = [
    "DEFAULT_EF", "BuildOptions", "Hit", "Index", "LexicalSettings", "SearchResult", "WriteOptions", "WriteReport",
    "add", "build", "build_or_add", "delete", "exists", "id_key", "info", "is_sharded", "open_index", "provenance", "text_hashes", "text_of",
]

ENGINES = ("local", "ray")


@runtime_checkable
class Index(Protocol):
    """An open index, one directory or sharded: what search, eval and the server read."""

    count: int
    provenance: dict  # how its vectors were made: a query must agree (check_query)
    kind: str  # its vector store's kind (kinds.py): hnsw, flat
    keeps_float: bool  # a flat index that also keeps float vectors (--rescore, float ground truth)
    has_lexical: bool
    lexical_settings: LexicalSettings | None

    def check_query(self, provenance: dict) -> None: ...
    def search(self, queries: np.ndarray, k: int = 10, **options) -> SearchResult: ...
    def search_labels(self, queries: np.ndarray, k: int = 10, **options) -> tuple[np.ndarray, np.ndarray, list[str]]: ...
    def lexical_search(self, texts: list[str], k: int = 10, *, where: Sequence[str] = (), min_score: float | None = None) -> SearchResult: ...
    def lexical_labels(self, texts: list[str], k: int = 10, *, where: Sequence[str] = ()) -> tuple[list[np.ndarray], list[np.ndarray]]: ...
    def hits_for(self, rows: list[list[tuple[int, float, dict | None]]]) -> list[list[Hit]]: ...
    def start_loading_lexical(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Index": ...
    def __exit__(self, *exc) -> None: ...


def exists(path) -> bool:
    return is_sharded(path) or is_index_dir(Path(path))


def open_index(path, load_graph: bool = True) -> Index:
    """The index at `path`, read-only. Without `load_graph` a float index leaves its HNSW graph
    unread and answers searches exactly (cheaper for a process that runs a query or two)."""
    return ShardedIndex.open(path, load_graph) if is_sharded(path) else VectorIndex.open(path, load_graph)


def build(path, batches: Iterable, options: BuildOptions | None = None, write: WriteOptions | None = None, *,
          shard_count: int = 0, engine: str = "local", workers: int = 2, address: str | None = None) -> WriteReport:
    """Build an index at `path` from VectorBatches: one directory, or `shard_count` sub-indexes
    routed by id. engine="ray" builds the shards as tasks on a Ray cluster (joined at `address`, or a
    local one of `workers` CPUs)."""
    if engine not in ENGINES:
        raise UsageError("--engine must be local or ray")
    if engine == "ray":
        if not shard_count:
            raise UsageError("--engine ray builds shards: give --shards N")
        from vecpipe.core.cluster import ray_output_aside
        from vecpipe.core.index.ray_build import build_sharded_on_ray

        with ray_output_aside():
            return build_sharded_on_ray(path, batches, shard_count, options or BuildOptions(), write or WriteOptions(),
                                        workers=workers, address=address)
    if shard_count:
        return shards.build_sharded(path, batches, shard_count, options, write)
    return vector_index.build_index(path, batches, options, write)


def add(path, batches: Iterable, write: WriteOptions | None = None) -> WriteReport:
    """Add VectorBatches; a record whose id is already in the index replaces it."""
    return (shards.add_sharded if is_sharded(path) else vector_index.add_to_index)(path, batches, write)


def delete(path, ids: Iterable) -> WriteReport:
    """Delete records by id; `report.missing` lists the ids the index did not hold."""
    return (shards.delete_sharded if is_sharded(path) else vector_index.delete_from_index)(path, ids)


def info(path) -> dict:
    """What `index info` shows, from manifests and file sizes alone."""
    return shards.sharded_info(path) if is_sharded(path) else vector_index.index_info(path)


def provenance(path) -> dict:
    """The provenance of the index's vectors, from a manifest alone (no graph loaded)."""
    return shards.peek_provenance(path)


def text_hashes(path, keys: Sequence[str]) -> dict[str, str]:
    """The text hashes `index sync` recorded for these id keys (none for records never synced)."""
    return (shards.sharded_text_hashes if is_sharded(path) else vector_index.stored_text_hashes)(path, keys)


def build_or_add(path, batches: Iterable, write: WriteOptions | None = None) -> WriteReport:
    """Add to the index at `path`, or build it with default options when there is none yet."""
    return add(path, batches, write) if exists(path) else build(path, batches, write=write)

