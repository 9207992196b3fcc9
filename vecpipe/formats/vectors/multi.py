"""Several vector inputs read as one stream, stdin and named pipes spooled when read twice."""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from typing import IO, Iterator

from vecpipe.core.errors import DataError
from vecpipe.core.vector_batch import VectorBatch
from vecpipe.formats.vectors.common import Note, agreeing, note_to_stderr
from vecpipe.formats.vectors.reading import read_vectors


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

    def __init__(self, paths: list[str], stdin: StdinSource | None = None, batch_size: int = 4096, note: Note = note_to_stderr):
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
                first = agreeing(first, batch)
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
