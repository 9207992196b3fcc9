"""What every command shares: error reporting, streams, progress and terminal detection.

Only the standard library and typer are imported at module level, so that
`vecpipe --help` stays fast; numpy, onnxruntime and rich load when a command runs.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from dataclasses import dataclass
from typing import IO, Callable, Iterator

import typer

from vecpipe.core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, VecpipeError, storage_error
from vecpipe.formats.inputs import STDIN, input_name, open_input  # noqa: F401 (what every command opens its inputs with)



try:  # typer >= 0.20 vendors click
    from typer._click.globals import get_current_context
except ImportError:  # older typer runs on click itself
    from click import get_current_context


def command_name() -> str:
    """`vecpipe embed`, `vecpipe index build`, ...: the prefix of every message to humans."""
    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "vecpipe"


def say(message: str) -> None:
    """A line for humans, on stderr."""
    print(f"{command_name()}: {message}", file=sys.stderr, flush=True)


def fail(exc: VecpipeError) -> "typer.Exit":
    say(str(exc))
    return typer.Exit(exc.exit_code)


_nothing_left_to_finish = False


def nothing_left_to_finish() -> None:
    """Said by a command that has flushed everything it wrote and closed everything it opened, and
    started no process: `vecpipe` (launch.py) then leaves without the interpreter's teardown, which
    spends 60-80 ms freeing onnxruntime, numpy and the tokenizer, a fifth of a one-off search."""
    global _nothing_left_to_finish
    _nothing_left_to_finish = True


def teardown_is_skippable() -> bool:
    return _nothing_left_to_finish


def _silence_stdout() -> None:
    # After EPIPE, Python would complain again when it flushes stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def handles_errors(fn: Callable) -> Callable:
    """Turn user errors into one line and an exit code; `| head` exits quietly with 0."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VecpipeError as exc:
            raise fail(exc) from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(0) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): temp files are gone by now
            raise interrupted(exc) from None
        except OSError as exc:  # an OS refusal no narrower handler named: still one line, exit 6
            raise fail(storage_error(exc, exc.filename or "vecpipe")) from None
        except Exception as exc:  # a bug, not a user error: still one line (exit 1); VECPIPE_DEBUG=1 shows the traceback
            signal_inside = _chained_interruption(exc)
            if signal_inside is not None:  # a C extension turned Ctrl-C into its own error (ImportError in module init)
                raise interrupted(signal_inside) from None
            if os.environ.get("VECPIPE_DEBUG"):
                raise
            first = (str(exc).splitlines() or [""])[0][:200]
            say(f"internal error ({type(exc).__name__}: {first}); this is a bug in vecpipe: please report it with the traceback "
                "that VECPIPE_DEBUG=1 prints")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def interrupted(exc: KeyboardInterrupt) -> "typer.Exit":
    terminated = isinstance(exc, Terminated)
    say("terminated" if terminated else "interrupted")
    return typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)


def _chained_interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind an exception, when it was raised while handling one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that the same unwinding removes every temp file."""


def raise_terminated(signum, frame) -> None:
    raise Terminated


def _interruption(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


class WholeRecordWrites:
    """Ctrl-C (or SIGTERM) stops at once, except in the middle of writing a batch of records.

    A signal that arrives while a batch is being written is held until the batch is out, so a
    consumer of stdout never sees half a record; the command then exits with 130 (143 for SIGTERM).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._writing = False
        self._pending: int | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self._writing:
            self._pending = signum
        else:
            raise _interruption(signum)

    def __enter__(self) -> "WholeRecordWrites":
        self._previous = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
        if self._pending is not None:
            raise _interruption(self._pending)


@dataclass
class VectorOutput:
    """Where a command's vectors go: `--format` and `-o` (stdout when no path or `-`)."""

    fmt: str = "jsonl"
    path: str | None = None
    part_rows: int | None = None  # --format npy -o DIR: rows per part (default: parts of about 1 GiB)

    def open(self):
        """A VectorWriter, committed (renamed into place) only if the block succeeds."""
        from vecpipe.formats.vectors import open_vector_output

        return open_vector_output(self.fmt, self.path, binary_stdout(), self.part_rows)


def binary_stdout() -> IO[bytes]:
    return sys.stdout.buffer


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def show_progress(quiet: bool) -> bool:
    return not quiet and stderr_is_terminal()


def make_progress(quiet: bool):
    """A rich progress bar on stderr, or None when stderr is not a terminal or --quiet is set."""
    if not show_progress(quiet):
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)  # rich honours NO_COLOR by itself
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} done"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def print_table(title: str | None, columns: list[str], rows: list[list]) -> None:
    """A rich table on stdout, for terminals only."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)
