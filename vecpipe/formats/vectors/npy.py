""".npy matrices: reading them (memory-mapped, with the JSONL sidecar of ids, fields and
provenance) and writing them with their sidecar."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

import numpy as np

from vecpipe.core.atomic import atomic_file, signals_held
from vecpipe.core.errors import DataError, storage_error
from vecpipe.core.vector_batch import STORAGE, VectorBatch
from vecpipe.formats.text import BOM, parse_record
from vecpipe.formats.inputs import open_input
from vecpipe.formats.vectors.common import NPY_MAGIC, Note, describe_difference, read_exactly
from vecpipe.formats.vectors.jsonl import StreamShape, cast_checked, first_shape, jsonl_lines, split_record


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


def npy_file_batches(path: str, fh: IO[bytes], batch_size: int, first_position: int, note: Note) -> Iterator[VectorBatch]:
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
    with open_input(meta) as sidecar:
        yield from _npy_batches(blocks, header, _SidecarReader(sidecar, meta, first_position), path, first_position)


def _check_npy_size(header: _NpyHeader, size: int, source: str) -> None:
    expected = header.offset + header.rows * header.row_bytes
    if size < expected:
        whole = max(0, size - header.offset) // max(header.row_bytes, 1)
        raise DataError(f"truncated .npy: the header promises {header.rows} rows, the file holds {whole}", source)
    if size > expected:
        raise DataError(f"{size - expected} unexpected bytes after the .npy matrix", source)


def npy_stream_batches(stream: IO[bytes], source: str, batch_size: int, first_position: int) -> Iterator[VectorBatch]:
    header = _read_npy_header(stream, source)
    if header.fortran:
        raise DataError("a Fortran-ordered .npy cannot be streamed; save it C-ordered or pass it as a file", source)
    yield from _npy_batches(_stream_blocks(stream, header, batch_size, source), header, None, source, first_position)


def _stream_blocks(stream: IO[bytes], header: _NpyHeader, batch_size: int, source: str) -> Iterator[np.ndarray]:
    for start in range(0, header.rows, batch_size):
        rows = min(batch_size, header.rows - start)
        data = read_exactly(stream, rows * header.row_bytes)
        if len(data) < rows * header.row_bytes:
            whole = start + len(data) // max(header.row_bytes, 1)
            raise DataError(f"truncated .npy: the header promises {header.rows} rows, the stream holds {whole}", source)
        yield np.frombuffer(data, dtype=header.dtype).reshape(rows, header.width)
    if stream.read(1):
        raise DataError("unexpected bytes after the .npy matrix", source)


def _npy_batches(blocks: Iterable[np.ndarray], header: _NpyHeader, sidecar: "_SidecarReader | None",
                 source: str, first_position: int) -> Iterator[VectorBatch]:
    shape: StreamShape | None = None
    row = 0
    for block in blocks:
        n = len(block)
        lines = list(range(row + 1, row + n + 1))
        if sidecar is None:
            ids, fields, provenance = list(range(first_position + row, first_position + row + n)), [{} for _ in range(n)], {}
        else:
            ids, fields, provenance = sidecar.take(n, header.rows)
        if shape is None:
            shape = first_shape(provenance, header.dtype, header.width, sidecar.source if sidecar else source, 1)
            _check_npy_dtype(shape.dtype, header.dtype, source)
        matrix = cast_checked(np.ascontiguousarray(block), shape.dtype, lines, source)
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


_NPY_HEADER_BYTES = 128  # room for any row count; the header is rewritten with the real one at the end


class NpyOutput:
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
            self._sidecar.write(b"".join(jsonl_lines(batch, provenance, with_embedding=False)))
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
