"""Vector batches: rows of vectors with their ids, fields, provenance and source lines, and the
table of how each logical dtype is stored. Every package passes vectors around in these."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecpipe.core.errors import DataError

STDIN_NAME = "<stdin>"

# How each logical dtype (provenance "dtype", float32 when absent) is stored.
STORAGE = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "binary": np.dtype(np.int8),
    "ubinary": np.dtype(np.uint8),
}
FLOAT_DTYPES = ("float32", "float16")
PACKED_DTYPES = ("binary", "ubinary")


@dataclass
class VectorBatch:
    ids: list  # str or int: input "id" (or "_id"), else the 0-based input position
    fields: list  # one dict per row: every other input field, in input order
    matrix: np.ndarray  # (n, width); binary/ubinary rows are bit-packed (width = ceil(dim / 8))
    provenance: dict  # the "vecpipe" object, identical for every row of a stream
    lines: list  # 1-based source line (JSONL) or row (npy) of each row, for error messages
    source: str = STDIN_NAME  # file name, or <stdin>, for error messages

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows) -> "VectorBatch":
        """These rows (a slice, or row numbers in the order wanted) as a batch of their own."""
        if isinstance(rows, slice):
            return VectorBatch(self.ids[rows], self.fields[rows], self.matrix[rows], self.provenance, self.lines[rows], self.source)
        return VectorBatch([self.ids[r] for r in rows], [self.fields[r] for r in rows], self.matrix[rows], self.provenance,
                           [self.lines[r] for r in rows] if self.lines else [], self.source)

    @property
    def dtype(self) -> str:
        """The logical dtype: float32, float16, int8, uint8, binary or ubinary."""
        return self.provenance.get("dtype") or self.matrix.dtype.name

    @property
    def dim(self) -> int:
        """Float dimensions (for bit-packed vectors, 8 per byte unless provenance says fewer)."""
        if "dim" in self.provenance:
            return int(self.provenance["dim"])
        return self.matrix.shape[1] * (8 if self.dtype in PACKED_DTYPES else 1)

    def error(self, row: int, message: str) -> DataError:
        """A DataError pointing at row `row` of this batch."""
        return DataError(message, self.source, self.lines[row])


def stored_width(dtype: str, dim: int) -> int:
    return (dim + 7) // 8 if dtype in PACKED_DTYPES else dim


def require_float(batch: VectorBatch, step: str, advice: str = "") -> None:
    """Refuse quantized vectors where `step` needs floats (quantizing twice, truncating bits)."""
    if batch.dtype not in FLOAT_DTYPES:
        line = batch.lines[0] if batch.lines else None
        message = f"input is already quantized ({batch.dtype}); {step} needs float vectors"
        raise DataError(message + (f": {advice}" if advice else ""), batch.source, line)


def first_nonfinite_row(matrix: np.ndarray) -> int | None:
    if matrix.dtype.kind != "f":
        return None
    finite_rows = np.isfinite(matrix).all(axis=1)
    return None if finite_rows.all() else int(np.argmin(finite_rows))
