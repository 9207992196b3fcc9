"""Vector records: JSONL lines, or an .npy matrix with a JSONL sidecar (see docs/FORMATS.md).

A JSONL record is `{"id": ..., <fields>, "embedding": [...], "vecpipe": {provenance}}`. The
provenance is repeated on every line so that `sort`, `shuf`, `head` and `cat a b` keep a stream
valid; it must be identical on every line, which is how a stage notices two models mixed.

The .npy form is the matrix in `X.npy` and, in `X.meta.jsonl`, one line per row with the same
objects minus `embedding`. Readers sniff the npy magic, so either form may arrive on stdin.
"""
from __future__ import annotations

import contextlib
import io
import os
import stat
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import numpy as np
import orjson

from vecpipe.core.atomic import atomic_file, fsync_dir, make_temp_dir_beside, signals_held, write_bytes_atomic
from vecpipe.core.errors import DataError, StorageError, UsageError, storage_error
from vecpipe.formats.text import BOM, ID_KEYS, is_exact_int, parse_record

NPY_MAGIC = b"\x93NUMPY"
STDIN_NAME = "<stdin>"
PROVENANCE_KEY = "vecpipe"
EMBEDDING_KEY = "embedding"

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

Note = Callable[[str], None]


def _note_to_stderr(message: str) -> None:
    print(f"vecpipe: {message}", file=sys.stderr, flush=True)


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


def write_all(stream: IO[bytes], data: bytes) -> None:
    """Write every byte: a buffered write to a pipe returns early when a signal interrupts it."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        view = view[written if written is not None else len(view) :]


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


# ---------------------------------------------------------------------------------------------
# Reading


def read_vectors(
    path: str,
    stream: IO[bytes] | None = None,
    batch_size: int = 4096,
    *,
    first_position: int = 0,
    note: Note = _note_to_stderr,
) -> Iterator[VectorBatch]:
    """Yield VectorBatches from a JSONL or .npy file; `path` "-" reads `stream` (default stdin).

    `first_position` is the id given to the first record that has none (for several inputs in
    one stream). `note` receives one-line notices, such as a missing sidecar.
    """
    if path == "-":
        yield from _read_stream(stream or sys.stdin.buffer, STDIN_NAME, batch_size, first_position, note)
        return
    if stream is None and os.path.isdir(path):
        yield from _parts_batches(path, batch_size, first_position, note)
        return
    if stream is None:
        with _open_file(path) as fh:
            yield from read_vectors(path, fh, batch_size, first_position=first_position, note=note)
        return
    if not stream.seekable():  # a named pipe, e.g. bash's <(vecpipe embed ...)
        yield from _read_stream(stream, path, batch_size, first_position, note)
    elif stream.read(len(NPY_MAGIC)) == NPY_MAGIC:
        yield from _npy_file_batches(path, stream, batch_size, first_position, note)
    else:
        stream.seek(0)
        yield from _jsonl_batches(stream, path, batch_size, first_position)


def _read_stream(stream: IO[bytes], source: str, batch_size: int, first_position: int, note: Note) -> Iterator[VectorBatch]:
    head, stream = _sniff(stream)
    if head.startswith(NPY_MAGIC):
        batches = _npy_stream_batches(stream, source, batch_size, first_position)
        first = next(batches, None)  # the header is read and checked first: a broken one is the only line said
        note(f"{source}: a streamed .npy has no sidecar: ids are row positions and provenance is unknown")
        if first is not None:
            yield first
        yield from batches
    else:
        yield from _jsonl_batches(stream, source, batch_size, first_position)


def read_matrix(path: str, stream: IO[bytes] | None = None, note: Note = _note_to_stderr) -> VectorBatch:
    """Every row of a (small) vector file as one VectorBatch: calibration samples, PCA samples."""
    return concat_batches(list(read_vectors(path, stream, note=note)))


def concat_batches(batches: list[VectorBatch]) -> VectorBatch:
    if not batches:
        raise ValueError("no batches to concatenate")
    first = batches[0]
    return VectorBatch(
        ids=[i for b in batches for i in b.ids],
        fields=[f for b in batches for f in b.fields],
        matrix=np.concatenate([b.matrix for b in batches]),
        provenance=first.provenance,
        lines=[n for b in batches for n in b.lines],
        source=first.source,
    )


@contextlib.contextmanager
def _open_file(path: str) -> Iterator[IO[bytes]]:
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(exc.strerror or "cannot open", path) from None
    with fh:
        yield fh


class _Unread(io.RawIOBase):
    """A stream with its first bytes (already read to sniff the format) pushed back."""

    def __init__(self, head: bytes, stream: IO[bytes]):
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        # read1 returns what a pipe has now, so lines flow through without waiting for a full buffer.
        read = getattr(self._stream, "read1", self._stream.read)
        data = read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def unread(head: bytes, stream: IO[bytes]) -> IO[bytes]:
    """A buffered stream that yields `head` (bytes already read from `stream`), then the rest."""
    return io.BufferedReader(_Unread(head, stream), buffer_size=1 << 16)


def holds_vectors(head: bytes) -> bool:
    """Whether an input whose first non-blank line (or first bytes) is `head` holds vectors: the
    .npy magic, or a JSON object with an `embedding`. A line that is not JSON is text."""
    if head.startswith(NPY_MAGIC):
        return True
    if not head.lstrip().startswith(b"{"):
        return False
    try:
        record = orjson.loads(head)
    except orjson.JSONDecodeError:
        return False  # the text reader reports the bad line
    return isinstance(record, dict) and EMBEDDING_KEY in record


def first_line(stream: IO[bytes]) -> tuple[bytes, IO[bytes]]:
    """The first non-blank line (or the npy magic), and a stream that still starts at the beginning."""
    consumed = b""
    line = b""
    while not line.strip():
        line = stream.readline()
        consumed += line
        if not line or consumed.startswith(NPY_MAGIC):
            break
    return line, unread(consumed, stream)


def _sniff(stream: IO[bytes]) -> tuple[bytes, IO[bytes]]:
    head = _read_exactly(stream, len(NPY_MAGIC))
    return head, unread(head, stream)


# --- JSONL ----------------------------------------------------------------------------------


@dataclass
class _StreamShape:
    """What the first record fixed, and every later record must repeat."""

    provenance: dict
    dtype: str
    width: int
    line: int


def _jsonl_batches(stream: IO[bytes], source: str, batch_size: int, first_position: int) -> Iterator[VectorBatch]:
    shape: _StreamShape | None = None
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
            shape = _first_shape(provenance, None, len(embedding), source, line_no)
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


def _first_shape(provenance: dict, npy_dtype: np.dtype | None, width: int, source: str, line: int) -> _StreamShape:
    """The dtype and row width a stream must keep, checked against its provenance."""
    dtype = _logical_dtype(provenance, npy_dtype, source, line)
    if width == 0:
        raise DataError(f"'{EMBEDDING_KEY}' is empty", source, line)
    if "dim" in provenance:
        dim = provenance["dim"]
        if isinstance(dim, bool) or not isinstance(dim, int) or stored_width(dtype, dim) != width:
            raise DataError(f"the vector has {_values(width)} but provenance says dim {dim!r} ({dtype})", source, line)
    return _StreamShape(provenance, dtype, width, line)


def _logical_dtype(provenance: dict, npy_dtype: np.dtype | None, source: str, line: int) -> str:
    if "dtype" in provenance:
        dtype = provenance["dtype"]
        if dtype not in STORAGE:
            raise DataError(f"unknown dtype {dtype!r} in provenance (expected one of {', '.join(STORAGE)})", source, line)
        return dtype
    if npy_dtype is not None and not provenance:
        # A foreign .npy without sidecar says its dtype only through the matrix; float64 is read as float32.
        return "float32" if npy_dtype.kind == "f" and npy_dtype.itemsize == 8 else npy_dtype.name
    return "float32"


def _values(count: int) -> str:
    return f"{count} value" if count == 1 else f"{count} values"


def _check_row(shape: _StreamShape, provenance: dict, width: int, source: str, line: int) -> None:
    if provenance != shape.provenance:
        raise DataError(f"provenance differs from line {shape.line}: {describe_difference(shape.provenance, provenance)}", source, line)
    if width != shape.width:
        raise DataError(f"the vector has {_values(width)}, the first one (line {shape.line}) has {shape.width}", source, line)


def describe_difference(first: dict, other: dict) -> str:
    """A short human account of how two provenance objects differ: `model 'a' vs 'b'`."""
    for key in list(first) + [k for k in other if k not in first]:
        if first.get(key) != other.get(key):
            return f"{key} {first.get(key, '(none)')!r} vs {other.get(key, '(none)')!r}"
    return "(same keys, different order)"


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

    def take(self, shape: _StreamShape, source: str) -> VectorBatch:
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
    return _cast_checked(values, dtype, lines, source)


def _first_non_number(row: list) -> str | None:
    for value in row:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return repr(value)[:40]
    return None


def _cast_checked(values: np.ndarray, dtype: str, lines: list, source: str) -> np.ndarray:
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


# --- .npy -----------------------------------------------------------------------------------

# Accepted .npy element types: the four vecpipe writes, and float64 (what numpy saves by
# default), read as float32. Anything else, object arrays above all, is refused unread.
_NPY_KINDS = {("f", 4), ("f", 2), ("i", 1), ("u", 1), ("f", 8)}


@dataclass
class _NpyHeader:
    rows: int
    width: int
    dtype: np.dtype
    fortran: bool
    offset: int = 0  # where the data starts, for memory-mapping a file

    @property
    def row_bytes(self) -> int:
        return self.width * self.dtype.itemsize


def _read_npy_header(fh: IO[bytes], source: str) -> _NpyHeader:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise DataError(f"unsupported .npy format version {version[0]}.{version[1]}", source)
    except ValueError as exc:
        raise DataError(f"not a readable .npy file ({exc})", source) from None
    if dtype.fields is not None or (dtype.kind, dtype.itemsize) not in _NPY_KINDS:
        raise DataError(f".npy holds {dtype} values; vecpipe reads float32, float16, float64, int8 or uint8", source)
    if len(shape) != 2:
        raise DataError(f".npy holds a {len(shape)}-D array; vectors must be a 2-D matrix (rows x dims)", source)
    if shape[0] == 0:
        raise DataError("no vector records (empty .npy matrix)", source)
    if shape[1] == 0:
        raise DataError("the .npy matrix has rows of width 0", source)
    return _NpyHeader(shape[0], shape[1], dtype, fortran)


def sidecar_path(npy_path: str) -> str:
    """`X.meta.jsonl` beside `X.npy` (or beside any other name, with the suffix added)."""
    base = npy_path[: -len(".npy")] if npy_path.endswith(".npy") else npy_path
    return base + ".meta.jsonl"


def _npy_file_batches(path: str, fh: IO[bytes], batch_size: int, first_position: int, note: Note) -> Iterator[VectorBatch]:
    fh.seek(0)
    header = _read_npy_header(fh, path)
    header.offset = fh.tell()
    _check_npy_size(header, os.fstat(fh.fileno()).st_size, path)
    matrix = np.memmap(path, dtype=header.dtype, mode="r", offset=header.offset,
                       shape=(header.rows, header.width), order="F" if header.fortran else "C")
    blocks = (matrix[start:start + batch_size] for start in range(0, header.rows, batch_size))
    meta = sidecar_path(path)
    if not os.path.exists(meta):
        note(f"{path}: no sidecar {meta}: ids are row positions and provenance is unknown")
        yield from _npy_batches(blocks, header, None, path, first_position)
        return
    with _open_file(meta) as sidecar:
        yield from _npy_batches(blocks, header, _SidecarReader(sidecar, meta, first_position), path, first_position)


def _check_npy_size(header: _NpyHeader, size: int, source: str) -> None:
    expected = header.offset + header.rows * header.row_bytes
    if size < expected:
        whole = max(0, size - header.offset) // max(header.row_bytes, 1)
        raise DataError(f"truncated .npy: the header promises {header.rows} rows, the file holds {whole}", source)
    if size > expected:
        raise DataError(f"{size - expected} unexpected bytes after the .npy matrix", source)


def _npy_stream_batches(stream: IO[bytes], source: str, batch_size: int, first_position: int) -> Iterator[VectorBatch]:
    header = _read_npy_header(stream, source)
    if header.fortran:
        raise DataError("a Fortran-ordered .npy cannot be streamed; save it C-ordered or pass it as a file", source)
    yield from _npy_batches(_stream_blocks(stream, header, batch_size, source), header, None, source, first_position)


def _stream_blocks(stream: IO[bytes], header: _NpyHeader, batch_size: int, source: str) -> Iterator[np.ndarray]:
    for start in range(0, header.rows, batch_size):
        rows = min(batch_size, header.rows - start)
        data = _read_exactly(stream, rows * header.row_bytes)
        if len(data) < rows * header.row_bytes:
            whole = start + len(data) // max(header.row_bytes, 1)
            raise DataError(f"truncated .npy: the header promises {header.rows} rows, the stream holds {whole}", source)
        yield np.frombuffer(data, dtype=header.dtype).reshape(rows, header.width)
    if stream.read(1):
        raise DataError("unexpected bytes after the .npy matrix", source)


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _npy_batches(blocks: Iterable[np.ndarray], header: _NpyHeader, sidecar: "_SidecarReader | None",
                 source: str, first_position: int) -> Iterator[VectorBatch]:
    shape: _StreamShape | None = None
    row = 0
    for block in blocks:
        n = len(block)
        lines = list(range(row + 1, row + n + 1))
        if sidecar is None:
            ids, fields, provenance = list(range(first_position + row, first_position + row + n)), [{} for _ in range(n)], {}
        else:
            ids, fields, provenance = sidecar.take(n, header.rows)
        if shape is None:
            shape = _first_shape(provenance, header.dtype, header.width, sidecar.source if sidecar else source, 1)
            _check_npy_dtype(shape.dtype, header.dtype, source)
        matrix = _cast_checked(np.ascontiguousarray(block), shape.dtype, lines, source)
        yield VectorBatch(ids, fields, matrix, shape.provenance, lines, source)
        row += n
    if sidecar is not None:
        sidecar.expect_end(header.rows)


def _check_npy_dtype(dtype: str, npy_dtype: np.dtype, source: str) -> None:
    stored = STORAGE[dtype]
    if npy_dtype.newbyteorder("=") == stored or (dtype == "float32" and npy_dtype.kind == "f" and npy_dtype.itemsize == 8):
        return
    raise DataError(f".npy holds {npy_dtype} values but the sidecar's provenance says {dtype} (stored as {stored})", source)


class _SidecarReader:
    """The sidecar's records, taken in step with the matrix rows, with provenance checked."""

    def __init__(self, stream: IO[bytes], source: str, first_position: int):
        self.source = source
        self._lines = enumerate(stream, start=1)
        self._position = first_position
        self._count = 0
        self._provenance: dict | None = None
        self._first_line = 0

    def take(self, n: int, rows: int) -> tuple[list, list, dict]:
        ids, fields = [], []
        for _ in range(n):
            line_no, record = self._next_record()
            if record is None:
                raise DataError(f"the sidecar has {self._count} records but the .npy has {rows} rows", self.source)
            rec_id, rec_fields, provenance = split_record(record, self._position, self.source, line_no)
            self._check_provenance(provenance, line_no)
            ids.append(rec_id)
            fields.append(rec_fields)
            self._position += 1
        return ids, fields, self._provenance

    def expect_end(self, rows: int) -> None:
        line_no, record = self._next_record()
        if record is not None:
            raise DataError(f"the sidecar has more records than the .npy has rows ({rows})", self.source, line_no)

    def _next_record(self) -> tuple[int, dict | None]:
        for line_no, raw in self._lines:
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if raw.strip():
                self._count += 1
                return line_no, parse_record(raw, self.source, line_no)
        return 0, None

    def _check_provenance(self, provenance: dict, line: int) -> None:
        if self._provenance is None:
            self._provenance, self._first_line = provenance, line
        elif provenance != self._provenance:
            detail = describe_difference(self._provenance, provenance)
            raise DataError(f"provenance differs from line {self._first_line}: {detail}", self.source, line)


# --- several inputs ---------------------------------------------------------------------------


class StdinSource:
    """Stdin for one pass; with `rereadable`, first copied to a temp file so it can be read again
    (for commands that learn something from the whole input before writing any of it)."""

    def __init__(self, stream: IO[bytes] | None = None, rereadable: bool = False):
        self._stream = stream
        self._spool: IO[bytes] | None = None
        self.rereadable = rereadable

    def open(self) -> IO[bytes]:
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        if not self.rereadable:
            return stream
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="vecpipe-stdin-")
            shutil.copyfileobj(stream, self._spool, 1 << 20)
        self._spool.seek(0)
        return self._spool

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


class VectorInputs:
    """Several vector files (and `-`) read as one stream: ids by position continue from file to
    file, and every file must carry the provenance, dtype and width of the first."""

    def __init__(self, paths: list[str], stdin: StdinSource | None = None, batch_size: int = 4096, note: Note = _note_to_stderr):
        self.paths = paths or ["-"]
        self.stdin = stdin or StdinSource()
        self.batch_size = batch_size
        self.note = _once_each(note)  # a command that reads the inputs twice says things once
        self._pipes: dict[str, StdinSource] = {}  # named pipes among the paths, spooled when read twice

    def _stream(self, path: str) -> IO[bytes] | None:
        """The stream to read `path` from, or None to open it as a file.

        A named pipe (`<(vecpipe embed ...)`) can be read once only: a command that reads its
        inputs twice (quantize learning its ranges) copies it to a temp file on the first pass,
        as it does stdin, instead of waiting for ever on a second open."""
        if path == "-":
            return self.stdin.open()
        if not self.stdin.rereadable or path in self._pipes or _is_regular(path):
            return self._pipes[path].open() if path in self._pipes else None
        try:
            pipe = open(path, "rb")
        except OSError as exc:
            raise DataError(exc.strerror or "cannot open", path) from None
        self._pipes[path] = StdinSource(pipe, rereadable=True)
        return self._pipes[path].open()

    def close(self) -> None:
        for spool in self._pipes.values():
            spool.close()

    def __iter__(self) -> Iterator[VectorBatch]:
        first: VectorBatch | None = None
        position = 0
        for path in self.paths:
            stream = self._stream(path)
            for batch in read_vectors(path, stream, self.batch_size, first_position=position, note=self.note):
                first = _agreeing(first, batch)
                position += len(batch)
                yield batch


def _is_regular(path: str) -> bool:
    """A file or directory that can be opened again (not a pipe)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True  # let the reader report the missing file as it always does
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def _once_each(note: Note) -> Note:
    said: set[str] = set()

    def say_once(message: str) -> None:
        if message not in said:
            said.add(message)
            note(message)

    return say_once


def _agreeing(first: VectorBatch | None, batch: VectorBatch) -> VectorBatch:
    """The first batch of a stream (`batch`, if there was none): every later one must match it."""
    if first is None:
        return batch
    if batch.provenance != first.provenance or batch.matrix.shape[1] != first.matrix.shape[1]:
        raise _mismatch(first, batch)
    return first


def _mismatch(first: VectorBatch, batch: VectorBatch) -> DataError:
    if batch.provenance != first.provenance:
        detail = describe_difference(first.provenance, batch.provenance)
    else:
        detail = f"vectors of width {batch.matrix.shape[1]} vs {first.matrix.shape[1]}"
    return batch.error(0, f"provenance differs from {first.source}: {detail}")


# ---------------------------------------------------------------------------------------------
# Writing

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_NPY_HEADER_BYTES = 128  # room for any row count; the header is rewritten with the real one at the end


class VectorWriter:
    """Writes VectorBatches as JSONL to `stream`, or as `npy_path` + its sidecar.

    The .npy rows stream into a temp file beside the target (never held in memory); `close()`
    writes the real row count into the header and renames the sidecar, then the matrix, into
    place. Use it as a context manager, or call `abort()` on failure, to leave no temp files.
    """

    def __init__(self, stream: IO[bytes] | None, fmt: str = "jsonl", npy_path: str | None = None, part_rows: int | None = None):
        if fmt not in ("jsonl", "npy"):
            raise UsageError(f"unknown vector format {fmt!r} (expected jsonl or npy)")
        if fmt == "npy" and not npy_path:
            raise UsageError("--format npy writes a matrix and its sidecar to files: give -o FILE.npy")
        if fmt == "jsonl" and stream is None:
            raise ValueError("a JSONL VectorWriter needs a stream")
        self.fmt = fmt
        self.rows = 0
        self._stream = stream
        self._npy = _npy_output(npy_path, part_rows) if fmt == "npy" else None
        self._shape: tuple | None = None  # (provenance, dtype, width) of the first batch

    def __enter__(self) -> "VectorWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, batch: VectorBatch) -> None:
        if not len(batch):
            return
        provenance = _completed_provenance(batch)
        self._check_consistent(batch, provenance)
        if self._npy is not None:
            self._npy.write(batch, provenance)
        else:
            write_all(self._stream, b"".join(_jsonl_lines(batch, provenance, with_embedding=True)))
            self._stream.flush()
        self.rows += len(batch)

    def close(self) -> None:
        if self._npy is not None:
            self._npy.commit()
            self._npy = None
        elif self._stream is not None:
            self._stream.flush()

    def abort(self) -> None:
        if self._npy is not None:
            self._npy.discard()
            self._npy = None

    def _check_consistent(self, batch: VectorBatch, provenance: dict) -> None:
        shape = (provenance, batch.matrix.dtype, batch.matrix.shape[1])
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise ValueError("a vector stream cannot change provenance, dtype or width part-way")


def _completed_provenance(batch: VectorBatch) -> dict:
    """The batch's provenance, with `dtype` added when the matrix is not float32 and it is missing,
    so that what is written reads back as the same dtype."""
    if "dtype" in batch.provenance or batch.matrix.dtype == np.float32:
        return batch.provenance
    return {**batch.provenance, "dtype": batch.matrix.dtype.name}


def _jsonl_lines(batch: VectorBatch, provenance: dict, with_embedding: bool) -> Iterator[bytes]:
    matrix = np.ascontiguousarray(batch.matrix)
    for rec_id, fields, row in zip(batch.ids, batch.fields, matrix):
        record = {"id": rec_id, **fields}
        if with_embedding:
            record[EMBEDDING_KEY] = row
        record[PROVENANCE_KEY] = provenance
        yield orjson.dumps(record, option=_JSON_OPTIONS) + b"\n"


class _NpyOutput:
    def __init__(self, path: str):
        self.path = path
        self._stack = contextlib.ExitStack()
        # Entered matrix first, so that on commit the sidecar is renamed first and the matrix last.
        self._matrix = self._stack.enter_context(atomic_file(path))
        self._sidecar = self._stack.enter_context(atomic_file(sidecar_path(path)))
        self._dtype: np.dtype | None = None
        self._width = 0
        self._rows = 0
        self._open = True

    def write(self, batch: VectorBatch, provenance: dict) -> None:
        with self._storage_errors():
            if self._dtype is None:
                self._dtype, self._width = batch.matrix.dtype, batch.matrix.shape[1]
                self._matrix.write(_npy_header(self._dtype, 0, self._width))
            self._matrix.write(np.ascontiguousarray(batch.matrix).tobytes())
            self._sidecar.write(b"".join(_jsonl_lines(batch, provenance, with_embedding=False)))
        self._rows += len(batch)

    def commit(self) -> None:
        if self._dtype is None:  # nothing written: still leave a valid (empty) pair of files
            self._dtype = np.dtype(np.float32)
        with self._storage_errors():
            self._matrix.seek(0)
            self._matrix.write(_npy_header(self._dtype, self._rows, self._width))
            self._matrix.seek(0, os.SEEK_END)
        self._open = False
        with signals_held():  # both renames, or a Ctrl-C would leave the new sidecar beside the old matrix
            self._stack.close()

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        # The temp files' own atomic_file blocks are not on the stack of these writes, so a full
        # disk is turned into vecpipe's storage error (exit 6) here; abort() then removes them.
        try:
            yield
        except OSError as exc:
            raise storage_error(exc, self.path) from exc

    def discard(self) -> None:
        if self._open:
            self._open = False
            # Unwinding with an exception makes each atomic_file delete its temp file.
            self._stack.__exit__(RuntimeError, RuntimeError("discarded"), None)


def _npy_header(dtype: np.dtype, rows: int, width: int) -> bytes:
    """A version 1.0 .npy header padded to a fixed size, so it can be rewritten in place."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, width)})
    body = text.encode("latin1")
    prefix = NPY_MAGIC + b"\x01\x00"
    length = _NPY_HEADER_BYTES - len(prefix) - 2
    return prefix + length.to_bytes(2, "little") + body.ljust(length - 1) + b"\n"


@contextlib.contextmanager
def open_vector_output(fmt: str, path: str | None, stdout: IO[bytes], part_rows: int | None = None) -> Iterator[VectorWriter]:
    """A VectorWriter to `path` (atomically) or to `stdout`; committed only if the block succeeds.

    With fmt "npy", a path ending in `.npy` gets one matrix and its sidecar, any other a
    directory of parts (of `part_rows` rows, default about PART_BYTES each) and a manifest."""
    if fmt == "npy":
        with VectorWriter(None, "npy", npy_path=path, part_rows=part_rows) as writer:
            yield writer
        return
    if path is None or path == "-":
        with VectorWriter(stdout) as writer:
            yield writer
        return
    with atomic_file(path) as fh, VectorWriter(fh) as writer:
        yield writer


# ---------------------------------------------------------------------------------------------
# A directory of .npy parts: outputs too big for one file (`--format npy -o DIR`)

PARTS_MANIFEST = "manifest.json"
PARTS_FORMAT = "vecpipe vector parts"
PART_BYTES = 1 << 30  # a part's matrix stays near 1 GiB: small enough to copy, mmap or load whole


def writes_parts(npy_path: str) -> bool:
    """`--format npy -o NAME` writes one matrix for a NAME ending in .npy, a directory of parts for any other."""
    return not npy_path.endswith(".npy")


def _npy_output(path: str, part_rows: int | None) -> "_NpyOutput | _PartsOutput":
    return _PartsOutput(path, part_rows) if writes_parts(path) else _NpyOutput(path)


def part_name(number: int) -> str:
    return f"part-{number:05d}.npy"


class _PartsOutput:
    """`DIR/part-NNNNN.npy` + sidecars and `DIR/manifest.json`, written in a temp directory beside
    DIR that replaces it at commit. An existing DIR is replaced only if it holds vector parts."""

    def __init__(self, path: str, part_rows: int | None):
        self.path = path
        self.target = Path(os.path.realpath(path))  # through a symlink: replace what it points at, keep the link
        self.part_rows = part_rows
        _check_replaceable(self.target)
        with signals_held():  # a Ctrl-C now would leave a temp directory nobody knows of
            try:
                self._tmp = make_temp_dir_beside(self.target)
            except OSError as exc:
                raise storage_error(exc, path) from None
        self._part: _NpyOutput | None = None
        self._parts: list[dict] = []
        self._shape: dict | None = None

    def write(self, batch: VectorBatch, provenance: dict) -> None:
        with self._named_as_target():
            self._write(batch, provenance)

    @contextlib.contextmanager
    def _named_as_target(self) -> Iterator[None]:
        """A refused write names the directory asked for, not the part inside its temp directory."""
        try:
            yield
        except StorageError as exc:
            raise StorageError(exc.message, self.path) from exc

    def _write(self, batch: VectorBatch, provenance: dict) -> None:
        if self._shape is None:
            self._shape = {"dtype": batch.dtype, "width": int(batch.matrix.shape[1]), "provenance": provenance}
            self.part_rows = self.part_rows or max(1, PART_BYTES // max(batch.matrix[:1].nbytes, 1))
        start = 0
        while start < len(batch):
            if self._part is None or self._parts[-1]["rows"] == self.part_rows:
                self._next_part()
            end = start + min(len(batch) - start, self.part_rows - self._parts[-1]["rows"])
            self._part.write(batch.take(slice(start, end)), provenance)
            self._parts[-1]["rows"] += end - start
            start = end

    def _next_part(self) -> None:
        if self._part is not None:
            self._part.commit()
        name = part_name(len(self._parts))
        self._part = _NpyOutput(str(self._tmp / name))
        self._parts.append({"matrix": name, "rows": 0})

    def commit(self) -> None:
        if self._part is not None:
            with self._named_as_target():
                self._part.commit()
            self._part = None
        manifest = {"format": PARTS_FORMAT, "version": 1, "rows": sum(p["rows"] for p in self._parts), **(self._shape or {}), "parts": self._parts}
        try:
            write_bytes_atomic(self._tmp / PARTS_MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
            with signals_held():
                _replace_dir(self._tmp, self.target)
        except OSError as exc:
            raise storage_error(exc, self.path) from exc

    def discard(self) -> None:
        if self._part is not None:
            self._part.discard()
            self._part = None
        shutil.rmtree(self._tmp, ignore_errors=True)


def _check_replaceable(target: Path) -> None:
    """Refuse to put parts where a file, or a directory of something else, already is."""
    if target.is_dir():
        if any(target.iterdir()) and not (target / PARTS_MANIFEST).is_file():
            raise StorageError(f"is a directory that holds no vector parts ({PARTS_MANIFEST}); refusing to replace it", str(target))
    elif target.exists() or target.is_symlink():
        raise StorageError("exists and is not a directory: name a .npy file for one matrix, or a directory for parts", str(target))


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`, moving an old `target` aside first and deleting it after."""
    old = None
    if target.is_dir():
        old = target.with_name(f".{target.name}.old.{os.getpid()}.tmp")
        os.rename(target, old)
    os.rename(new, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _parts_batches(path: str, batch_size: int, first_position: int, note: Note) -> Iterator[VectorBatch]:
    manifest_path = os.path.join(path, PARTS_MANIFEST)
    parts = _read_parts_manifest(manifest_path)
    first: VectorBatch | None = None
    position = first_position
    for part in parts:
        matrix = os.path.join(path, part["matrix"])
        rows = 0
        with _open_file(matrix) as fh:  # a part is a file: a directory named like one is refused, not followed
            for batch in read_vectors(matrix, fh, batch_size, first_position=position, note=note):
                first = _agreeing(first, batch)
                rows += len(batch)
                yield batch
        if rows != part["rows"]:
            raise DataError(f"holds {rows} rows but {PARTS_MANIFEST} says {part['rows']}", matrix)
        position += rows


def _read_parts_manifest(manifest_path: str) -> list[dict]:
    """The parts listed in a parts directory's manifest, each a plain file name in the directory."""
    directory = os.path.dirname(manifest_path)
    try:
        with open(manifest_path, "rb") as fh:
            manifest = orjson.loads(fh.read())
    except FileNotFoundError:
        raise DataError(f"is a directory without {PARTS_MANIFEST}: not a set of vector parts written by `--format npy -o DIR`", directory) from None
    except OSError as exc:
        raise DataError(exc.strerror or "cannot read", manifest_path) from None
    except orjson.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", manifest_path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != PARTS_FORMAT or not isinstance(manifest.get("parts"), list):
        raise DataError(f"not a vector parts manifest (expected \"format\": \"{PARTS_FORMAT}\" and a \"parts\" list)", manifest_path)
    for number, part in enumerate(manifest["parts"]):
        name = part.get("matrix") if isinstance(part, dict) else None
        rows = part.get("rows") if isinstance(part, dict) else None
        if not isinstance(name, str) or not name.endswith(".npy") or os.path.basename(name) != name or name.startswith("."):
            raise DataError(f"part {number} must name a .npy file inside the directory, not {name!r}", manifest_path)
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise DataError(f"part {number} ({name}) needs a row count, not {rows!r}", manifest_path)
    return manifest["parts"]
