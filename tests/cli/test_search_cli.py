"""`vecpipe search` through the real entry point: vector and text queries, output shapes, options,
edge cases and refusals."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import launched
from vecpipe.cli import app
from vecpipe.core.index.vector_index import BuildOptions, build_index
from vecpipe.formats.vectors import VectorBatch, VectorWriter

DIM = 16
PROVENANCE = {"model": "test-model", "model_sha256": "ab" * 32, "dim": DIM, "normalized": True}
runner = CliRunner()
DOCS = np.random.default_rng(3).normal(size=(60, DIM)).astype(np.float32)
DOCS /= np.linalg.norm(DOCS, axis=1, keepdims=True)


def run(args, stdin: bytes | str | None = None):
    return runner.invoke(app, args, input=stdin)


def hits(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def doc_batch(rows=slice(None), provenance=PROVENANCE) -> VectorBatch:
    ids = [f"d{i}" for i in range(len(DOCS))][rows]
    fields = [{"title": f"title {i}", "text": f"text of document {i}", "year": 2000 + i} for i in range(len(DOCS))][rows]
    return VectorBatch(ids, fields, DOCS[rows], provenance, list(range(1, len(ids) + 1)))


def queries(matrix: np.ndarray, provenance: dict = PROVENANCE, ids=None) -> bytes:
    out = io.BytesIO()
    ids = ids or [f"q{i}" for i in range(len(matrix))]
    VectorWriter(out).write(VectorBatch(ids, [{} for _ in ids], matrix, provenance, list(range(1, len(ids) + 1))))
    return out.getvalue()


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("search") / "idx"
    build_index(path, [doc_batch()])
    return path


def test_vector_queries_give_jsonl_hits_with_stored_fields(index):
    result = run(["search", str(index), "-k", "3"], queries(DOCS[:2]))
    assert result.exit_code == 0, result.output
    out = hits(result.stdout)
    assert len(out) == 6
    assert list(out[0]) == ["query_id", "rank", "id", "score", "title", "text", "year"]
    assert (out[0]["query_id"], out[0]["rank"], out[0]["id"], out[0]["title"]) == ("q0", 1, "d0", "title 0")
    assert out[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert [h["rank"] for h in out[3:]] == [1, 2, 3] and out[3]["id"] == "d1"


def test_stored_fields_named_like_hit_keys_do_not_clobber_them(tmp_path):
    fields = [{"rank": "captain", "text": "t"}, {"tags": ["a"], "note": {"score": 3}}]
    build_index(tmp_path / "idx", [VectorBatch(["a", "b"], fields, DOCS[:2], PROVENANCE, [1, 2])])
    out = hits(run(["search", str(tmp_path / "idx"), "-k", "2"], queries(DOCS[:1])).stdout)
    assert out[0] == {"query_id": "q0", "rank": 1, "id": "a", "score": out[0]["score"], "text": "t"}
    assert out[1] == {"query_id": "q0", "rank": 2, "id": "b", "score": out[1]["score"], "tags": ["a"], "note": {"score": 3}}


def test_trec_output(index):
    result = run(["search", str(index), "-k", "2", "--format", "trec", "--run-name", "mine"], queries(DOCS[:1]))
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [line[:4] + line[5:] for line in lines] == [["q0", "Q0", "d0", "1", "mine"], ["q0", "Q0", lines[1][2], "2", "mine"]]
    assert float(lines[0][4]) >= float(lines[1][4])


def test_k_larger_than_the_index_and_filters_passing_fewer_than_k(index):
    assert len(hits(run(["search", str(index), "-k", "1000"], queries(DOCS[:1])).stdout)) == 60
    out = hits(run(["search", str(index), "-k", "10", "--where", "year>2055"], queries(DOCS[:1])).stdout)
    assert sorted(h["id"] for h in out) == [f"d{i}" for i in range(56, 60)]
    out = hits(run(["search", str(index), "--where", "title=title 7", "--where", "year!=2008"], queries(DOCS[:1])).stdout)
    assert [h["id"] for h in out] == ["d7"]


def test_min_score_and_exact(index):
    out = hits(run(["search", str(index), "-k", "60", "--min-score", "0.3", "--exact"], queries(DOCS[:3])).stdout)
    scores = DOCS[:3] @ DOCS.T
    assert len(out) == int((scores >= 0.3).sum())
    assert all(h["score"] >= 0.3 for h in out)


def test_ef_below_k_is_reported_once(index):
    result = run(["search", str(index), "-k", "5", "--ef", "2", "--batch-size", "1"], queries(DOCS[:3]))
    assert result.exit_code == 0
    assert result.stderr.count("--ef 2 is below -k 5; searching with ef 5") == 1
    assert len(hits(result.stdout)) == 15


def test_npy_queries_on_stdin(index, tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, DOCS[4:6])
    result = run(["search", str(index), "-k", "1"], buffer.getvalue())
    assert result.exit_code == 0, result.output
    assert [(h["query_id"], h["id"]) for h in hits(result.stdout)] == [(0, "d4"), (1, "d5")]


def test_query_files_npy_with_sidecar_and_errors_citing_the_file(index, tmp_path):
    with VectorWriter(None, "npy", npy_path=str(tmp_path / "q.npy")) as writer:
        writer.write(VectorBatch(["qa", "qb"], [{}, {}], DOCS[7:9], PROVENANCE, [1, 2]))
    result = run(["search", str(index), "-k", "1", "-i", str(tmp_path / "q.npy")])
    assert [(h["query_id"], h["id"]) for h in hits(result.stdout)] == [("qa", "d7"), ("qb", "d8")]
    (tmp_path / "bad.jsonl").write_bytes(queries(DOCS[:1]) + b'{"id": "x", "embedding": [1]}\n')
    result = run(["search", str(index), "-i", str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 3 and f"{tmp_path / 'bad.jsonl'}:2:" in result.stderr


def test_integer_npy_queries_are_refused_by_a_float_index(index):
    buffer = io.BytesIO()
    np.save(buffer, np.ones((1, DIM), np.int8))
    result = run(["search", str(index)], buffer.getvalue())
    assert result.exit_code == 5 and "dtype int8 cannot search a float index" in result.stderr


@pytest.mark.parametrize(
    "provenance, message",
    [
        ({**PROVENANCE, "model": "other"}, "query model 'other' differs from the index's 'test-model'"),
        ({**PROVENANCE, "truncate_dim": 8, "dim": 8}, "query dim 8 differs from the index's 16"),
    ],
)
def test_mismatched_queries_exit_5_in_one_line(provenance, message, index):
    matrix = DOCS[:1, : provenance["dim"]]
    result = run(["search", str(index)], queries(np.ascontiguousarray(matrix), provenance))
    assert result.exit_code == 5
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rescore", "4"], "--rescore applies to quantized indexes"),
        (["--format", "csv"], "--format must be jsonl or trec"),
        (["--where", "year~3"], "bad --where"),
        (["-k", "0"], "-k must be at least 1"),
    ],
)
def test_usage_errors(args, message, index):
    result = run(["search", str(index), *args], queries(DOCS[:1]))
    assert result.exit_code == 2 and message in result.stderr


def test_rescore_on_a_binary_index(tmp_path):
    path = tmp_path / "bits"
    build_index(path, [doc_batch()], BuildOptions(quantize="binary", keep_float=True))
    plain = hits(run(["search", str(path), "-k", "3"], queries(DOCS[:1])).stdout)
    rescored = hits(run(["search", str(path), "-k", "3", "--rescore", "4"], queries(DOCS[:1])).stdout)
    assert plain[0]["id"] == rescored[0]["id"] == "d0"
    assert rescored[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert all(s["score"] == pytest.approx(float(DOCS[0] @ DOCS[int(s["id"][1:])]), abs=1e-5) for s in rescored)


# --- text queries, embedded with the index's own model ---------------------------------------------


@pytest.fixture(scope="module")
def text_index(tiny_model_dir, tmp_path_factory) -> Path:
    docs = tmp_path_factory.mktemp("text") / "docs.txt"
    docs.write_text("how to copy files between machines\nlist directory contents\nshow free disk space\n")
    embedded = run(["embed", "-m", str(tiny_model_dir), "--prompt", "document", "-q", str(docs)])
    assert embedded.exit_code == 0, embedded.output
    path = docs.parent / "idx"
    assert run(["index", "build", "-q", "-o", str(path)], embedded.stdout_bytes).exit_code == 0
    return path


def test_one_off_text_query_uses_the_model_and_its_query_prompt(text_index, tiny_model_dir):
    from vecpipe.core.models.model import Model

    model = Model(tiny_model_dir)
    result = run(["search", str(text_index), "list directory contents", "-m", str(tiny_model_dir), "-k", "3"])
    assert result.exit_code == 0, result.output
    out = hits(result.stdout)
    assert [h["query_id"] for h in out] == [0, 0, 0]
    query = model.embed(["list directory contents"], prompt="query")[0]
    top = out[0]
    doc = model.embed([top["text"]], prompt="document")[0]
    assert top["score"] == pytest.approx(float(query @ doc), abs=1e-4)


def test_a_one_off_query_scans_the_vectors_and_leaves_the_graph_unloaded(text_index, tiny_model_dir, monkeypatch):
    import hnswlib

    loads = []
    real_load = hnswlib.Index.load_index
    monkeypatch.setattr(hnswlib.Index, "load_index", lambda self, *a, **k: loads.append(a[0]) or real_load(self, *a, **k))
    model = ["-m", str(tiny_model_dir), "-k", "3"]
    one_off = run(["search", str(text_index), "copy files", *model])
    assert one_off.exit_code == 0, one_off.output
    assert loads == []
    walked = run(["search", str(text_index), "copy files", "--ef", "50", *model])
    from_stdin = run(["search", str(text_index), *model], "copy files\n")
    assert len(loads) == 2  # --ef asks for the graph walk; queries from stdin may be many
    assert [h["id"] for h in hits(one_off.stdout)] == [h["id"] for h in hits(walked.stdout)] == [h["id"] for h in hits(from_stdin.stdout)]
    assert [h["score"] for h in hits(one_off.stdout)] == pytest.approx([h["score"] for h in hits(walked.stdout)], abs=1e-6)


def test_text_lines_and_jsonl_queries_from_stdin(text_index, tiny_model_dir):
    lines = run(["search", str(text_index), "-m", str(tiny_model_dir), "-k", "1"], "free disk space\n\ncopy files\n")
    assert [h["query_id"] for h in hits(lines.stdout)] == [0, 1]
    jsonl = run(["search", str(text_index), "-m", str(tiny_model_dir), "-k", "1"], '{"_id": "a", "text": "free disk space"}\n')
    assert [(h["query_id"], h["id"]) for h in hits(jsonl.stdout)] == [("a", hits(lines.stdout)[0]["id"])]


def test_a_terminal_gets_a_table(text_index, tiny_model_dir, monkeypatch):
    monkeypatch.setattr("vecpipe.cli.search.stdout_is_terminal", lambda: True)
    result = run(["search", str(text_index), "copy files", "-m", str(tiny_model_dir), "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "rank" in result.stdout and "score" in result.stdout and "query" not in result.stdout.split("\n")[1]
    assert not result.stdout.lstrip().startswith("{")


def test_text_query_against_an_index_without_a_model(index):
    result = run(["search", str(index), "some words"])
    assert result.exit_code == 4 and "test-model" in result.stderr


def test_text_queries_on_a_truncated_binary_index(tiny_model_dir, tmp_path):
    from vecpipe.core.models.model import Model
    from vecpipe.core.vectors.quantize import quantize_batch
    from vecpipe.core.vectors.truncate import truncate_batch

    model = Model(tiny_model_dir)
    texts = ["copy files between machines", "list directory contents", "show free disk space", "print working directory"]
    embedded = VectorBatch(list(range(4)), [{"text": t} for t in texts], model.embed(texts), model.provenance(), [1, 2, 3, 4])
    build_index(tmp_path / "idx", [quantize_batch(truncate_batch(embedded, 16), "binary")])
    result = run(["search", str(tmp_path / "idx"), "show free disk space", "-m", str(tiny_model_dir), "-k", "4"])
    assert result.exit_code == 0, result.output
    query = model.embed(["show free disk space"], prompt="query")[:, :16]
    signs = np.where(query > 0, 1, -1) @ np.where(embedded.matrix[:, :16] > 0, 1, -1).T / 16
    assert sorted(h["score"] for h in hits(result.stdout)) == sorted(signs[0].tolist())


def test_a_one_off_command_imports_only_its_own_cli_module(tmp_path):
    """typer turns every registered command into click objects at each start; `vecpipe search ...`
    registers search alone, while `vecpipe -h` and completion still see every command."""
    code = ("import sys; from vecpipe.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('vecpipe.cli.') and m.count('.') == 2))")
    loaded = subprocess.run([sys.executable, "-c", code, "search", "--help"], capture_output=True, text=True, timeout=120)
    assert "vecpipe search" in loaded.stdout
    assert loaded.stdout.splitlines()[-1] == "['vecpipe.cli.common', 'vecpipe.cli.completion', 'vecpipe.cli.search']"
    listing = subprocess.run([sys.executable, "-m", "vecpipe", "-h"], capture_output=True, text=True, timeout=120).stdout
    assert all(f" {name} " in listing for name in ("embed", "index", "search", "truncate", "quantize", "eval", "models", "completion"))


def test_a_finished_search_process_skips_the_interpreter_teardown_after_flushing(text_index, tiny_model_dir):
    """launch.py leaves with os._exit once a search said nothing is left to finish (atexit handlers
    do not run then); every hit is out first, and a failed search still exits the usual way."""
    args = ("search", text_index, "copy files", "-m", tiny_model_dir, "-k", "3")
    done = launched(*args)
    assert done.returncode == 0 and done.stderr == ""
    assert [h["id"] for h in hits(done.stdout)] == [h["id"] for h in hits(run(list(map(str, args))).stdout)]
    failed = launched("search", text_index.parent / "missing", "copy files")
    assert failed.returncode == 5 and failed.stderr.splitlines()[-1] == "torn down"
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            refused = launched(*args, stdout=full)
        assert refused.returncode == 6 and "no space left" in refused.stderr and "torn down" in refused.stderr
