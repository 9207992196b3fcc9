"""What the vector codecs share: the record keys, the npy magic, sniffing an input's format, and
pushing back bytes already read."""
from __future__ import annotations

import io
import sys
from typing import IO, Callable

import numpy as np
import orjson

from vecpipe.core.errors import DataError
from vecpipe.core.vector_batch import VectorBatch


NPY_MAGIC = b"\x93NUMPY"


PROVENANCE_KEY = "vecpipe"


EMBEDDING_KEY = "embedding"


Note = Callable[[str], None]


def note_to_stderr(message: str) -> None:
    print(f"vecpipe: {message}", file=sys.stderr, flush=True)


def write_all(stream: IO[bytes], data: bytes) -> None:
    """Write every byte: a buffered write to a pipe returns early when a signal interrupts it."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        view = view[written if written is not None else len(view) :]


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


def sniff(stream: IO[bytes]) -> tuple[bytes, IO[bytes]]:
    head = read_exactly(stream, len(NPY_MAGIC))
    return head, unread(head, stream)


def describe_difference(first: dict, other: dict) -> str:
    """A short human account of how two provenance objects differ: `model 'a' vs 'b'`."""
    for key in list(first) + [k for k in other if k not in first]:
        if first.get(key) != other.get(key):
            return f"{key} {first.get(key, '(none)')!r} vs {other.get(key, '(none)')!r}"
    return "(same keys, different order)"


def read_exactly(stream: IO[bytes], size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def agreeing(first: VectorBatch | None, batch: VectorBatch) -> VectorBatch:
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
