"""Numeric options are bounded before they reach hnswlib or onnxruntime: a usage error (exit 2), never a
traceback, an overflow or a machine-wide hang (issue 18, class 8)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vecpipe.cli import app

HUGE = str(10**20)
CASES = [
    ["search", "idx", "q", "-k", HUGE],
    ["search", "idx", "q", "--ef", HUGE],
    ["search", "idx", "q", "--rescore", HUGE],
    ["search", "idx", "q", "--batch-size", "0"],
    ["index", "build", "-o", "x.idx", "--M", HUGE],
    ["index", "build", "-o", "x.idx", "--ef-construction", HUGE],
    ["index", "build", "-o", "x.idx", "--threads", "2000"],
    ["index", "build", "-o", "x.idx", "--seed", "-1"],
    ["index", "add", "idx", "--seed", HUGE],
    ["embed", "--threads", "2000"],
    ["embed", "--threads", "0"],
    ["embed", "--batch-tokens", "0"],
    ["embed", "--max-tokens", HUGE],
    ["embed", "--layer", "0"],
    ["embed", "--overlap", "-1"],
    ["eval", "ann", "idx", "--queries", "q", "-k", "0"],
    ["eval", "retrieval", "--qrels", "q", "--top-k", HUGE],
    ["eval", "classification", "--train", "t", "--test", "t", "--seed", "-1"],
    ["truncate", "--dim", HUGE],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c[:2] + c[-2:]) for c in CASES])
def test_out_of_range_numbers_are_usage_errors(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args, input="")
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output and "is not in the range" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing was written
