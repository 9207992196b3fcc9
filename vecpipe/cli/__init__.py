"""The `vecpipe` command: wires one module per subcommand into a typer app."""
from __future__ import annotations

import importlib

import typer

from vecpipe import __version__

EXIT_CODES_HELP = (
    "Exit codes: 0 success (also when the reader of stdout closes early, as `| head` does); "
    "1 internal error (a bug: please report it); 2 bad usage; 3 bad input data; "
    "4 model missing, unverifiable or not convertible; 5 index locked, corrupt or mismatched; "
    "6 write failed (disk full, permissions); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM)."
)

app = typer.Typer(
    name="vecpipe",
    help="Small Unix-style commands for text embeddings: embed, index, search, quantize, truncate, eval.\n\n"
    "Records stream as JSONL (or .npy + sidecar) through stdin and stdout; `-` means stdin.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module defines `register(app)`; the order here is the order in --help.
COMMAND_MODULES = ["embed", "index", "search", "truncate", "quantize", "eval", "models", "completion"]


def _version(value: bool) -> None:
    if value:
        print(f"vecpipe {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


for _name in COMMAND_MODULES:
    importlib.import_module(f"vecpipe.cli.{_name}").register(app)


def _one_line_usage_errors() -> None:
    """Bad options and arguments as one line, like every other refusal: click prints the usage,
    a hint and the error on four lines."""
    import sys

    try:  # typer >= 0.20 vendors click
        from typer._click.exceptions import UsageError
    except ImportError:
        from click.exceptions import UsageError

    def show(self, file=None) -> None:
        command = self.ctx.command_path if self.ctx is not None else "vecpipe"
        message = " ".join(self.format_message().split())
        print(f"{command}: {message} (see `{command} -h`)", file=file or sys.stderr)

    UsageError.show = show


_one_line_usage_errors()


def main() -> None:
    import signal

    from vecpipe.cli.common import interrupted, raise_terminated
    from vecpipe.cli.completion import answering_completion

    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt from here on (launch.py answered it until now)
    signal.signal(signal.SIGTERM, raise_terminated)  # unwinds like Ctrl-C: temp files removed, one line, exit 143
    try:
        answering_completion()
        app(prog_name="vecpipe")
    except KeyboardInterrupt as exc:  # while click parses, before a command's own handler: nothing written yet
        raise SystemExit(interrupted(exc).exit_code) from None
