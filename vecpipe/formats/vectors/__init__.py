"""Vector records: JSONL lines, or an .npy matrix with a JSONL sidecar, or a directory of .npy
parts (see docs/FORMATS.md). This package's front door: every other package imports from here.

A JSONL record is `{"id": ..., <fields>, "embedding": [...], "vecpipe": {provenance}}`. The
provenance is repeated on every line so that `sort`, `shuf`, `head` and `cat a b` keep a stream
valid; it must be identical on every line, which is how a stage notices two models mixed.

The .npy form is the matrix in `X.npy` and, in `X.meta.jsonl`, one line per row with the same
objects minus `embedding`. Readers sniff the npy magic, so either form may arrive on stdin.

    common.py   record keys, sniffing, pushing back bytes already read
    jsonl.py    JSONL records, read and written
    npy.py      .npy + sidecar, read and written
    parts.py    directories of .npy parts and their manifest
    reading.py  one input of any of these forms
    multi.py    several inputs as one stream (stdin and named pipes spooled when read twice)
    writers.py  VectorWriter: JSONL, .npy or parts, committed atomically
"""
from vecpipe.core.vector_batch import FLOAT_DTYPES, PACKED_DTYPES, STORAGE, VectorBatch, first_nonfinite_row, require_float, stored_width
from vecpipe.formats.vectors.common import concat_batches, first_line, holds_vectors, unread
from vecpipe.formats.vectors.multi import StdinSource, VectorInputs
from vecpipe.formats.vectors.npy import sidecar_path
from vecpipe.formats.vectors.parts import writes_parts
from vecpipe.formats.vectors.reading import read_matrix, read_vectors
from vecpipe.formats.vectors.writers import VectorWriter, open_vector_output

__all__ = [
    "FLOAT_DTYPES", "PACKED_DTYPES", "STORAGE", "StdinSource", "VectorBatch", "VectorInputs", "VectorWriter", "concat_batches",
    "first_line", "first_nonfinite_row", "holds_vectors", "open_vector_output", "read_matrix", "read_vectors", "require_float",
    "sidecar_path", "stored_width", "unread", "writes_parts",
]
