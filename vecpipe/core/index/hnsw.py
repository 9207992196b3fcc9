"""The float index: an hnswlib graph whose labels are the meta store's labels.

Deletes and upserts mark labels deleted; new vectors reuse deleted slots
(`allow_replace_deleted`), so the graph does not grow with churn. Labels are never reused.
"""
from __future__ import annotations

import struct

from pathlib import Path

import numpy as np

from vecpipe.core.errors import IndexStoreError, StorageError, UsageError
from vecpipe.core.index.scoring import exact_float_search, is_float, normalize_rows, scores_from_distances

GRAPH_FILE = "graph.bin"
METRICS = ("cosine", "ip", "l2")
_MIN_CAPACITY = 1024
# A filter passing this few rows (or this small a share) is searched exactly: brute force over
# them is cheap, and a graph walk restricted to so few nodes loses recall.
EXACT_FILTER_ROWS = 4096
EXACT_FILTER_SHARE = 0.05


class HnswGraph:
    streams = True  # vectors can go into the graph as they arrive
    relabels = False  # labels stay as they are across writes

    def __init__(self, index, metric: str):
        self.index = index
        self.metric = metric
        self._all = None  # (labels, vectors) of every live row, kept for repeated --exact batches

    @classmethod
    def create(cls, metric: str, dim: int, M: int, ef_construction: int, seed: int) -> "HnswGraph":
        import hnswlib

        index = hnswlib.Index(space=metric, dim=dim)
        index.init_index(
            max_elements=_MIN_CAPACITY, M=M, ef_construction=ef_construction, random_seed=seed, allow_replace_deleted=True
        )
        return cls(index, metric)

    @classmethod
    def load(cls, generation: Path, manifest: dict) -> "HnswGraph":
        import hnswlib

        path = generation / GRAPH_FILE
        if not path.is_file():
            raise FileNotFoundError(path)
        _check_header(path, manifest)
        index = hnswlib.Index(space=manifest["metric"], dim=manifest["dim"])
        try:
            index.load_index(str(path), allow_replace_deleted=True)
        except RuntimeError as exc:
            raise IndexStoreError(f"graph file is unreadable ({exc})", str(path)) from None
        return cls(index, manifest["metric"])

    def prepare(self, matrix: np.ndarray, provenance: dict) -> np.ndarray:
        return np.ascontiguousarray(matrix, dtype=np.float32)

    def add(self, matrix: np.ndarray, labels: np.ndarray, threads: int) -> None:
        needed = self.index.element_count + len(labels)
        if needed > self.index.get_max_elements():
            self.index.resize_index(max(needed, 2 * self.index.get_max_elements()))
        self.index.add_items(matrix, labels, num_threads=threads, replace_deleted=True)

    def delete(self, labels) -> None:
        for label in labels:
            self.index.mark_deleted(int(label))

    def save(self, generation: Path) -> dict:
        path = generation / GRAPH_FILE
        self.index.save_index(str(path))
        if path.stat().st_size != self.index.index_file_size():  # hnswlib does not check its writes
            raise StorageError("the graph file was cut short (is the disk full?)", str(path))
        return {"slots": self.index.element_count}  # live rows plus deleted ones awaiting reuse

    def query_width(self, dtype: str) -> int:
        return self.index.dim

    def query_dtype_problem(self, dtype: str, calibration_sha256: str | None) -> str | None:
        return None if is_float(dtype) else f"dtype {dtype} cannot search a float index; search with float vectors"

    def search(self, queries: np.ndarray, dtype: str, request, meta) -> tuple[np.ndarray, np.ndarray]:
        if request.rescore:
            raise UsageError("--rescore applies to quantized indexes (index build --quantize int8|binary --keep-float)")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not (request.exact or self._filter_is_narrow(request.allowed)):
            self.index.set_ef(request.ef)
            allowed = None if request.allowed is None else set(request.allowed.tolist())
            try:
                return self.knn(queries, request.k, allowed)
            except RuntimeError:
                pass  # the walk found fewer than k rows that pass: the exact search below returns what exists
        labels, vectors = self._candidates(request.allowed, meta)
        if self.metric == "cosine":  # hnswlib keeps cosine vectors normalized: a dot product suffices
            return exact_float_search("ip", normalize_rows(queries), vectors, labels, request.k)
        return exact_float_search(self.metric, queries, vectors, labels, request.k)

    def _filter_is_narrow(self, allowed: np.ndarray | None) -> bool:
        if allowed is None:
            return False
        return len(allowed) <= max(EXACT_FILTER_ROWS, EXACT_FILTER_SHARE * self.index.get_current_count())

    def _candidates(self, allowed: np.ndarray | None, meta) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            return allowed, self.vectors(allowed)
        if self._all is None:
            labels = meta.all_labels()
            self._all = (labels, self.vectors(labels))
        return self._all

    def knn(self, queries: np.ndarray, k: int, allowed: set | None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, scores); raises RuntimeError when hnswlib cannot find k live neighbours."""
        labels, distances = self.index.knn_query(
            queries, k=k, filter=None if allowed is None else allowed.__contains__
        )
        return labels.astype(np.int64), scores_from_distances(self.metric, distances)

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        """The stored vectors (normalized for cosine, as hnswlib keeps them)."""
        if len(labels) == 0:
            return np.zeros((0, self.index.dim), dtype=np.float32)
        return np.asarray(self.index.get_items(labels), dtype=np.float32)


# hnswlib's file starts with six size_t fields: offsetLevel0, max_elements, cur_element_count,
# size_data_per_element, label_offset, offsetData; a float vector is label_offset - offsetData bytes.
_HEADER = struct.Struct("<6Q")


def _check_header(path: Path, manifest: dict) -> None:
    """Refuse a graph of another width or size than the manifest's before hnswlib reads it
    (hnswlib trusts the caller's dim and would read a wider graph's bytes as vectors)."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise IndexStoreError("graph file is cut short", str(path))
    _, _, elements, _, label_offset, data_offset = _HEADER.unpack(head)
    width = (label_offset - data_offset) // 4 if label_offset > data_offset else -1
    if width != manifest["dim"]:
        raise IndexStoreError(f"graph holds vectors of {width} dimensions but the manifest says {manifest['dim']}: the index is corrupt", str(path))
    if elements != manifest["slots"]:
        raise IndexStoreError(f"graph holds {elements} vectors but the manifest says {manifest['slots']}: the index is corrupt", str(path))
