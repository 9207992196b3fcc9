"""Quantization to float16, int8, uint8, binary and ubinary.

int8, uint8, binary and ubinary give exactly what sentence-transformers' `quantize_embeddings`
gives for the same float32 inputs and ranges (tests/fixtures/quantize_reference.npz holds its
outputs). Scalar quantization cuts each dimension's [min, max] range into 255 equal steps:
`bucket = clip(floor((x - min) / step), 0, 255)`, stored as uint8, or minus 128 as int8.
Binary keeps the sign (`x > 0`), 8 dimensions per byte, packed as `np.packbits` does.

The known traps (sentence-transformers #2837 and #2587, haystack #9100), and what vecpipe does:
- Ranges learned from the vectors being quantized are degenerate for a single vector (min ==
  max in every dimension, so every value lands in one bucket). vecpipe refuses to learn ranges
  from fewer than two vectors and asks for a calibration file, as sentence-transformers now does.
- A constant dimension has a zero-width range. Dividing by its zero step gave inf/NaN and garbage
  after the integer cast; its step is taken as 1 instead, as in sentence-transformers, so the
  dimension quantizes to a constant bucket. It carried no information in the sample anyway.
- Values outside the ranges (queries, documents newer than the calibration) saturate at the end
  buckets rather than wrapping around in the integer cast.
- Queries must be quantized with the documents' ranges. They are saved with --save-calibration,
  and the sha256 of that file goes into provenance (`calibration_sha256`), so a mismatch shows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from vecpipe.core.errors import DataError, UsageError
from vecpipe.core.vectors.npz import SavedArrays, artifact_bytes, check_same_space, count_from, load_npz, provenance_from, space_of
from vecpipe.core.vector_batch import VectorBatch, first_nonfinite_row, require_float

PRECISIONS = ("float16", "int8", "uint8", "binary", "ubinary")
SCALAR_PRECISIONS = ("int8", "uint8")
BUCKETS = 255  # steps between a dimension's min and max
CALIBRATION_FORMAT = "vecpipe calibration 1"
FEW_CALIBRATION_VECTORS = 100  # below this, ranges from a sample are shaky (sentence-transformers warns too)


@dataclass(frozen=True)
class Calibration(SavedArrays):
    """Per-dimension quantization ranges, and the .npz file that holds them."""

    ranges: np.ndarray  # (2, dim) float32: each dimension's min (row 0) and max (row 1)
    count: int  # how many vectors they were learned from (0 when the file does not say)
    provenance: dict  # the vector space they were learned in (model, dim, truncation)
    file_bytes: bytes = field(repr=False)  # the .npz exactly as saved or loaded
    path: str | None = None

    @property
    def dim(self) -> int:
        return self.ranges.shape[1]

    @classmethod
    def learned(cls, ranges: np.ndarray, count: int, provenance: dict) -> "Calibration":
        ranges = ranges.astype(np.float32)
        data = artifact_bytes(CALIBRATION_FORMAT, {"ranges": ranges}, count, provenance)
        return cls(ranges, count, space_of(provenance), data)

    @classmethod
    def load(cls, path: str) -> "Calibration":
        """A calibration file: vecpipe's own, or any .npz with a (2, dim) `ranges` array."""
        arrays, data = load_npz(path, ("ranges",), "calibration")
        ranges = _checked_ranges(arrays["ranges"], path)
        return cls(ranges, count_from(arrays), provenance_from(arrays, path), data, path)

    def check_fits(self, batch: VectorBatch) -> None:
        """Refuse vectors of another width or vector space than the ranges were learned in."""
        name = self.path or "the calibration"
        if self.dim != batch.matrix.shape[1]:
            raise batch.error(0, f"{name} has ranges for {self.dim} dimensions; these vectors have {batch.matrix.shape[1]}")
        check_same_space(self.provenance, batch.provenance, "calibration", name, batch.source, batch.lines[0])


def _checked_ranges(ranges: np.ndarray, path: str) -> np.ndarray:
    if ranges.ndim != 2 or ranges.shape[0] != 2 or ranges.shape[1] == 0 or ranges.dtype.kind not in "fiu":
        raise DataError(f"ranges must be a (2, dim) array of min and max values, not {ranges.dtype} {ranges.shape}", path)
    ranges = ranges.astype(np.float32)
    if not np.isfinite(ranges).all():
        raise DataError("ranges hold NaN or infinite values", path)
    if (ranges[0] > ranges[1]).any():
        raise DataError(f"ranges have min above max in dimension {int(np.argmax(ranges[0] > ranges[1]))}", path)
    return ranges


class RangeTracker:
    """Each dimension's min and max over a stream of batches: what sentence-transformers'
    `np.min` / `np.max` over all rows give, without holding the rows."""

    def __init__(self) -> None:
        self.count = 0
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None
        self.provenance: dict = {}
        self._where: tuple = (None, None)  # source and line of the first vector, for errors

    def add(self, batch: VectorBatch) -> None:
        require_float(batch, "quantize")
        matrix = batch.matrix.astype(np.float32, copy=False)
        if self.low is None:
            self.low, self.high = matrix.min(axis=0), matrix.max(axis=0)
            self.provenance, self._where = batch.provenance, (batch.source, batch.lines[0])
        else:
            np.minimum(self.low, matrix.min(axis=0), out=self.low)
            np.maximum(self.high, matrix.max(axis=0), out=self.high)
        self.count += len(batch)

    def calibration(self) -> Calibration:
        if self.count < 2:
            raise UsageError(
                f"cannot learn int8/uint8 ranges from {self.count} vector{'' if self.count == 1 else 's'}: "
                "pass --calibration FILE, saved with --save-calibration from a sample of documents",
                *self._where,
            )
        return Calibration.learned(np.vstack([self.low, self.high]), self.count, self.provenance)


def learn_calibration(batches: Iterable[VectorBatch]) -> Calibration:
    tracker = RangeTracker()
    for batch in batches:
        tracker.add(batch)
    return tracker.calibration()


def quantize(matrix: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Quantize finite float vectors, as sentence-transformers' `quantize_embeddings` does.

    `ranges` ((2, dim): min, max) is needed for int8 and uint8; binary types pack `x > 0`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    if precision == "float16":
        return matrix.astype(np.float16)
    if precision in SCALAR_PRECISIONS:
        if ranges is None:
            raise ValueError("int8 and uint8 quantization needs ranges")
        return _scalar(matrix.astype(np.float32, copy=False), ranges, precision)
    packed = np.packbits(matrix > 0, axis=-1)
    return packed if precision == "ubinary" else (packed - 128).astype(np.int8)


def bucket_grid(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each dimension's first bucket start and bucket width (1 for a constant dimension), in float32."""
    # The same operations, in the same float32 order, as sentence-transformers: bit-identical buckets.
    ranges = ranges.astype(np.float32, copy=False)
    starts = ranges[0, :]
    steps = (ranges[1, :] - starts) / BUCKETS
    return starts, np.where(steps == 0, 1, steps)


def _scalar(matrix: np.ndarray, ranges: np.ndarray, precision: str) -> np.ndarray:
    starts, steps = bucket_grid(ranges)
    buckets = np.clip(np.floor((matrix - starts) / steps), 0, BUCKETS)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)


def quantize_batch(batch: VectorBatch, precision: str, calibration: Calibration | None = None) -> VectorBatch:
    """A batch quantized to `precision`, with provenance saying so; int8/uint8 need `calibration`."""
    require_float(batch, "quantize")
    ranges = None
    if precision in SCALAR_PRECISIONS:
        if calibration is None:
            raise ValueError("int8 and uint8 quantization needs a calibration")
        calibration.check_fits(batch)
        ranges = calibration.ranges
    with np.errstate(over="ignore"):
        matrix = quantize(batch.matrix, precision, ranges)
    bad = first_nonfinite_row(matrix)
    if bad is not None:
        raise batch.error(bad, "a value is beyond the float16 range (about ±65504)")
    provenance = quantized_provenance(batch.provenance, precision, batch.dim, calibration if ranges is not None else None)
    return VectorBatch(batch.ids, batch.fields, matrix, provenance, batch.lines, batch.source)


def quantized_provenance(provenance: dict, precision: str, dim: int, calibration: Calibration | None) -> dict:
    """Provenance after quantizing: the new dtype, the ranges' sha256, and the float `dim` kept
    (bit-packing alone cannot tell 35 dimensions from 40)."""
    result = {key: value for key, value in provenance.items() if key not in ("dtype", "calibration_sha256")}
    result.setdefault("dim", dim)
    result["dtype"] = precision
    if calibration is not None:
        result["calibration_sha256"] = calibration.sha256
    return result
