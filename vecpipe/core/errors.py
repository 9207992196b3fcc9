"""Error types shared by the library and the CLI.

Each error carries the exit code the CLI uses for it, so a Makefile can tell
bad data (3) from a missing model (4) or a busy index (5). The full table lives
in docs/RELIABILITY.md and in `vecpipe --help`.
"""
from __future__ import annotations

import errno
import os

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_MODEL = 4
EXIT_INDEX = 5
EXIT_IO = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM


class VecpipeError(Exception):
    """A user-facing error: printed as one line, never as a traceback."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.source is not None:
            where = f"{self.source}:{self.line}: " if self.line is not None else f"{self.source}: "
        return where + self.message


class UsageError(VecpipeError):
    """Options that contradict each other or the data (e.g. --dim larger than the vectors)."""

    exit_code = EXIT_USAGE


class DataError(VecpipeError):
    """Malformed input: bad JSON, bad UTF-8, missing fields, NaN vectors, mismatched files."""

    exit_code = EXIT_DATA


class ModelError(VecpipeError):
    """A model that cannot be found, verified, converted or loaded."""

    exit_code = EXIT_MODEL


class IndexStoreError(VecpipeError):
    """An index that is locked, corrupt, from the future, or mismatched with a query."""

    exit_code = EXIT_INDEX


class StorageError(VecpipeError):
    """The file system refused a write (disk full, permissions)."""

    exit_code = EXIT_IO


def storage_error(exc: OSError, path: os.PathLike | str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return StorageError(f"no space left to write ({exc.strerror})", str(path))
    return StorageError(exc.strerror or str(exc), str(path))
