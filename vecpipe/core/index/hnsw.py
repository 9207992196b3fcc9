"""The float index: an hnswlib graph whose labels are the meta store's labels.

Deletes and upserts mark labels deleted; new vectors reuse deleted slots
(`allow_replace_deleted`), so the graph does not grow with churn. Labels are never reused.

Exact search (`--exact`, narrow filters) reads the vectors where they lie in the saved graph
file, memory-mapped (GraphFile): hnswlib would copy the whole file into memory first, which
costs more than scanning it once. An index opened without its graph (`load_graph=False`)
answers every search that way: a process that runs one query pays one scan, not a graph load.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
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


def _check_options(options) -> None:
    if options.metric not in METRICS:
        raise UsageError(f"unknown metric {options.metric!r}; choose one of {', '.join(METRICS)}")
    if options.keep_float:
        raise UsageError("--keep-float applies to quantized indexes (--quantize, or quantized records)")
    if options.M < 2 or options.ef_construction < 1:
        raise UsageError("--M must be at least 2 and --ef-construction at least 1")


class HnswGraph:
    streams = True  # vectors can go into the graph as they arrive
    relabels = False  # labels stay as they are across writes

    def __init__(self, index, metric: str, dim: int, stored: "GraphFile | None" = None):
        self.index = index  # None when opened without its graph: every search scans `stored`
        self.metric, self.dim = metric, dim
        self.stored = stored  # the saved graph's vectors, memory-mapped (a graph being built has none)

    @classmethod
    def create(cls, first, options, seed: int) -> tuple["HnswGraph", dict]:
        """An empty graph for float records like `first`, and its manifest fields."""
        import hnswlib

        _check_options(options)
        index = hnswlib.Index(space=options.metric, dim=first.dim)
        index.init_index(
            max_elements=_MIN_CAPACITY, M=options.M, ef_construction=options.ef_construction, random_seed=seed, allow_replace_deleted=True
        )
        fields = {"dtype": "float32", "metric": options.metric, "hnsw": {"M": options.M, "ef_construction": options.ef_construction, "seed": seed}}
        return cls(index, options.metric, first.dim), fields

    @staticmethod
    def manifest_problem(manifest: dict) -> str | None:
        """What is wrong with a manifest's fields of a graph index, if anything (checked when it is read)."""
        params = manifest["hnsw"]
        if manifest["metric"] not in METRICS:
            return f"metric {manifest['metric']!r} is not one of {', '.join(METRICS)}"
        if manifest["dtype"] != "float32":
            return f"dtype {manifest['dtype']!r} is not float32, which a graph index holds"
        for key, least in (("M", 2), ("ef_construction", 1), ("seed", 0)):
            value = params.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                return f"hnsw parameter {key!r} must be an integer of at least {least}, not {value!r}"
        return None

    @staticmethod
    def bytes_per_vector(generation: Path, manifest: dict) -> float | None:
        """The graph file per live row: vectors plus links."""
        count = manifest["count"]
        return round((generation / GRAPH_FILE).stat().st_size / count, 1) if count else None

    @classmethod
    def load(cls, generation: Path, manifest: dict, load_graph: bool = True) -> "HnswGraph":
        path = generation / GRAPH_FILE
        if not path.is_file():
            raise FileNotFoundError(path)
        stored = GraphFile.open(path, manifest)  # checks the layout before hnswlib trusts it
        if not load_graph:
            return cls(None, manifest["metric"], manifest["dim"], stored)
        import hnswlib

        index = hnswlib.Index(space=manifest["metric"], dim=manifest["dim"])
        try:
            index.load_index(str(path), allow_replace_deleted=True)
        except RuntimeError as exc:
            raise IndexStoreError(f"graph file is unreadable ({exc})", str(path)) from None
        return cls(index, manifest["metric"], manifest["dim"], stored)

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
        return self.dim

    def query_dtype_problem(self, dtype: str, calibration_sha256: str | None) -> str | None:
        return None if is_float(dtype) else f"dtype {dtype} cannot search a float index; search with float vectors"

    def search(self, queries: np.ndarray, dtype: str, request, meta) -> tuple[np.ndarray, np.ndarray]:
        if request.rescore:
            raise UsageError("--rescore applies to quantized indexes (index build --quantize int8|binary --keep-float)")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.index is not None and not (request.exact or self._filter_is_narrow(request.allowed)):
            self.index.set_ef(request.ef)
            allowed = None if request.allowed is None else set(request.allowed.tolist())
            try:
                return self.knn(queries, request.k, allowed)
            except RuntimeError:
                pass  # the walk found fewer than k rows that pass: the exact search below returns what exists
        return self.scan(queries, request.k, request.allowed)

    def _filter_is_narrow(self, allowed: np.ndarray | None) -> bool:
        if allowed is None:
            return False
        return len(allowed) <= max(EXACT_FILTER_ROWS, EXACT_FILTER_SHARE * self.index.get_current_count())

    def scan(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The exact top k over the stored vectors, live rows only (and only `allowed` labels, when given)."""
        stored = self.stored
        keep = stored.live() if allowed is None else stored.holding(allowed)  # allowed labels are live ones
        metric = self.metric
        if metric == "cosine":  # hnswlib keeps cosine vectors normalized: a dot product suffices
            metric, queries = "ip", normalize_rows(queries)
        slots = np.arange(stored.slots)
        if keep is not None and 4 * np.count_nonzero(keep) <= len(keep):  # few rows pass: copy them rather than score every row
            slots, found = exact_float_search(metric, queries, stored.vectors[keep], slots[keep], k)
        else:
            slots, found = exact_float_search(metric, queries, stored.vectors, slots, k, keep=keep)
        return stored.labels(slots.ravel()).reshape(slots.shape), found

    def knn(self, queries: np.ndarray, k: int, allowed: set | None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, scores); raises RuntimeError when hnswlib cannot find k live neighbours."""
        labels, distances = self.index.knn_query(
            queries, k=k, filter=None if allowed is None else allowed.__contains__
        )
        return labels.astype(np.int64), scores_from_distances(self.metric, distances)


# hnswlib 0.8's saved graph (hnswalg.h, saveIndex): a header of offsetLevel0, max_elements,
# cur_element_count, size_data_per_element, label_offset, offsetData (size_t), maxlevel (int),
# enterpoint_node (u32), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t); then one
# record per slot: level-0 links (a u16 count, a flags byte whose bit 0 marks the slot deleted, a
# spare byte, maxM0 u32 neighbours), the float32 vector, the u64 label; then the upper levels' links.
_HEADER = struct.Struct("=6QiI3QdQ")  # native order, as hnswlib writes it
_DELETED = 0x01


@dataclass
class GraphFile:
    """The vectors, labels and deleted marks of a saved graph, read in place from a memory map.
    Labels and marks are read only when asked for: each read touches every page of the file."""

    path: Path
    vectors: np.ndarray  # slots x dim float32, a strided view of the file
    records: np.ndarray  # slots x record bytes
    label_offset: int
    has_deleted: bool  # some slot is marked deleted (the manifest counts fewer rows than slots)
    _by_label: tuple | None = field(default=None, repr=False)  # (every label sorted, its slot), made on first use

    @property
    def slots(self) -> int:
        return len(self.records)

    def labels(self, slots=slice(None)) -> np.ndarray:
        """The int64 labels of these slots (every slot by default)."""
        return self.records[slots, self.label_offset :].view(np.uint64).ravel().astype(np.int64)

    def holding(self, labels: np.ndarray) -> np.ndarray:
        """Per slot, whether it holds one of `labels` (labels are never reused, so each is in one
        slot): a sorted copy of every label, made once, answers later filters in O(len(labels) log n)."""
        if self._by_label is None:
            every = self.labels()
            order = np.argsort(every, kind="stable")
            self._by_label = (every[order], order)
        sorted_labels, slots = self._by_label
        found = np.minimum(np.searchsorted(sorted_labels, labels), max(len(sorted_labels) - 1, 0))
        if len(labels) and not np.array_equal(sorted_labels[found], labels):
            raise IndexStoreError("the graph lacks a label the metadata holds: the index is corrupt", str(self.path))
        keep = np.zeros(self.slots, dtype=bool)
        keep[slots[found]] = True
        return keep

    def live(self) -> np.ndarray | None:
        """Per slot, False where it is marked deleted; None when no slot is."""
        return (self.records[:, 2] & _DELETED) == 0 if self.has_deleted else None

    @classmethod
    def open(cls, path: Path, manifest: dict) -> "GraphFile":
        """Refuse a graph of another width, size or layout than the manifest's: hnswlib trusts the
        caller's dim and would read a wider graph's bytes as vectors."""
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            size = os.fstat(f.fileno()).st_size
        if len(head) < _HEADER.size:
            raise IndexStoreError("graph file is cut short", str(path))
        level0, _, slots, record, label_offset, data_offset, _, _, _, max_m0, *_ = _HEADER.unpack(head)
        width = (label_offset - data_offset) // 4 if label_offset > data_offset else -1
        if width != manifest["dim"]:
            raise IndexStoreError(f"graph holds vectors of {width} dimensions but the manifest says {manifest['dim']}: the index is corrupt", str(path))
        if slots != manifest["slots"]:
            raise IndexStoreError(f"graph holds {slots} vectors but the manifest says {manifest['slots']}: the index is corrupt", str(path))
        if (level0, data_offset, record) != (0, 4 + 4 * max_m0, label_offset + 8) or size < _HEADER.size + slots * record:
            raise IndexStoreError("graph file is cut short or not laid out as hnswlib 0.8 saves it: the index is corrupt", str(path))
        if slots == 0:
            records = np.zeros((0, record), np.uint8)
        else:
            records = np.memmap(path, dtype=np.uint8, mode="r", offset=_HEADER.size, shape=(slots, record))
        return cls(path, records[:, data_offset:label_offset].view(np.float32), records, label_offset, slots > manifest["count"])
