"""`vecpipe completion`: scripts for bash, zsh and fish, and the answers the shell gets back, as real processes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

VECPIPE = [sys.executable, "-m", "vecpipe"]


def _answer(env: dict, cwd) -> list[str]:
    done = subprocess.run(VECPIPE, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _bash(words: str, cwd) -> list[str]:
    return _answer({"_VECPIPE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}, cwd)


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o default -F _vecpipe_completion vecpipe"),
                                           ("zsh", "compdef _vecpipe_completion vecpipe"),
                                           ("fish", "complete --command vecpipe")])
def test_each_shell_gets_a_script_that_calls_vecpipe_back(shell, marker):
    done = subprocess.run(VECPIPE + ["completion", shell], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and marker in done.stdout and "_VECPIPE_COMPLETE=complete_" + shell in done.stdout


def test_an_unknown_shell_is_a_usage_error():
    done = subprocess.run(VECPIPE + ["completion", "tcsh"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "vecpipe completion: unknown shell 'tcsh'; choose one of bash, zsh, fish\n"


def test_commands_and_subcommands_complete(tmp_path):
    assert _bash("vecpipe tr", tmp_path) == ["truncate"]
    assert _bash("vecpipe eval s", tmp_path) == ["sts", "sweep"]
    assert "--on-long" in _bash("vecpipe embed --on", tmp_path)


def test_model_options_offer_builtin_and_cached_names(tmp_path, vecpipe_home, tiny_model_dir):
    import shutil

    shutil.copytree(tiny_model_dir, vecpipe_home / "models" / "tiny-completion", dirs_exist_ok=True)
    assert _bash("vecpipe embed -m all", tmp_path) == ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2:int8"]
    assert _bash("vecpipe search idx -m tiny-c", tmp_path) == ["tiny-completion"]


def test_index_arguments_offer_index_directories_only(tmp_path):
    (tmp_path / "docs.idx").mkdir()
    (tmp_path / "docs.idx" / "CURRENT").write_text("g1\n")
    (tmp_path / "docs-notes").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "man.idx").mkdir()
    (tmp_path / "sub" / "man.idx" / "CURRENT").write_text("g1\n")
    assert _bash("vecpipe search do", tmp_path) == ["docs.idx"]
    assert _bash("vecpipe index info sub/", tmp_path) == ["sub/man.idx"]
    zsh = _answer({"_VECPIPE_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "vecpipe eval ann d"}, tmp_path)
    assert "docs.idx" in " ".join(zsh) and "docs-notes" not in " ".join(zsh)
