"""The quantized index: a flat, memory-mapped matrix of int8/uint8 codes or packed bits.

hnswlib is float-only, so quantized vectors are scanned exhaustively, which is what makes them
pay: binary codes are scored by Hamming distance (`np.bitwise_count` over 64-bit words, in
cache-sized blocks); int8/uint8 codes are scored against a float query as their dequantized
bucket centres, or by integer dot products against an already-quantized query. Files in a generation:

    vectors.npy       (n, dim) int8/uint8 codes, or (n, ceil(dim/8)) packed bits, row = label
    float.npy         (n, dim) float32, L2-normalized, with --keep-float: for `--rescore` and
                      `--exact`, which score cosine as a plain dot product
    calibration.npz   int8/uint8 ranges, when known: what lets float queries be scored

Float records are quantized with vecpipe.core.vectors.quantize, the code `vecpipe quantize` runs, so an
index built with `--quantize` holds exactly what `vecpipe quantize | index build` would.
Rows are labels: writes compact deleted rows away and the meta store is renumbered to match.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from vecpipe.core.errors import IndexStoreError, UsageError
from vecpipe.core.vectors.quantize import BUCKETS, SCALAR_PRECISIONS, Calibration, bucket_grid, quantize
from vecpipe.core.index.scoring import (
    dtype_of,
    exact_float_search,
    float_scores,
    is_float,
    normalize_rows,
    top_k,
)
from vecpipe.core.vector_batch import PACKED_DTYPES, stored_width

VECTORS_FILE = "vectors.npy"
FLOAT_FILE = "float.npy"
CALIBRATION_FILE = "calibration.npz"
QUANTIZE_TO = ("int8", "uint8", "binary", "ubinary")
RESCORE_METRIC = "cosine"
_BLOCK_BYTES = 1 << 20  # per scoring block: about an L2 cache
_QUERY_CHUNK = 16  # queries scored together against each block


def _load_matrix(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as exc:  # cut short or overwritten; a missing file goes on to the reader's retry
        raise IndexStoreError(f"matrix file is unreadable ({exc})", str(path)) from None


def _write_rows(path: Path, parts: Iterable[np.ndarray], rows: int, dtype, width: int) -> None:
    """An .npy file of `rows` rows written part by part, never holding the whole matrix."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, width))
    start = 0
    for part in parts:
        out[start : start + len(part)] = part
        start += len(part)
    out.flush()
    del out


def _ranges_from(floats: np.ndarray) -> np.ndarray:
    if len(floats) < 2:
        raise UsageError(
            f"cannot learn int8/uint8 ranges from {len(floats)} vector(s): pass --calibration FILE, "
            "saved by `vecpipe quantize --save-calibration` from a sample of documents"
        )
    return np.vstack([floats.min(axis=0), floats.max(axis=0)])


class FlatIndex:
    streams = False  # quantizing floats may need every row first (to learn int8 ranges)
    relabels = True  # rows are labels, so deletes renumber

    def __init__(self, manifest: dict, codes, floats, calibration: Calibration | None):
        self.dtype: str = manifest["dtype"]
        self.dim: int = manifest["dim"]
        self.provenance: dict = manifest["provenance"]
        self.from_float: bool = manifest["flat"]["from_float"]
        self.keep_float: bool = manifest["flat"]["keep_float"]
        self.codes, self.floats, self.calibration = codes, floats, calibration
        self._deleted: set[int] = set()
        self._new: list[tuple[np.ndarray, np.ndarray]] = []
        self._all_rows: dict = {}  # the scorers over every row (by dequantized), built on first search

    # --- creating and loading -------------------------------------------------------------

    @classmethod
    def create(cls, first, options, seed: int = 0) -> tuple["FlatIndex", dict]:
        """An empty flat index for records like `first`, and its manifest fields (a scan has no seed)."""
        input_dtype = dtype_of(first.provenance)
        from_float = is_float(input_dtype)
        dtype = _target_dtype(input_dtype, options)
        if options.metric != "cosine":
            raise UsageError(f"a quantized index scores by {_metric(dtype)}; --metric does not apply")
        if options.keep_float and not from_float:
            raise UsageError("--keep-float needs float records; these are already quantized")
        calibration = _build_calibration(first, dtype, from_float, options.calibration)
        fields = {
            "dtype": dtype,
            "metric": _metric(dtype),
            "rescore_metric": RESCORE_METRIC,
            "flat": {"from_float": from_float, "keep_float": options.keep_float},
        }
        if calibration is not None:
            fields["calibration_sha256"] = calibration.sha256
        return cls({**fields, "dim": first.dim, "provenance": first.provenance}, None, None, calibration), fields

    @classmethod
    def load(cls, generation: Path, manifest: dict, load_graph: bool = True) -> "FlatIndex":  # no graph: load_graph does not apply
        codes = _load_matrix(generation / VECTORS_FILE)
        floats = _load_matrix(generation / FLOAT_FILE) if manifest["flat"].get("keep_float") else None
        for path, matrix, width in ((VECTORS_FILE, codes, stored_width(manifest["dtype"], manifest["dim"])), (FLOAT_FILE, floats, manifest["dim"])):
            if matrix is not None and (matrix.ndim != 2 or matrix.shape != (manifest["count"], width)):
                raise IndexStoreError(f"{path} has shape {matrix.shape}, the manifest says ({manifest['count']}, {width}): the index is corrupt",
                                      str(generation))
        calibration_path = generation / CALIBRATION_FILE
        calibration = Calibration.load(str(calibration_path)) if calibration_path.is_file() else None
        return cls(manifest, codes, floats, calibration)

    @staticmethod
    def manifest_problem(manifest: dict) -> str | None:
        """What is wrong with a manifest's fields of a flat index, if anything (checked when it is read)."""
        dtype = manifest["dtype"]
        if dtype not in QUANTIZE_TO:
            return f"dtype {dtype!r} is not one of {', '.join(QUANTIZE_TO)}"
        if manifest["metric"] != _metric(dtype):
            return f"metric {manifest['metric']!r} is not {_metric(dtype)!r}, how a {dtype} index scores"
        for key in ("from_float", "keep_float"):
            if not isinstance(manifest["flat"].get(key), bool):
                return f"flat setting {key!r} must be true or false, not {manifest['flat'].get(key)!r}"
        return None

    @staticmethod
    def bytes_per_vector(generation: Path, manifest: dict) -> float:
        return stored_width(manifest["dtype"], manifest["dim"])

    # --- writing ----------------------------------------------------------------------------

    def prepare(self, matrix: np.ndarray, provenance: dict) -> np.ndarray:
        return matrix.astype(np.float32) if self.from_float else matrix

    def delete(self, labels) -> None:
        self._deleted.update(int(label) for label in labels)

    def add(self, matrix: np.ndarray, labels: np.ndarray, threads: int) -> None:
        self._new.append((labels, matrix))

    def save(self, generation: Path) -> dict:
        old_rows = 0 if self.codes is None else len(self.codes)
        keep = np.ones(old_rows, dtype=bool)
        keep[[label for label in self._deleted if label < old_rows]] = False
        new = self._new_rows()
        if self.from_float and self.calibration is None and self.dtype in SCALAR_PRECISIONS:
            self.calibration = Calibration.learned(_ranges_from(new), len(new), self.provenance)
        new_codes = self._quantize(new) if self.from_float else new
        rows = int(keep.sum()) + len(new)
        width = stored_width(self.dtype, self.dim)
        _write_rows(generation / VECTORS_FILE, self._kept(self.codes, keep) + [new_codes], rows, new_codes.dtype, width)
        if self.keep_float:
            parts = self._kept(self.floats, keep) + [normalize_rows(new)]
            _write_rows(generation / FLOAT_FILE, parts, rows, np.float32, self.dim)
        fields = {"flat": {"from_float": self.from_float, "keep_float": self.keep_float}}
        if self.calibration is not None:
            (generation / CALIBRATION_FILE).write_bytes(self.calibration.file_bytes)
            fields["calibration_sha256"] = self.calibration.sha256
        return fields

    def _new_rows(self) -> np.ndarray:
        """Added rows in label order (the order the meta store renumbers them in)."""
        if not self._new:
            empty_dtype = np.float32 if self.from_float else _code_dtype(self.dtype)
            return np.zeros((0, self.dim if self.from_float else stored_width(self.dtype, self.dim)), dtype=empty_dtype)
        labels = np.concatenate([lab for lab, _ in self._new])
        matrix = np.concatenate([m for _, m in self._new])
        return matrix[np.argsort(labels, kind="stable")]

    @staticmethod
    def _kept(matrix, keep: np.ndarray) -> list:
        if matrix is None or not len(keep):
            return []
        block = 1 << 16
        return [matrix[start : start + block][keep[start : start + block]] for start in range(0, len(keep), block)]

    def _quantize(self, floats: np.ndarray) -> np.ndarray:
        ranges = None if self.calibration is None else self.calibration.ranges
        return quantize(floats, self.dtype, ranges)

    # --- searching ---------------------------------------------------------------------------

    def query_width(self, dtype: str) -> int:
        return self.dim if is_float(dtype) else stored_width(self.dtype, self.dim)

    def query_dtype_problem(self, dtype: str, calibration_sha256: str | None) -> str | None:
        if is_float(dtype):
            if self.dtype in SCALAR_PRECISIONS and self.calibration is None:
                return (
                    f"is float, and this {self.dtype} index has no calibration to quantize it with: quantize queries "
                    "with `vecpipe quantize --calibration FILE`, or build the index with --calibration FILE"
                )
            return None
        if dtype != self.dtype:
            return f"dtype {dtype} differs from the index's {self.dtype}"
        if self.dtype in SCALAR_PRECISIONS and calibration_sha256 != (self.calibration.sha256 if self.calibration else self.provenance.get("calibration_sha256")):
            return "was quantized with other int8/uint8 ranges (calibration_sha256 differs from the index's)"
        return None

    def search(self, queries: np.ndarray, dtype: str, request, meta) -> tuple[np.ndarray, np.ndarray]:
        rows = request.allowed  # labels are rows; None means every row
        float_queries = queries.astype(np.float32) if is_float(dtype) else None
        if request.rescore or (request.exact and self.floats is not None):
            self._check_float_search(float_queries, "--rescore" if request.rescore else "--exact")
        if request.exact and self.floats is not None:
            return self._float_search(float_queries, rows, request.k)
        wanted = request.k * (request.rescore or 1)
        if float_queries is not None and self.dtype in SCALAR_PRECISIONS:
            # Asymmetric: the float query against each code's bucket centre, not the query's own codes.
            labels, scores = self._code_search(normalize_rows(float_queries), rows, wanted, dequantized=True)
        else:
            codes = self._quantize(float_queries) if float_queries is not None else queries
            labels, scores = self._code_search(codes, rows, wanted)
        if request.rescore:
            return self._rescore(float_queries, labels, request.k)
        return labels, scores

    def _check_float_search(self, float_queries, option: str) -> None:
        if self.floats is None:
            raise UsageError(f"{option} needs float vectors stored with the index: build it with --keep-float")
        if float_queries is None:
            raise UsageError(f"{option} needs float queries (text, or float vector records), not quantized ones")

    def _float_search(self, queries: np.ndarray, rows, k: int):
        labels = np.arange(len(self.floats)) if rows is None else rows
        vectors = self.floats if rows is None else self.floats[rows]
        return exact_float_search("ip", normalize_rows(queries), vectors, labels, k)  # stored rows are unit length

    def _code_search(self, codes: np.ndarray, rows, k: int, dequantized: bool = False) -> tuple[np.ndarray, np.ndarray]:
        scorer = self._scorer(None if rows is None else self.codes[rows], dequantized)
        positions, scores = scorer.top(codes, k)
        return (positions if rows is None else rows[positions]).astype(np.int64), scores

    def _scorer(self, matrix: np.ndarray | None, dequantized: bool = False):
        """A scorer for `matrix`, or (kept for later batches) for every row when None."""
        if matrix is None:
            if dequantized not in self._all_rows:
                self._all_rows[dequantized] = self._scorer(self.codes, dequantized)
            return self._all_rows[dequantized]
        if self.dtype in PACKED_DTYPES:
            return _HammingScorer(matrix, self.dim)
        if dequantized:
            return _DequantizedScorer(matrix, self.dtype, self.calibration.ranges)
        return _DotScorer(matrix, self.dtype, self.dim)

    def _rescore(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-rank each query's candidates by cosine against the stored floats (read for them only)."""
        queries = normalize_rows(queries)  # stored rows are unit length: cosine is their dot product
        labels = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for i, (query, rows) in enumerate(zip(queries, candidates)):
            rows = np.sort(rows)  # sorted reads from the memory map
            positions, best = top_k(float_scores("ip", query[None, :], self.floats[rows]), k)
            labels[i, : positions.shape[1]] = rows[positions[0]]
            scores[i, : positions.shape[1]] = best[0]
        return labels, scores


class _HammingScorer:
    """1 - 2·hamming/bits for packed bits: the cosine of the ±1 sign vectors, higher is better.

    faiss's IndexBinaryFlat does the scan: measured side by side on 41k x 384-bit codes
    (bench/kernels.py, 2-core EPYC with AVX-512), it took 0.13 ms a query against 0.20 ms for the
    numpy xor-popcount kernel it replaced, 0.39 ms for numkong and 0.41 ms for simsimd."""

    def __init__(self, matrix: np.ndarray, dim: int):
        faiss = _faiss()
        packed = np.ascontiguousarray(np.asarray(matrix).view(np.uint8))
        self.dim = dim
        self.index = faiss.IndexBinaryFlat(packed.shape[1] * 8)  # padding bits are 0 in rows and queries alike
        self.index.add(packed)

    def top(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row positions and scores of the k nearest rows to each packed query, best first."""
        k = min(k, self.index.ntotal)
        distances, positions = self.index.search(np.ascontiguousarray(codes).view(np.uint8), k)
        return positions.astype(np.int64), (1.0 - 2.0 * distances / self.dim).astype(np.float32)


def _faiss():
    """faiss, imported when a flat quantized index is first searched (0.1 s: not on other paths)."""
    import faiss

    return faiss


class _MatmulScorer:
    """Scorers whose keys come from a matmul over blocks of rows: queries go in chunks, so each
    block of codes is read once for several queries."""

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_positions, out_scores = [], []
        for start in range(0, len(queries), _QUERY_CHUNK):
            positions, keys = top_k(self.keys(queries[start : start + _QUERY_CHUNK]), k)
            out_positions.append(positions)
            out_scores.append(self.scores(keys))
        return np.concatenate(out_positions), np.concatenate(out_scores)


class _DequantizedScorer:
    """Float queries against int8/uint8 codes read as their bucket centres: the dot product with
    start + (bucket + 0.5)·step per dimension, so a score is close to the float cosine.

    Quantizing the query as well (the integer dot product of codes) throws away its precision and
    weighs every dimension by its own step; on SciFact that kept 97% of float nDCG@10, this 99.9%
    (bench/RESULTS.md). faiss's 8-bit scalar quantizer decodes a code c of a dimension as
    vmin + (c + 0.5) / 255 · vdiff: with vmin = start and vdiff = 255·step that is the same bucket
    centre, so its IndexScalarQuantizer scores the stored codes as they are, without decoding
    them to float32 arrays first (bench/kernels.py: 1.5 ms a query over 41k x 384 codes, against
    5.6 ms for numpy's float brute force)."""

    def __init__(self, matrix: np.ndarray, dtype: str, ranges: np.ndarray):
        faiss = _faiss()
        starts, steps = bucket_grid(ranges)
        buckets = np.asarray(matrix).view(np.uint8) if dtype == "uint8" else (np.asarray(matrix, dtype=np.int16) + 128).astype(np.uint8)
        dim = buckets.shape[1]
        self.index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(np.concatenate([starts, steps * np.float32(BUCKETS)]).astype(np.float32), self.index.sq.trained)
        self.index.is_trained = True
        faiss.copy_array_to_vector(np.ascontiguousarray(buckets).ravel(), self.index.codes)
        self.index.ntotal = len(buckets)

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.index.ntotal)
        scores, positions = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return positions.astype(np.int64), scores.astype(np.float32)


class _DotScorer(_MatmulScorer):
    """The integer dot product of codes, computed by BLAS in a float type that holds it exactly."""

    def __init__(self, matrix: np.ndarray, dtype: str, dim: int):
        self.matrix = matrix
        largest = 128 * 128 if dtype == "int8" else 255 * 255
        # float32 represents every integer up to 2**24 exactly; past that sums need float64.
        self.float_type = np.float32 if largest * dim < 2**24 else np.float64
        self.block_rows = max(256, _BLOCK_BYTES // (dim * np.dtype(self.float_type).itemsize))

    def keys(self, codes: np.ndarray) -> np.ndarray:
        queries = codes.astype(self.float_type)
        out = np.empty((len(queries), len(self.matrix)), dtype=np.float64)
        for start in range(0, len(self.matrix), self.block_rows):
            block = np.asarray(self.matrix[start : start + self.block_rows], dtype=self.float_type)
            out[:, start : start + len(block)] = queries @ block.T
        return out

    def scores(self, keys: np.ndarray) -> np.ndarray:
        return keys  # the dot products are the scores


def _target_dtype(input_dtype: str, options) -> str:
    if is_float(input_dtype):
        if options.quantize not in QUANTIZE_TO:
            raise UsageError(f"--quantize must be one of {', '.join(QUANTIZE_TO)}, not {options.quantize!r}")
        return options.quantize
    if options.quantize and options.quantize != input_dtype:
        raise UsageError(f"the records are already quantized to {input_dtype}; drop --quantize {options.quantize}")
    return input_dtype


def _metric(dtype: str) -> str:
    return "hamming" if dtype in PACKED_DTYPES else "dot"


def _code_dtype(dtype: str) -> np.dtype:
    return np.dtype(np.int8) if dtype in ("int8", "binary") else np.dtype(np.uint8)


def _build_calibration(first, dtype: str, from_float: bool, path) -> Calibration | None:
    """The int8/uint8 ranges given with --calibration (checked), else None (learned at save)."""
    if path is None:
        return None
    if dtype not in SCALAR_PRECISIONS:
        raise UsageError(f"--calibration applies to int8/uint8 indexes, not {dtype}")
    calibration = Calibration.load(str(path))
    if from_float:
        calibration.check_fits(first)
    elif calibration.sha256 != first.provenance.get("calibration_sha256"):
        raise UsageError(f"{path} is not the calibration these records were quantized with (sha256 differs)")
    return calibration
