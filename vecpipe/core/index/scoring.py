"""Scores shared by every index kind: higher is always better.

- cosine: cosine similarity; ip: inner product;
- l2: the negative Euclidean distance (so `--min-score -0.5` keeps hits within 0.5);
- hamming (binary): 1 - 2·hamming/bits, the cosine of the ±1 sign vectors;
- dot (int8/uint8): the integer dot product of the codes.
"""
from __future__ import annotations

import numpy as np

from vecpipe.core.vector_batch import FLOAT_DTYPES

_BOUND_SAMPLE = 2048  # values sampled per row to bound the k-th best: about k·n/2048 candidates on n rows


def dtype_of(provenance: dict) -> str:
    """A vector record's dtype: provenance omits it for float32."""
    return provenance.get("dtype", "float32")


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def scores_from_distances(metric: str, distances: np.ndarray) -> np.ndarray:
    """hnswlib distances as scores (hnswlib's l2 is the squared distance)."""
    if metric == "l2":
        return -np.sqrt(np.maximum(distances, 0.0))
    return 1.0 - distances


def float_scores(metric: str, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Brute-force scores of float queries against float vectors, on the same scale as hnswlib's."""
    if metric == "l2":
        # einsum: no squared copy of `vectors`, which may be a memory map of the whole index
        squared = np.einsum("ij,ij->i", queries, queries)[:, None] + np.einsum("ij,ij->i", vectors, vectors)[None, :] - 2.0 * (queries @ vectors.T)
        return -np.sqrt(np.maximum(squared, 0.0))
    if metric == "cosine":
        queries, vectors = normalize_rows(queries), normalize_rows(vectors)
    return queries @ vectors.T


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column positions and scores of the k best per row, best first.

    Ties go to the lower position, also at the k-th place (Hamming scores tie often), so a
    search gives the same hits whether or not a filter narrowed the columns first."""
    k = min(k, scores.shape[1])
    positions = np.zeros((len(scores), k), dtype=np.int64)
    for i, row in enumerate(scores):
        if k == 0:
            break
        positions[i] = best_positions(row, k)
    return positions, np.take_along_axis(scores, positions, axis=1)


def best_positions(row: np.ndarray, k: int, smallest: bool = False) -> np.ndarray:
    """Positions of the k largest (or smallest) values of `row`, best first, ties to the lower position.

    The k-th best of an evenly spaced sample is never better than the k-th best of the whole row,
    so only the few positions at or beyond it are sorted: two passes over the row, no full partition."""
    stride = max(1, len(row) // max(_BOUND_SAMPLE, k))
    sample = row[::stride].astype(_selection_type(row.dtype))  # at least k values
    if smallest:
        bound = np.partition(sample, k - 1)[k - 1]
        candidates = np.flatnonzero(row <= bound)
        order = np.argsort(row[candidates], kind="stable")
    else:
        bound = np.partition(sample, len(sample) - k)[len(sample) - k]
        candidates = np.flatnonzero(row >= bound)
        order = np.argsort(-row[candidates], kind="stable")
    return candidates[order[:k]]  # candidates ascend, so the stable sort keeps ties in position order


def _selection_type(dtype: np.dtype) -> np.dtype:
    """Small unsigned integers (Hamming distances) partition several times faster as int32."""
    return np.dtype(np.int32) if dtype.kind == "u" and dtype.itemsize < 4 else dtype


def exact_float_search(metric: str, queries: np.ndarray, vectors: np.ndarray, labels: np.ndarray, k: int, keep: np.ndarray | None = None):
    """Brute-force top-k over `vectors` (rows labelled `labels`; only rows where `keep` holds, when
    given), in query blocks to bound memory."""
    out_labels, out_scores = [], []
    dropped = None if keep is None else ~keep
    block = max(1, (1 << 24) // max(1, len(labels)))  # ~64 MiB of float32 scores per block
    for start in range(0, len(queries), block):
        scores = float_scores(metric, queries[start : start + block], vectors)
        if dropped is not None:
            scores[:, dropped] = -np.inf
        positions, scores = top_k(scores, k)
        out_labels.append(labels[positions])
        out_scores.append(scores)
    return np.concatenate(out_labels), np.concatenate(out_scores)
