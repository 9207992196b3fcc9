"""Opening a command's inputs: a named file, or `-` for standard input."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import IO, Iterator

from vecpipe.core.errors import DataError

STDIN = "-"


def input_name(path: str) -> str:
    """How error messages name an input."""
    return "<stdin>" if path == STDIN else path


@contextlib.contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """A binary stream for `path`; `-` is stdin."""
    if path == STDIN:
        yield from _stdin()
        return
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(exc.strerror or "cannot open", path) from None
    with fh:
        yield fh


def _stdin() -> Iterator[IO[bytes]]:
    """Standard input through a reader of its own (over a dup of fd 0), not sys.stdin.buffer.

    A prefetching reader thread may be blocked in a read when Ctrl-C or SIGTERM ends the command;
    had it been sys.stdin.buffer, the interpreter could not take that buffer's lock at shutdown and
    aborted ("Fatal Python error ... could not acquire lock for <stdin>"). This reader is not
    closed when the command is interrupted, for the same reason: the process is ending anyway."""
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise DataError("standard input is closed", "<stdin>")
    try:
        fd = os.dup(sys.stdin.fileno())
    except (ValueError, OSError):  # an in-memory stdin (tests) or no descriptor: nothing can block in it
        yield sys.stdin.buffer
        return
    reader = open(fd, "rb")
    yield reader
    reader.close()
