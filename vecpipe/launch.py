"""The `vecpipe` executable's first code: signals are answered before anything heavy is imported.

Importing the CLI (typer, click) takes tens of milliseconds; a Ctrl-C or SIGTERM in that window
would print Python's KeyboardInterrupt traceback or skip cleanup. Until the CLI installs its own
handlers (cli.main), either signal is one line and the documented exit status: nothing has been
written yet, so there is nothing to clean up.
"""
from __future__ import annotations

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
    raise SystemExit(code)


def main() -> None:
    for sig in EXIT_BY_SIGNAL:
        signal.signal(sig, _early_exit)
    from vecpipe.cli import main as cli_main

    cli_main()
