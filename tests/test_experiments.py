"""examples/experiments/Makefile: a small grid on a tiny corpus with the tiny model, run by make -j2,
and the rebuild that one changed setting causes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

EXPERIMENTS = REPO / "examples" / "experiments"
TOPICS = ["cats purr on warm mats", "tar compresses a directory", "dpkg finds the package of a file", "ss lists network sockets",
          "chmod changes file permissions", "git records changes to files"]


@pytest.fixture
def tiny_beir(tmp_path):
    root = tmp_path / "toy"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(TOPICS)))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t.split(" ", 1)[1]}) + "\n" for i, t in enumerate(TOPICS)))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS))))
    return root


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_the_grid_runs_with_make_j2_and_a_changed_setting_rebuilds_only_its_column(tmp_path, tiny_beir, tiny_model_dir):
    def make(*settings: str) -> None:
        args = ["make", "-s", "-j2", "-C", str(EXPERIMENTS), f"DATA={tiny_beir}", f"OUT={tmp_path / 'out'}", f"RESULTS={tmp_path / 'results'}",
                f"VECPIPE={sys.executable} -m vecpipe", "MODELS=tiny", f"model_tiny={tiny_model_dir}", "DTYPES=float32 binary", *settings]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=os.environ)
        assert done.returncode == 0, done.stderr

    make("DIMS=32 16")
    results = tmp_path / "results"
    rows = [json.loads(line) for line in (results / "table.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2 + 1  # dims x dtypes x (dense, hybrid), and BM25 once
    assert {(r.get("dim"), r.get("dtype"), r.get("mode")) for r in rows} >= {(16, "binary", "hybrid"), (32, "float32", "dense")}
    assert all(r["task"] == "toy" and r["ndcg_at_10"] is not None for r in rows)
    assert (results / "quality.png").stat().st_size > 0
    kept = {p: p.stat().st_mtime_ns for p in results.glob("tiny-32-*/toy.json")}
    embeddings = (tmp_path / "out" / "tiny" / "corpus.jsonl").stat().st_mtime_ns

    make("DIMS=32 8")
    assert {p: p.stat().st_mtime_ns for p in results.glob("tiny-32-*/toy.json")} == kept  # the 32 column is not redone
    assert (tmp_path / "out" / "tiny" / "corpus.jsonl").stat().st_mtime_ns == embeddings  # nor the embedding
    assert sorted(p.parent.name for p in results.glob("tiny-8-*/toy.json")) == [
        "tiny-8-binary-dense", "tiny-8-binary-hybrid", "tiny-8-float32-dense", "tiny-8-float32-hybrid"]
