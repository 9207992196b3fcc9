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

# Each module defines `register(app)`; the order here is the order in --help.
COMMAND_MODULES = ["embed", "index", "search", "truncate", "quantize", "eval", "models", "completion"]


def _version(value: bool) -> None:
    if value:
        print(f"vecpipe {__version__}")
        raise typer.Exit()


def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


def build_app(commands: list[str] = COMMAND_MODULES) -> typer.Typer:
    """The `vecpipe` app with `commands` registered (their modules imported)."""
    built = typer.Typer(
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
    built.callback()(root)
    for name in commands:
        importlib.import_module(f"vecpipe.cli.{name}").register(built)
    return built


def __getattr__(name: str):
    """`from vecpipe.cli import app`: every command, built on first use (tests, docs)."""
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _commands_for(argv: list[str], completing: bool) -> list[str]:
    """Only the named command's module when argv names one: typer turns every registered command
    into click objects at each start (25-35 ms for all of them), which a one-off search pays."""
    if not completing and len(argv) > 1 and argv[1] in COMMAND_MODULES:
        return [argv[1]]
    return COMMAND_MODULES


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
    import sys

    from vecpipe.cli.common import interrupted, raise_terminated
    from vecpipe.cli.completion import answering_completion

    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt from here on (launch.py answered it until now)
    signal.signal(signal.SIGTERM, raise_terminated)  # unwinds like Ctrl-C: temp files removed, one line, exit 143
    try:
        completing = answering_completion()
        build_app(_commands_for(sys.argv, completing))(prog_name="vecpipe")
    except KeyboardInterrupt as exc:  # while click parses, before a command's own handler: nothing written yet
        raise SystemExit(interrupted(exc).exit_code) from None
