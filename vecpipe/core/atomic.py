"""Crash-safe writes: everything is written beside its target and renamed into place.

A reader (or a process killed with SIGKILL half-way) therefore sees either the
old file or directory or the new one, never a mix.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from vecpipe.core.errors import IndexStoreError, StorageError, storage_error


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(target: os.PathLike | str, mode: str = "wb") -> Iterator:
    """Open a temp file next to `target`; on success it replaces `target`.

    A target that exists but is not a regular file (a FIFO, /dev/null, a terminal) is written in
    place: renaming a file over it would replace the device or pipe itself."""
    target = Path(target)
    if _is_special(target):
        yield from _in_place(target, mode)
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the parent is a file, unwritable, or not there to make
        raise storage_error(exc, target) from None
    tmp = None
    try:
        with signals_held():  # a Ctrl-C now would leave a temp file nobody knows of
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        # mkstemp creates 0600 files; honour the umask like a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise storage_error(exc, target) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait (blocked for this thread) while a temp path is created and handed to
    the code that removes it: they are delivered on leaving, inside that code's cleanup."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _is_special(target: Path) -> bool:
    try:
        info = os.stat(target)
    except OSError:
        return False
    if stat.S_ISDIR(info.st_mode):
        raise StorageError("is a directory, not a file to write", str(target))
    return not stat.S_ISREG(info.st_mode)


def _in_place(target: Path, mode: str) -> Iterator:
    try:
        with open(target, mode) as fh:
            yield fh
            fh.flush()
    except OSError as exc:
        raise storage_error(exc, target) from exc


def write_bytes_atomic(target: os.PathLike | str, data: bytes) -> None:
    with atomic_file(target) as fh:
        fh.write(data)


def _unlink_quietly(path: str | None) -> None:
    """Remove a temp file, if one was made (None: interrupted before it was)."""
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def make_temp_dir_beside(target: Path) -> Path:
    """A fresh directory next to `target`, on the same file system so rename is atomic."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


class DirLock:
    """An exclusive, non-blocking writer lock (flock on `<dir>.lock` beside the directory).

    The kernel drops flock locks when a process dies, so a kill -9 never leaves a
    stale lock behind.
    """

    def __init__(self, target: Path):
        # Beside the real directory, whatever spelling reached it (a symlink, `..`): two writers
        # through two names of one index must meet at one lock.
        real = Path(os.path.realpath(target))
        self.path = real.with_name(f".{real.name}.lock")
        self.target = target
        self._fd: int | None = None

    def __enter__(self) -> "DirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IndexStoreError("another vecpipe process is writing here; try again when it has finished", str(self.target)) from None
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
