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


def _flush() -> bool:
    """Flush stdout and stderr; whether both took what was left in their buffers."""
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            flushed = False
    return flushed


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
        from vecpipe.cli.common import teardown_is_skippable

        # The command said nothing is left to finish; an output that cannot be flushed is left to the
        # interpreter's own exit, which reports it as it always has.
        if exc.code in (0, None) and teardown_is_skippable() and _flush():
            os._exit(0)
        raise
