"""The man pages and the README usage block are generated from --help; they must not drift."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_generated_docs_are_up_to_date():
    result = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_command_has_a_man_page():
    pages = {p.name for p in (REPO / "man").glob("*.1")}
    for command in ("embed", "index", "search", "truncate", "quantize", "eval", "models"):
        assert f"vecpipe-{command}.1" in pages
    assert "vecpipe.1" in pages
