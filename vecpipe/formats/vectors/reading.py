"""Reading one vector input, JSONL or .npy (with its sidecar), a stream or a directory of parts."""
from __future__ import annotations

import os
import sys
from typing import IO, Iterator

from vecpipe.core.errors import DataError
from vecpipe.core.vector_batch import STDIN_NAME, VectorBatch
from vecpipe.formats.inputs import open_input
from vecpipe.formats.vectors.common import NPY_MAGIC, Note, agreeing, concat_batches, note_to_stderr, sniff
from vecpipe.formats.vectors.jsonl import jsonl_batches
from vecpipe.formats.vectors.npy import npy_file_batches, npy_stream_batches
from vecpipe.formats.vectors.parts import PARTS_MANIFEST, read_parts_manifest


def read_vectors(
    path: str,
    stream: IO[bytes] | None = None,
    batch_size: int = 4096,
    *,
    first_position: int = 0,
    note: Note = note_to_stderr,
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
        with open_input(path) as fh:
            yield from read_vectors(path, fh, batch_size, first_position=first_position, note=note)
        return
    if not stream.seekable():  # a named pipe, e.g. bash's <(vecpipe embed ...)
        yield from _read_stream(stream, path, batch_size, first_position, note)
    elif stream.read(len(NPY_MAGIC)) == NPY_MAGIC:
        yield from npy_file_batches(path, stream, batch_size, first_position, note)
    else:
        stream.seek(0)
        yield from jsonl_batches(stream, path, batch_size, first_position)


def _read_stream(stream: IO[bytes], source: str, batch_size: int, first_position: int, note: Note) -> Iterator[VectorBatch]:
    head, stream = sniff(stream)
    if head.startswith(NPY_MAGIC):
        batches = npy_stream_batches(stream, source, batch_size, first_position)
        first = next(batches, None)  # the header is read and checked first: a broken one is the only line said
        note(f"{source}: a streamed .npy has no sidecar: ids are row positions and provenance is unknown")
        if first is not None:
            yield first
        yield from batches
    else:
        yield from jsonl_batches(stream, source, batch_size, first_position)


def read_matrix(path: str, stream: IO[bytes] | None = None, note: Note = note_to_stderr) -> VectorBatch:
    """Every row of a (small) vector file as one VectorBatch: calibration samples, PCA samples."""
    return concat_batches(list(read_vectors(path, stream, note=note)))


def _parts_batches(path: str, batch_size: int, first_position: int, note: Note) -> Iterator[VectorBatch]:
    manifest_path = os.path.join(path, PARTS_MANIFEST)
    parts = read_parts_manifest(manifest_path)
    first: VectorBatch | None = None
    position = first_position
    for part in parts:
        matrix = os.path.join(path, part["matrix"])
        rows = 0
        with open_input(matrix) as fh:  # a part is a file: a directory named like one is refused, not followed
            for batch in read_vectors(matrix, fh, batch_size, first_position=position, note=note):
                first = agreeing(first, batch)
                rows += len(batch)
                yield batch
        if rows != part["rows"]:
            raise DataError(f"holds {rows} rows but {PARTS_MANIFEST} says {part['rows']}", matrix)
        position += rows
