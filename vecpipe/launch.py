"""The `vecpipe` executable's first code: signals are answered before anything heavy is imported.

Importing the CLI (typer, click) takes tens of milliseconds; a Ctrl-C or SIGTERM in that window
would print Python's KeyboardInterrupt traceback or skip cleanup. Until the CLI installs its own
handlers (cli.main), either signal is one line and the documented exit status: nothing has been
written yet, so there is nothing to clean up.

After an interruption the process leaves with os._exit once the command has unwound (its temp
files are gone by then): a signal that landed inside a C extension's import can leave a module
half-initialized, and the interpreter's own shutdown then crashed on it (SIGSEGV, seen once in 24
random-moment signals), which a user would see as a core dump instead of exit 130/143.

A command that finished with nothing left to finish (it says so: cli/common.py) also leaves with
os._exit, once stdout and stderr are flushed: the interpreter's teardown would spend 60-80 ms
freeing onnxruntime, numpy and the tokenizer, as long as the rest of a one-off search's own work.
"""
from __future__ import annotations

import os
import signal
import sys

EXIT_BY_SIGNAL = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}


def _early_exit(signum, frame) -> None:
    code, word = EXIT_BY_SIGNAL[signum]
    try:
        sys.stderr.write(f"vecpipe: {word}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed: the status alone says it
        pass
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def main() -> None:
    for sig in EXIT_BY_SIGNAL:
        signal.signal(sig, _early_exit)
    from vecpipe.cli import main as cli_main

    try:
        cli_main()
    except SystemExit as exc:
        if exc.code in {code for code, _ in EXIT_BY_SIGNAL.values()}:  # interrupted, and unwound: skip the interpreter's shutdown
            _flush()
            os._exit(exc.code)
        if exc.code in (0, None) and _teardown_is_skippable() and _flushed():
            os._exit(0)  # the command said nothing is left to finish (cli/common.py: nothing_left_to_finish)
        raise


def _teardown_is_skippable() -> bool:
    from vecpipe.cli.common import teardown_is_skippable

    return teardown_is_skippable()


def _flushed() -> bool:
    """Whether stdout and stderr took what was left in their buffers; if not, the interpreter's own
    exit reports it as it always has."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return False
    return True
