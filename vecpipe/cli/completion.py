"""`vecpipe completion bash|zsh|fish`: the shell completion script, generated from the same typer app.

The script calls `vecpipe` back with `_VECPIPE_COMPLETE` set; click then answers with the
commands and options that fit. Model options offer the built-in and cached model names, and
index arguments offer index directories: both are a directory listing, cheap enough to run
on every Tab.
"""
from __future__ import annotations

import os
from pathlib import Path

import typer

COMPLETE_VAR = "_VECPIPE_COMPLETE"
SHELLS = ("bash", "zsh", "fish")

HELP = """Print the shell completion script for bash, zsh or fish.

Install it once:

  vecpipe completion bash > ~/.local/share/bash-completion/completions/vecpipe

  vecpipe completion zsh > "${fpath[1]}/_vecpipe"

  vecpipe completion fish > ~/.config/fish/completions/vecpipe.fish
"""


def register(app: typer.Typer) -> None:
    app.command("completion", help=HELP)(completion)


def completion(shell: str = typer.Argument(..., metavar="bash|zsh|fish", help="The shell to complete in.")) -> None:
    from typer._completion_shared import get_completion_script

    if shell not in SHELLS:
        from vecpipe.cli.common import fail
        from vecpipe.core.errors import UsageError

        raise fail(UsageError(f"unknown shell {shell!r}; choose one of {', '.join(SHELLS)}"))
    print(get_completion_script(prog_name="vecpipe", complete_var=COMPLETE_VAR, shell=shell))


def answering_completion() -> bool:
    """True when the shell is asking for completions; typer's completion classes are then registered."""
    if COMPLETE_VAR not in os.environ:
        return False
    from typer._completion_classes import completion_init

    completion_init()
    return True


def model_names(incomplete: str) -> list[str]:
    """Built-in and cached model names starting with `incomplete`; paths are left to the shell."""
    from vecpipe.core.paths import models_dir

    names = ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2:int8"]
    try:
        names += sorted(e.name for e in os.scandir(models_dir()) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        pass
    return [n for n in dict.fromkeys(names) if n.startswith(incomplete)]


def index_dirs(incomplete: str) -> list[str]:
    """Directories under the typed prefix that are vecpipe indexes (they hold a CURRENT file)."""
    typed = Path(incomplete or ".")
    parent, stem = (typed, "") if incomplete.endswith("/") or not incomplete else (typed.parent, typed.name)
    try:
        entries = [e for e in os.scandir(parent) if e.is_dir() and e.name.startswith(stem) and not e.name.startswith(".")]
    except OSError:
        return []
    prefix = "" if not incomplete or parent == Path(".") and not incomplete.startswith("./") else str(parent).rstrip("/") + "/"
    return sorted(prefix + e.name for e in entries if os.path.exists(os.path.join(e.path, "CURRENT")))
