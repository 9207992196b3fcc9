"""`vecpipe index build|add|delete|info` through the real entry point."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vecpipe.cli import app
from vecpipe.formats.vectors import VectorBatch, VectorWriter

REPO = Path(__file__).resolve().parents[2]
DIM = 16
PROVENANCE = {"model": "test-model", "model_sha256": "ab" * 32, "dim": DIM, "normalized": True}
runner = CliRunner()


def run(args, stdin: bytes | str | None = None):
    return runner.invoke(app, args, input=stdin)


def unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def records(matrix: np.ndarray, ids: list, provenance: dict = PROVENANCE) -> bytes:
    """Vector records as `vecpipe embed` writes them."""
    out = io.BytesIO()
    fields = [{"text": f"text of {i}", "n": k} for k, i in enumerate(ids)]
    VectorWriter(out).write(VectorBatch(list(ids), fields, matrix, provenance, list(range(1, len(ids) + 1))))
    return out.getvalue()


@pytest.fixture
def docs() -> np.ndarray:
    return unit_rows(40, seed=1)


@pytest.fixture
def index(tmp_path, docs) -> Path:
    path = tmp_path / "idx"
    result = run(["index", "build", "-o", str(path)], records(docs, [f"d{i}" for i in range(40)]))
    assert result.exit_code == 0, result.output
    return path


def info_of(path: Path) -> dict:
    result = run(["index", "info", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_build_from_stdin_reports_on_stderr_and_info_is_json_when_piped(index):
    info = info_of(index)
    assert (info["count"], info["dim"], info["model"], info["kind"], info["metric"]) == (40, DIM, "test-model", "hnsw", "cosine")
    assert info["generation"] == "g000001" and info["bytes_on_disk"] > 0


def test_build_summary(tmp_path, docs):
    result = run(["index", "build", "-o", str(tmp_path / "i")], records(docs[:3], ["a", "b", "a"]))
    assert result.exit_code == 0
    assert "built" in result.stderr and "2 added, 1 replaced; 2 records (g000001)" in result.stderr


def test_build_from_files_including_npy_with_sidecar(tmp_path, docs):
    (tmp_path / "a.jsonl").write_bytes(records(docs[:10], [f"a{i}" for i in range(10)]))
    with VectorWriter(None, "npy", npy_path=str(tmp_path / "b.npy")) as writer:
        writer.write(VectorBatch([f"b{i}" for i in range(5)], [{}] * 5, docs[10:15], PROVENANCE, list(range(1, 6))))
    out = tmp_path / "idx"
    result = run(["index", "build", "-q", "-o", str(out), str(tmp_path / "a.jsonl"), str(tmp_path / "b.npy"), "--M", "8", "--ef-construction", "50"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    info = info_of(out)
    assert info["count"] == 15 and info["hnsw"]["M"] == 8 and info["hnsw"]["ef_construction"] == 50


def test_info_on_a_terminal_is_a_table(index, monkeypatch):
    monkeypatch.setattr("vecpipe.cli.index.stdout_is_terminal", lambda: True)
    result = run(["index", "info", str(index)])
    assert result.exit_code == 0
    assert "count" in result.stdout and "test-model" in result.stdout and "M=16" in result.stdout
    assert json.loads(run(["index", "info", str(index), "--json"]).stdout)["count"] == 40


def test_add_upserts(index, docs):
    result = run(["index", "add", str(index)], records(-docs[:5], ["d0", "d1", "d2", "new1", "new2"]))
    assert result.exit_code == 0, result.output
    assert "2 added, 3 replaced; 42 records (g000002)" in result.stderr
    assert info_of(index)["count"] == 42


def test_delete_by_id_and_from_a_file(index, tmp_path):
    result = run(["index", "delete", str(index), "--id", "d1", "--id", "nope"])
    assert result.exit_code == 0, result.output
    assert "not in the index: nope" in result.stderr and "1 deleted; 39 records" in result.stderr
    (tmp_path / "ids.txt").write_text("d2\n\nd3\n")
    assert run(["index", "delete", str(index), "--ids", str(tmp_path / "ids.txt")]).exit_code == 0
    assert run(["index", "delete", str(index), "--ids", "-"], "d4\n").exit_code == 0
    assert info_of(index)["count"] == 36


def test_delete_matches_integer_ids_given_as_text(tmp_path, docs):
    out = tmp_path / "idx"
    run(["index", "build", "-o", str(out)], records(docs[:3], [0, 1, 2]))
    result = run(["index", "delete", str(out), "--id", "1"])
    assert result.exit_code == 0 and "1 deleted; 2 records" in result.stderr


def test_delete_needs_ids(index):
    result = run(["index", "delete", str(index)])
    assert result.exit_code == 2 and "--id" in result.stderr


def test_quantized_build_reports_bytes_per_vector(tmp_path, docs):
    out = tmp_path / "bits"
    result = run(["index", "build", "-o", str(out), "--quantize", "binary", "--keep-float"], records(docs, list(range(40))))
    assert result.exit_code == 0, result.output
    info = info_of(out)
    assert (info["kind"], info["dtype"], info["metric"], info["bytes_per_vector"]) == ("flat", "binary", "hamming", 2)
    assert info["flat"] == {"from_float": True, "keep_float": True}


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--metric", "manhattan"], 2, "unknown metric 'manhattan'"),
        (["--order", "sorted"], 2, "unknown order 'sorted'"),
        (["--quantize", "int4"], 2, "--quantize must be one of"),
        (["--keep-float"], 2, "--keep-float applies to quantized indexes"),
    ],
)
def test_bad_options_are_usage_errors(args, code, message, tmp_path, docs):
    result = run(["index", "build", "-o", str(tmp_path / "x"), *args], records(docs[:3], [1, 2, 3]))
    assert result.exit_code == code and message in result.stderr
    assert not (tmp_path / "x").exists()


def test_existing_index_mixed_models_and_bad_input(index, docs):
    result = run(["index", "build", "-o", str(index)], records(docs[:3], [1, 2, 3]))
    assert result.exit_code == 5 and "already exists; use --overwrite" in result.stderr
    other = records(docs[:2], ["x", "y"], {**PROVENANCE, "model": "other-model"})
    result = run(["index", "add", str(index)], other)
    assert result.exit_code == 3 and "<stdin>:1: record model 'other-model' differs from the index's 'test-model'" in result.stderr
    result = run(["index", "add", str(index)], b'{"id": 1, "embedding": [1, "a"]}\n')
    assert result.exit_code == 3
    assert info_of(index)["count"] == 40  # nothing was published
    result = run(["index", "build", "-o", str(index), "--overwrite"], records(docs[:3], [1, 2, 3]))
    assert result.exit_code == 0 and info_of(index)["count"] == 3


def test_missing_index_and_future_manifest(tmp_path, index):
    result = run(["index", "info", str(tmp_path / "none")])
    assert result.exit_code == 5 and "does not exist" in result.stderr
    manifest = index / "g000001" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": 99}))
    result = run(["index", "info", str(index)])
    assert result.exit_code == 5 and "format version 99 is newer" in result.stderr and "Traceback" not in result.output


HOLD_LOCK = """
import sys, time
from pathlib import Path
from vecpipe.core.atomic import DirLock
with DirLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(30)
"""


def test_second_writer_exits_5_at_once(index, docs):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(index)], stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert holder.stdout.readline() == b"locked\n"
        started = time.monotonic()
        result = run(["index", "add", str(index)], records(docs[:1], ["z"]))
        assert time.monotonic() - started < 1.0
        assert result.exit_code == 5
        assert f"{index}: another vecpipe process is writing here; try again when it has finished" in result.stderr
        assert run(["search", str(index), "-k", "1"], records(docs[:1], ["q"])).exit_code == 0  # readers go on
    finally:
        holder.kill()
        holder.wait()
    assert run(["index", "add", str(index)], records(docs[:1], ["z"])).exit_code == 0  # the kernel dropped the lock
