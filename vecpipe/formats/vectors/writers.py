"""Writing vector records: JSONL to a stream or file, or .npy (+ sidecar, or parts) via npy.py and parts.py."""
from __future__ import annotations

import contextlib
from typing import IO, Iterator

from vecpipe.core.atomic import atomic_file
from vecpipe.core.errors import UsageError
from vecpipe.core.vector_batch import VectorBatch
from vecpipe.formats.vectors.common import write_all
from vecpipe.formats.vectors.jsonl import completed_provenance, jsonl_lines
from vecpipe.formats.vectors.npy import NpyOutput
from vecpipe.formats.vectors.parts import PartsOutput, writes_parts


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
        provenance = completed_provenance(batch)
        self._check_consistent(batch, provenance)
        if self._npy is not None:
            self._npy.write(batch, provenance)
        else:
            write_all(self._stream, b"".join(jsonl_lines(batch, provenance, with_embedding=True)))
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


def _npy_output(path: str, part_rows: int | None) -> "NpyOutput | PartsOutput":
    return PartsOutput(path, part_rows) if writes_parts(path) else NpyOutput(path)
