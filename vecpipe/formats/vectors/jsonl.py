"""Vector records as JSONL: `{"id": ..., <fields>, "embedding": [...], "vecpipe": {provenance}}`,
the provenance identical on every line."""
from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Iterator

import numpy as np
import orjson

from vecpipe.core.errors import DataError
from vecpipe.core.provenance import Provenance, load_provenance
from vecpipe.core.vector_batch import STORAGE, VectorBatch, first_nonfinite_row, stored_width
from vecpipe.formats.text import BOM, ID_KEYS, is_exact_int, parse_record
from vecpipe.formats.vectors.common import EMBEDDING_KEY, PROVENANCE_KEY, describe_difference


@dataclass
class StreamShape:
    """What the first record fixed, and every later record must repeat."""

    provenance: dict
    dtype: str
    width: int
    line: int


def jsonl_batches(stream: IO[bytes], source: str, batch_size: int, first_position: int) -> Iterator[VectorBatch]:
    shape: StreamShape | None = None
    pending = _Rows()
    position = first_position
    for line_no, raw in enumerate(stream, start=1):
        if line_no == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if not raw.strip():
            continue
        record = _parse_vector_line(raw, source, line_no)
        rec_id, fields, provenance = split_record(record, position, source, line_no)
        embedding = _embedding_of(record, raw, source, line_no)
        if shape is None:
            shape = first_shape(provenance, None, len(embedding), source, line_no)
        _check_row(shape, provenance, len(embedding), source, line_no)
        pending.add(rec_id, fields, embedding, line_no)
        position += 1
        if len(pending) >= batch_size:
            yield pending.take(shape, source)
    if shape is None:
        raise DataError("no vector records (empty input)", source)
    if len(pending):
        yield pending.take(shape, source)


def _parse_vector_line(raw: bytes, source: str, line: int) -> dict:
    try:
        return parse_record(raw, source, line)
    except DataError:
        if b"NaN" in raw or b"Infinity" in raw:
            raise DataError("NaN or infinity in record (not valid JSON, and not a usable vector)", source, line) from None
        raise


def split_record(record: dict, position: int, source: str, line: int) -> tuple[object, dict, dict]:
    """(id, other fields in input order, provenance) of a record or sidecar line."""
    id_key = next((k for k in ID_KEYS if k in record), None)
    rec_id = record[id_key] if id_key else position
    if not (isinstance(rec_id, str) or is_exact_int(rec_id)):
        raise DataError(f"id must be a string or an integer, not {type(rec_id).__name__}", source, line)
    provenance = record.get(PROVENANCE_KEY, {})
    if not isinstance(provenance, dict):
        raise DataError(f"'{PROVENANCE_KEY}' must be an object, not {type(provenance).__name__}", source, line)
    skip = (id_key, EMBEDDING_KEY, PROVENANCE_KEY)
    fields = {k: v for k, v in record.items() if k not in skip}
    return rec_id, fields, provenance


def _embedding_of(record: dict, raw: bytes, source: str, line: int) -> list:
    if EMBEDDING_KEY not in record:
        raise DataError(f"missing '{EMBEDDING_KEY}'", source, line)
    embedding = record[EMBEDDING_KEY]
    if not isinstance(embedding, list):
        raise DataError(f"'{EMBEDDING_KEY}' must be a list of numbers, not {type(embedding).__name__}", source, line)
    # numpy would quietly read true as 1.0; look closely only when the line has a literal (behind a
    # duplicate key, the embedding that counts need not be the first one in the text).
    if (b"true" in raw or b"false" in raw) and any(isinstance(v, bool) for v in embedding):
        raise DataError(f"'{EMBEDDING_KEY}' holds a boolean, not a number", source, line)
    return embedding


def first_shape(provenance: dict, npy_dtype: np.dtype | None, width: int, source: str, line: int) -> StreamShape:
    """The dtype and row width a stream must keep, checked against its provenance (typed once
    here: every later row must carry the same object)."""
    typed = load_provenance(provenance, source, line)
    dtype = _logical_dtype(provenance, typed, npy_dtype)
    if width == 0:
        raise DataError(f"'{EMBEDDING_KEY}' is empty", source, line)
    if typed.dim is not None and stored_width(dtype, typed.dim) != width:
        raise DataError(f"the vector has {_values(width)} but provenance says dim {typed.dim!r} ({dtype})", source, line)
    return StreamShape(provenance, dtype, width, line)


def _logical_dtype(provenance: dict, typed: Provenance, npy_dtype: np.dtype | None) -> str:
    if npy_dtype is not None and not provenance:
        # A foreign .npy without sidecar says its dtype only through the matrix; float64 is read as float32.
        return "float32" if npy_dtype.kind == "f" and npy_dtype.itemsize == 8 else npy_dtype.name
    return typed.dtype


def _values(count: int) -> str:
    return f"{count} value" if count == 1 else f"{count} values"


def _check_row(shape: StreamShape, provenance: dict, width: int, source: str, line: int) -> None:
    if provenance != shape.provenance:
        raise DataError(f"provenance differs from line {shape.line}: {describe_difference(shape.provenance, provenance)}", source, line)
    if width != shape.width:
        raise DataError(f"the vector has {_values(width)}, the first one (line {shape.line}) has {shape.width}", source, line)


class _Rows:
    """Records gathered for the next batch; numpy is built once per batch, for speed."""

    def __init__(self) -> None:
        self.ids: list = []
        self.fields: list = []
        self.embeddings: list = []
        self.lines: list = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, rec_id, fields: dict, embedding: list, line: int) -> None:
        self.ids.append(rec_id)
        self.fields.append(fields)
        self.embeddings.append(embedding)
        self.lines.append(line)

    def take(self, shape: StreamShape, source: str) -> VectorBatch:
        matrix = _rows_to_matrix(self.embeddings, shape.dtype, self.lines, source)
        batch = VectorBatch(self.ids, self.fields, matrix, shape.provenance, self.lines, source)
        self.__init__()
        return batch


def _rows_to_matrix(rows: list, dtype: str, lines: list, source: str) -> np.ndarray:
    try:
        values = np.array(rows)
    except ValueError:  # ragged nesting such as [1, [2, 3]]
        values = None
    if values is None or values.ndim != 2 or values.dtype.kind not in "iuf":
        bad = next(i for i, row in enumerate(rows) if _first_non_number(row) is not None)
        raise DataError(f"'{EMBEDDING_KEY}' holds {_first_non_number(rows[bad])}, not a number", source, lines[bad])
    return cast_checked(values, dtype, lines, source)


def _first_non_number(row: list) -> str | None:
    for value in row:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return repr(value)[:40]
    return None


def cast_checked(values: np.ndarray, dtype: str, lines: list, source: str) -> np.ndarray:
    """`values` as the storage type of `dtype`, refusing what would not survive the cast."""
    target = STORAGE[dtype]
    if target.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            matrix = values.astype(target)
        bad = first_nonfinite_row(matrix)
        if bad is not None:
            raise DataError(f"NaN or infinite value in the vector (or beyond the {target.name} range)", source, lines[bad])
        return matrix
    info = np.iinfo(target)
    with np.errstate(invalid="ignore"):
        ok = (values >= info.min) & (values <= info.max)
        if values.dtype.kind == "f":
            ok &= values == np.round(values)
    if not ok.all():
        bad = int(np.argmin(ok.all(axis=1)))
        raise DataError(f"{dtype} vector values must be integers in [{info.min}, {info.max}]", source, lines[bad])
    return values.astype(target)


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def completed_provenance(batch: VectorBatch) -> dict:
    """The batch's provenance, with `dtype` added when the matrix is not float32 and it is missing,
    so that what is written reads back as the same dtype."""
    if "dtype" in batch.provenance or batch.matrix.dtype == np.float32:
        return batch.provenance
    return {**batch.provenance, "dtype": batch.matrix.dtype.name}


def jsonl_lines(batch: VectorBatch, provenance: dict, with_embedding: bool) -> Iterator[bytes]:
    matrix = np.ascontiguousarray(batch.matrix)
    for rec_id, fields, row in zip(batch.ids, batch.fields, matrix):
        record = {"id": rec_id, **fields}
        if with_embedding:
            record[EMBEDDING_KEY] = row
        record[PROVENANCE_KEY] = provenance
        yield orjson.dumps(record, option=_JSON_OPTIONS) + b"\n"
