"""Index kinds: how one generation stores and searches its vectors. The kind of a new index is
decided here and only here (`new_backend`), and a saved one is loaded by the name its manifest
records (`load_backend`).

Each kind is one module with one class satisfying `Backend`:

    hnsw   an hnswlib graph of float32 vectors (hnsw.py)
    flat   a memory-mapped matrix of int8/uint8 codes or packed bits, scanned (flat.py)

Adding a kind (a sparse or multi-vector store, say) means one module implementing `Backend` and
one entry in KINDS; docs/DEVELOPING.md has the recipe.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    import numpy as np


class Backend(Protocol):
    """What a generation's writer and reader ask of the vectors' store."""

    streams: bool  # vectors may be handed over as they arrive (else all at save time)
    relabels: bool  # a save renumbers labels 0..n-1 (rows are labels), so the meta store must too

    @classmethod
    def create(cls, first, options, seed: int) -> tuple["Backend", dict]: ...  # empty store for records like `first`, and its manifest fields

    @classmethod
    def load(cls, generation: Path, manifest: dict, load_graph: bool = True) -> "Backend": ...

    @staticmethod
    def bytes_per_vector(generation: Path, manifest: dict) -> float | None: ...

    @staticmethod
    def manifest_problem(manifest: dict) -> str | None: ...  # a wrong field of this kind, checked when read

    def prepare(self, matrix: "np.ndarray", provenance: dict) -> "np.ndarray": ...
    def add(self, matrix: "np.ndarray", labels: "np.ndarray", threads: int) -> None: ...
    def delete(self, labels) -> None: ...
    def save(self, generation: Path) -> dict: ...  # manifest fields to record
    def query_width(self, dtype: str) -> int: ...
    def query_dtype_problem(self, dtype: str, calibration_sha256: str | None) -> str | None: ...
    def search(self, queries: "np.ndarray", dtype: str, request, meta) -> tuple["np.ndarray", "np.ndarray"]: ...


@dataclass(frozen=True)
class IndexKind:
    name: str
    manifest_keys: tuple[str, ...]  # keys a manifest of this kind must have (checked when it is read)
    backend: Callable[[], type]  # imported on first use: a search of one kind never imports another


def _hnsw() -> type:
    from vecpipe.core.index.hnsw import HnswGraph

    return HnswGraph


def _flat() -> type:
    from vecpipe.core.index.flat import FlatIndex

    return FlatIndex


KINDS: dict[str, IndexKind] = {
    "hnsw": IndexKind("hnsw", ("hnsw", "slots"), _hnsw),
    "flat": IndexKind("flat", ("flat",), _flat),
}


def kind_for(input_dtype: str, quantize: str | None) -> IndexKind:
    """The kind of a new index of records of `input_dtype`: float records make a graph unless
    asked to be quantized; quantized records (and --quantize) make a flat index."""
    from vecpipe.core.index.scoring import is_float

    return KINDS["flat" if quantize or not is_float(input_dtype) else "hnsw"]


def new_backend(first, options, seed: int) -> tuple[Backend, dict]:
    """The empty backend of a new index for records like `first` (a VectorBatch), and the manifest
    fields it records (`kind` among them)."""
    from vecpipe.core.index.scoring import dtype_of

    kind = kind_for(dtype_of(first.provenance), options.quantize)
    backend, fields = kind.backend().create(first, options, seed)
    return backend, {"kind": kind.name, **fields}


def load_backend(generation: Path, manifest: dict, load_graph: bool = True) -> Backend:
    """The backend of a saved generation; the manifest was checked (store.read_manifest), so its kind is known."""
    return KINDS[manifest["kind"]].backend().load(generation, manifest, load_graph)


def bytes_per_vector(generation: Path, manifest: dict) -> float | None:
    return KINDS[manifest["kind"]].backend().bytes_per_vector(generation, manifest)
