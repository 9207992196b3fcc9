"""How much an index loses against exact search, and what it buys in speed.

For an hnswlib index the search width `ef` is swept; for a flat int8/binary index built with
`--keep-float`, the rescoring multiplier (none, then each value). Every setting is scored by
recall@k against the exact top k (brute force over the index's own float vectors) and timed,
ann-benchmarks style: the same queries, best of `repeat` runs, searched as one batch the way
`vecpipe search` runs them. The settings no other setting beats on both recall and QPS form the
Pareto frontier.

Recall@k is |found ∩ exact| / k per query, averaged (k is lowered to the index size when the
index holds fewer rows); ties at the k-th exact score are rare with float scores and ignored.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vecpipe.core.errors import DataError, ModelError, UsageError
from vecpipe.core.eval.evaluation import Embedder, Vectors, truncated


@dataclass
class AnnPoint:
    parameter: str  # "ef" or "rescore"
    value: int | None  # None: the flat index's codes alone, no rescoring
    recall: float
    qps: float
    pareto: bool = False

    def as_dict(self) -> dict:
        return {"parameter": self.parameter, "value": self.value, "recall": self.recall, "qps": self.qps, "pareto": self.pareto}


@dataclass
class AnnReport:
    kind: str  # "hnsw" or "flat"
    k: int
    queries: int
    exact_qps: float
    points: list[AnnPoint]


# --- queries -----------------------------------------------------------------------------


def _holds_vectors(path: str) -> bool:
    """An .npy matrix, or JSONL whose first record has an `embedding`."""
    from vecpipe.formats.vectors import first_line, holds_vectors

    with open(path, "rb") as fh:
        return holds_vectors(first_line(fh)[0])


def load_queries(path: str, index, embedder_for, field: str = "text") -> Vectors:
    """Query vectors for `index` from a file of vector records, or of texts embedded with the
    index's model and query prompt (`embedder_for(index provenance)` gives the Embedder)."""
    if not Path(path).is_file():
        raise DataError("not found", path)
    if _holds_vectors(path):
        from vecpipe.formats.vectors import read_matrix

        batch = read_matrix(path)
        return Vectors([str(i) for i in batch.ids], batch.matrix, batch.provenance, path)
    return _embedded_queries(path, index.provenance, embedder_for, field)


def _embedded_queries(path: str, provenance: dict, embedder_for, field: str) -> Vectors:
    from vecpipe.formats.text import read_texts

    if provenance.get("pca_sha256"):
        raise UsageError("the index holds PCA-rotated vectors: embed and rotate the queries the same way and pass the vector records")
    if not provenance.get("model"):
        raise UsageError("the index does not record its model, so text queries cannot be embedded; pass vector records")
    embedder: Embedder = embedder_for(provenance)
    model = embedder.model
    if provenance.get("model_sha256") and model.sha256 != provenance["model_sha256"]:
        raise ModelError(f"model {model.name} is not the one the index was built with (its vecpipe.json sha256 differs)")
    with open(path, "rb") as stream:
        records = list(read_texts(stream, path, field))
    vectors = embedder.vectors([str(r.id) for r in records], [r.text for r in records], model.query_prompt(), path)
    return truncated(vectors, provenance.get("truncate_dim"))


# --- measuring -----------------------------------------------------------------------------


def _timed_search(index, queries: Vectors, k: int, repeat: int, **options) -> tuple[list[list], float]:
    """The hit ids of each query and the best wall time of `repeat` identical searches."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        result = index.search(queries.matrix, k, provenance=queries.provenance, **options)
        best = min(best, time.perf_counter() - started)
    return [[hit.id for hit in hits] for hits in result.hits], best


def recall_at_k(found: Sequence[Sequence], truth: Sequence[Sequence], k: int) -> float:
    per_query = [len(set(f[:k]) & set(t[:k])) / max(1, min(k, len(t))) for f, t in zip(found, truth)]
    return float(np.mean(per_query))


def pareto_flags(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (recall, qps) points: True where no other point is at least as good on both and better on one."""

    def dominated(p: tuple[float, float]) -> bool:
        return any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)

    return [not dominated(p) for p in points]


def _settings(index, values: Sequence[int]) -> list[tuple[str, int | None]]:
    if index.kind == "hnsw":
        return [("ef", value) for value in values]
    if not index.keeps_float:
        raise UsageError(
            "this flat index holds only quantized codes, so its search is already exhaustive and there is no float "
            "ground truth: build it with --keep-float to measure codes and rescoring against float search"
        )
    return [("rescore", None)] + [("rescore", value) for value in values]


def measure_ann(index, queries: Vectors, k: int, values: Sequence[int], repeat: int = 3) -> AnnReport:
    """Recall@k and QPS of each setting against exact search over the same index."""
    if k < 1 or repeat < 1:
        raise UsageError("-k and --repeat must be at least 1")
    if index.kind == "hnsw" and any(value < k for value in values):
        raise UsageError(f"every --ef must be at least -k {k} (hnswlib searches at least k wide)")
    settings = _settings(index, values)
    truth, exact_seconds = _timed_search(index, queries, k, repeat, exact=True)
    points = []
    for parameter, value in settings:
        found, seconds = _timed_search(index, queries, k, repeat, **{parameter: value})
        points.append(AnnPoint(parameter, value, recall_at_k(found, truth, k), len(queries.ids) / seconds))
    for point, on_frontier in zip(points, pareto_flags([(p.recall, p.qps) for p in points])):
        point.pareto = on_frontier
    return AnnReport(index.kind, k, len(queries.ids), len(queries.ids) / exact_seconds, points)
