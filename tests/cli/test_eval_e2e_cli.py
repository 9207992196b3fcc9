"""`vecpipe eval retrieval --corpus`, `eval sts`, `eval ann` and `eval sweep` end to end with the
tiny random-weight model on a small BEIR folder written here. Numbers are checked against an
independent computation (Model.embed, numpy, evaluate_retrieval), not against themselves."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tiny_checkpoint
from typer.testing import CliRunner

from vecpipe.cli import app
from vecpipe.core.models.convert import convert
from vecpipe.core.index.api import build
from vecpipe.core.index.vector_index import BuildOptions, build_index
from vecpipe.core.eval.metrics import evaluate_retrieval, spearman
from vecpipe.core.models.model import Model
from vecpipe.formats.vectors import VectorBatch

TOPICS = ["river boats", "mountain goats", "desert lizards", "ocean whales", "forest owls", "city trains"]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    """Six topics, five documents each (titled), one judged query per topic plus one unjudged."""
    root = tmp_path_factory.mktemp("data") / "tinybeir"
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{t}{n}", "title": topic.title(), "text": f"note {n} about {topic} and their habits"}
            for t, topic in enumerate(TOPICS) for n in range(5)]
    write_jsonl(root / "corpus.jsonl", docs)
    queries = [{"_id": f"q{t}", "text": f"where do {topic} live"} for t, topic in enumerate(TOPICS)]
    write_jsonl(root / "queries.jsonl", queries + [{"_id": "qx", "text": "never judged"}])
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{t}\td{t}{n}\t{1 + n % 2}" for t in range(len(TOPICS)) for n in range(3)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))


def invoke(*args: str):
    return CliRunner().invoke(app, ["eval", *args])


def data_args(beir: Path) -> list[str]:
    return ["--corpus", str(beir / "corpus.jsonl"), "--queries", str(beir / "queries.jsonl"), "--qrels", str(beir / "qrels" / "test.tsv")]


def retrieval(beir: Path, model_dir: Path, *extra: str):
    result = invoke("retrieval", *data_args(beir), "-m", str(model_dir), "-q", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def independent_run(beir: Path, model_dir: Path) -> dict:
    """Exact cosine top 1000 with documents under the `document` prompt and queries under `query`."""
    model = Model(model_dir)
    docs = [json.loads(line) for line in (beir / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (beir / "queries.jsonl").read_text().splitlines()][:-1]  # qx is unjudged
    doc_vectors = model.embed([(d["title"] + " " + d["text"]).strip() for d in docs], prompt="document")
    query_vectors = model.embed([q["text"] for q in queries], prompt="query")
    scores = query_vectors @ doc_vectors.T
    return {q["_id"]: {d["_id"]: float(s) for d, s in zip(docs, row)} for q, row in zip(queries, scores)}


def judgments(beir: Path) -> dict:
    qrels: dict = {}
    for line in (beir / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, rel = line.split("\t")
        qrels.setdefault(qid, {})[doc] = int(rel)
    return qrels


# --- eval retrieval --corpus ---------------------------------------------------------------


def test_end_to_end_retrieval_equals_an_independent_exact_search(beir, tiny_model_dir):
    out = retrieval(beir, tiny_model_dir)
    expected = evaluate_retrieval(independent_run(beir, tiny_model_dir), judgments(beir), [1, 3, 5, 10, 100, 1000])
    assert out["task_name"] == "tinybeir" and list(out["scores"]) == ["test"]
    assert out["main_score"] == pytest.approx(expected.main_score, abs=1e-6)
    for key in ("ndcg_at_1", "map_at_10", "recall_at_5", "mrr_at_10"):
        assert out["scores"]["test"][0][key] == pytest.approx(expected.averages[key], abs=1e-6)
    meta = out["vecpipe"]
    model = Model(tiny_model_dir)
    assert meta["model"] == {"name": "tiny-bert", "sha256": model.sha256, "dim": 32, "max_tokens": model.max_tokens,
                             "normalize": True, "query_prompt": "query", "document_prompt": "document"}
    assert set(meta["inputs"]) == {"corpus", "queries", "qrels"}
    assert all(len(record["sha256"]) == 64 for record in meta["inputs"].values())
    assert meta["parameters"]["search"] == "exact" and meta["parameters"]["top_k"] == 1000
    assert meta["parameters"]["dim"] == 32 and meta["parameters"]["dtype"] == "float32"
    assert meta["queries"]["evaluated"] == 6 and meta["search"]["bytes_per_vector"] == 128


def test_second_run_embeds_nothing(beir, tiny_model_dir):
    first = retrieval(beir, tiny_model_dir)
    second = retrieval(beir, tiny_model_dir, "--dim", "16")
    assert first["vecpipe"]["embeddings"] == {"embedded": 36, "cached": 0, "cache": True}
    assert second["vecpipe"]["embeddings"] == {"embedded": 0, "cached": 36, "cache": True}


def test_no_cache_embeds_every_time(beir, tiny_model_dir):
    retrieval(beir, tiny_model_dir)
    out = retrieval(beir, tiny_model_dir, "--no-cache")
    assert out["vecpipe"]["embeddings"] == {"embedded": 36, "cached": 0, "cache": False}


@pytest.mark.parametrize("options, search, bytes_per_vector", [
    (["--dim", "16", "--quantize", "binary", "--rescore", "2"], "flat", 2),
    (["--quantize", "int8"], "flat", 32),
    (["--index-params", "M=8,ef_construction=50,ef=64"], "hnsw", 128),
])
def test_quantized_truncated_and_hnsw_searches_run_through_the_index_library(beir, tiny_model_dir, options, search, bytes_per_vector):
    out = retrieval(beir, tiny_model_dir, *options)
    assert out["vecpipe"]["parameters"]["search"] == search
    assert out["vecpipe"]["search"]["bytes_per_vector"] == bytes_per_vector
    assert 0 <= out["main_score"] <= 1


def test_hnsw_with_ef_below_top_k_is_widened_with_a_notice(beir, tiny_model_dir):
    result = invoke("retrieval", *data_args(beir), "-m", str(tiny_model_dir), "-q", "--index-params", "ef=10")
    assert result.exit_code == 0, result.output
    assert "searching with ef 30" in result.stderr  # top-k is capped at the 30 documents first


def test_full_rescoring_of_binary_codes_gives_the_exact_score(beir, tiny_model_dir):
    exact = retrieval(beir, tiny_model_dir, "--top-k", "10")
    # 10 x 3 candidates cover the 30 documents, so every one is re-ranked by float cosine.
    rescored = retrieval(beir, tiny_model_dir, "--top-k", "10", "--quantize", "binary", "--rescore", "3")
    assert rescored["main_score"] == pytest.approx(exact["main_score"], abs=1e-6)


def test_output_dir_gets_the_result_file(beir, tiny_model_dir, tmp_path):
    out = retrieval(beir, tiny_model_dir, "-o", str(tmp_path / "results"))
    assert json.loads((tmp_path / "results" / "tinybeir.json").read_text()) == out


@pytest.mark.parametrize("options, message", [
    (["--exact", "--index-params", "M=8"], "exclude each other"),
    (["--rescore", "4"], "--rescore needs --quantize"),
    (["--quantize", "float16"], "unknown dtype"),
    (["--dim", "99"], "--dim must be between 1 and the model's 32"),
    (["--run", "run.trec"], "--run scores a run file"),
    (["--index-params", "L=3"], "--index-params wants"),
])
def test_contradictory_options_are_usage_errors(beir, tiny_model_dir, options, message):
    result = invoke("retrieval", *data_args(beir), "-m", str(tiny_model_dir), "-q", *options)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_corpus_without_queries_is_a_usage_error(beir):
    result = invoke("retrieval", "--corpus", str(beir / "corpus.jsonl"), "--qrels", str(beir / "qrels" / "test.tsv"))
    assert result.exit_code == 2 and "--corpus and --queries go together" in result.stderr


def test_bad_corpus_line_names_file_and_line(beir, tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "fine"}\n{"text": "no id"}\n')
    args = ["--corpus", str(corpus), "--queries", str(beir / "queries.jsonl"), "--qrels", str(beir / "qrels" / "test.tsv")]
    result = invoke("retrieval", *args, "-m", str(tiny_model_dir))
    assert result.exit_code == 3
    assert f"{corpus}:2: missing '_id'" in result.stderr and "Traceback" not in result.output


def test_missing_model_is_a_model_error(beir, tmp_path):
    result = invoke("retrieval", *data_args(beir), "-m", str(tmp_path / "no-such-model"))
    assert result.exit_code == 4 and "Traceback" not in result.output


def test_terminal_gets_a_table(beir, tiny_model_dir, monkeypatch):
    monkeypatch.setattr("vecpipe.cli.eval.common.stdout_is_terminal", lambda: True)
    result = invoke("retrieval", *data_args(beir), "-m", str(tiny_model_dir), "-q")
    assert result.exit_code == 0, result.output
    assert "tinybeir (test): nDCG@10" in result.stdout and "MRR" in result.stdout


# --- eval sts --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sts") / "tinysts"
    folder.mkdir()
    rows = [{"sentence1": f"{a} by the water", "sentence2": f"{b} near the shore", "score": float((i * 7) % 5)}
            for i, (a, b) in enumerate(zip(TOPICS, TOPICS[1:] + TOPICS[:1]))]
    rows += [{"sentence1": topic, "sentence2": topic + " again", "score": 4.5} for topic in TOPICS[:3]]
    return write_jsonl(folder / "test.jsonl", rows)


def test_sts_reports_cosine_spearman_as_the_main_score(pairs, tiny_model_dir):
    result = invoke("sts", "--pairs", str(pairs), "-m", str(tiny_model_dir), "-q")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    model = Model(tiny_model_dir)
    a, b = model.embed([r["sentence1"] for r in rows]), model.embed([r["sentence2"] for r in rows])
    expected = spearman([r["score"] for r in rows], (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
    assert (out["task_name"], list(out["scores"])) == ("tinysts", ["test"])
    assert out["main_score"] == pytest.approx(expected, abs=1e-6)
    entry = out["scores"]["test"][0]
    assert entry["main_score"] == entry["cosine_spearman"] == out["main_score"]
    assert {"cosine_pearson", "manhattan_spearman", "euclidean_pearson", "pearson", "spearman"} <= set(entry)
    assert out["vecpipe"]["pairs"] == len(rows) and out["vecpipe"]["parameters"]["main_metric"] == "cosine_spearman"


def test_sts_writes_its_file_and_prints_a_table_on_a_terminal(pairs, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("vecpipe.cli.eval.common.stdout_is_terminal", lambda: True)
    result = invoke("sts", "--pairs", str(pairs), "-m", str(tiny_model_dir), "-q", "-o", str(tmp_path / "res"))
    assert result.exit_code == 0, result.output
    assert "cosine Spearman" in result.stdout and "manhattan" in result.stdout
    assert json.loads((tmp_path / "res" / "tinysts.json").read_text())["task_name"] == "tinysts"


def test_sts_bad_pair_names_file_and_line(tmp_path, tiny_model_dir):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1}, {"sentence1": "a", "sentence2": "b"}])
    result = invoke("sts", "--pairs", str(bad), "-m", str(tiny_model_dir))
    assert result.exit_code == 3 and f"{bad}:2: 'score' must be a number" in result.stderr


# --- eval ann --------------------------------------------------------------------------------


def build_tiny_index(model_dir: Path, beir: Path, path: Path, **options) -> Path:
    model = Model(model_dir)
    docs = [json.loads(line) for line in (beir / "corpus.jsonl").read_text().splitlines()]
    matrix = model.embed([(d["title"] + " " + d["text"]).strip() for d in docs], prompt="document")
    batch = VectorBatch([d["_id"] for d in docs], [{} for _ in docs], matrix, model.provenance("document"), list(range(1, len(docs) + 1)))
    build_index(path, [batch], BuildOptions(**options))
    return path


def test_ann_sweeps_ef_and_reaches_full_recall(beir, tiny_model_dir, tmp_path):
    index = build_tiny_index(tiny_model_dir, beir, tmp_path / "docs.idx", M=4, ef_construction=8)
    result = invoke("ann", str(index), "--queries", str(beir / "queries.jsonl"), "-m", str(tiny_model_dir), "-k", "5",
                    "--ef", "5,10,40", "--repeat", "1", "-q", "-o", str(tmp_path / "res"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["task_name"], out["k"], out["queries"]) == ("docs.idx", 5, 7)
    assert [(p["parameter"], p["value"]) for p in out["points"]] == [("ef", 5), ("ef", 10), ("ef", 40)]
    assert out["points"][-1]["recall"] == 1.0  # ef 40 exceeds the 30 documents: the walk sees them all
    assert all(p["qps"] > 0 for p in out["points"]) and out["exact_qps"] > 0
    assert out["pareto"] == [p for p in out["points"] if p["pareto"]] and out["pareto"]
    assert out["vecpipe"]["index"]["kind"] == "hnsw" and out["vecpipe"]["index"]["count"] == 30
    assert json.loads((tmp_path / "res" / "docs.idx.ann.json").read_text()) == out


def test_ann_measures_a_sharded_index_through_the_front_door(beir, tiny_model_dir, tmp_path):
    """eval ann opens indexes through core/index/api.py, so a sharded index is measured like one index."""
    model = Model(tiny_model_dir)
    docs = [json.loads(line) for line in (beir / "corpus.jsonl").read_text().splitlines()]
    matrix = model.embed([(d["title"] + " " + d["text"]).strip() for d in docs], prompt="document")
    batch = VectorBatch([d["_id"] for d in docs], [{} for _ in docs], matrix, model.provenance("document"), list(range(1, len(docs) + 1)))
    build(tmp_path / "sharded.idx", [batch], shard_count=3)
    result = invoke("ann", str(tmp_path / "sharded.idx"), "--queries", str(beir / "queries.jsonl"), "-m", str(tiny_model_dir), "-k", "5",
                    "--ef", "5,40", "--repeat", "1", "-q")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [(p["parameter"], p["value"]) for p in out["points"]] == [("ef", 5), ("ef", 40)]
    assert out["points"][-1]["recall"] == 1.0  # ef 40 exceeds every shard's rows
    assert out["vecpipe"]["index"]["shards"] == 3 and out["vecpipe"]["index"]["count"] == 30


def test_ann_on_a_flat_index_sweeps_rescoring(beir, tiny_model_dir, tmp_path):
    index = build_tiny_index(tiny_model_dir, beir, tmp_path / "bin.idx", quantize="binary", keep_float=True)
    result = invoke("ann", str(index), "--queries", str(beir / "queries.jsonl"), "-m", str(tiny_model_dir),
                    "-k", "5", "--rescore", "1,6", "--repeat", "1", "-q")
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)["points"]
    assert [(p["parameter"], p["value"]) for p in points] == [("rescore", None), ("rescore", 1), ("rescore", 6)]
    assert points[-1]["recall"] == 1.0  # 5 x 6 candidates: the whole corpus is rescored


def test_ann_takes_vector_records_as_queries_without_loading_a_model(beir, tiny_model_dir, tmp_path):
    from vecpipe.formats.vectors import VectorWriter

    index = build_tiny_index(tiny_model_dir, beir, tmp_path / "docs.idx")
    model = Model(tiny_model_dir)
    query_file = tmp_path / "queries.vec.jsonl"
    with open(query_file, "wb") as out:
        matrix = model.embed(TOPICS, prompt="query")
        VectorWriter(out).write(VectorBatch(list(range(6)), [{} for _ in TOPICS], matrix, model.provenance("query"), list(range(1, 7))))
    # No -m: text queries would need the model "tiny-bert", which no registry knows.
    result = invoke("ann", str(index), "--queries", str(query_file), "-k", "3", "--ef", "30", "--repeat", "1", "-q")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["queries"] == 6 and out["points"][0]["recall"] == 1.0


def test_ann_refuses_what_it_cannot_measure(beir, tiny_model_dir, tmp_path):
    flat = build_tiny_index(tiny_model_dir, beir, tmp_path / "codes.idx", quantize="binary")
    queries = str(beir / "queries.jsonl")
    codes_only = invoke("ann", str(flat), "--queries", queries, "-m", str(tiny_model_dir))
    assert codes_only.exit_code == 2 and "--keep-float" in codes_only.stderr
    wrong_knob = invoke("ann", str(flat), "--queries", queries, "--ef", "10")
    assert wrong_knob.exit_code == 2 and "sweep --rescore" in wrong_knob.stderr
    graph = build_tiny_index(tiny_model_dir, beir, tmp_path / "graph.idx")
    narrow = invoke("ann", str(graph), "--queries", queries, "-m", str(tiny_model_dir), "-k", "10", "--ef", "5")
    assert narrow.exit_code == 2 and "at least -k 10" in narrow.stderr


def test_ann_refuses_a_model_other_than_the_indexs(beir, tiny_model_dir, tmp_path):
    other = tmp_path / "other-onnx"
    other.mkdir()
    convert(write_tiny_checkpoint(tmp_path / "other", max_seq_length=32), other, "tiny-bert")
    index = build_tiny_index(tiny_model_dir, beir, tmp_path / "docs.idx")
    result = invoke("ann", str(index), "--queries", str(beir / "queries.jsonl"), "-m", str(other))
    assert result.exit_code == 4 and "not the one the index was built with" in result.stderr


# --- eval sweep ------------------------------------------------------------------------------


def sweep(beir: Path, model_dir: Path, *extra: str):
    result = invoke("sweep", *data_args(beir), "-m", str(model_dir), "-q", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sweep_tabulates_every_combination_against_full_float32(beir, tiny_model_dir, tmp_path):
    out = sweep(beir, tiny_model_dir, "--dims", "32,16", "--dtypes", "float32,int8,binary", "--rescore", "2", "-o", str(tmp_path / "res"))
    rows = out["rows"]
    assert [(r["dim"], r["dtype"], r["rescore"]) for r in rows] == [
        (32, "float32", None), (32, "int8", None), (32, "int8", 2), (32, "binary", None), (32, "binary", 2),
        (16, "float32", None), (16, "int8", None), (16, "int8", 2), (16, "binary", None), (16, "binary", 2),
    ]
    assert [r["bytes_per_vector"] for r in rows] == [128, 32, 32, 4, 4, 64, 16, 16, 2, 2]
    assert rows[0]["baseline"] and rows[0]["relative"] == 1.0 and not any(r["baseline"] for r in rows[1:])
    exact = retrieval(beir, tiny_model_dir)
    assert rows[0]["main_score"] == exact["main_score"]
    half = retrieval(beir, tiny_model_dir, "--dim", "16", "--quantize", "binary", "--rescore", "2")
    assert rows[-1]["main_score"] == half["main_score"]
    assert rows[-1]["relative"] == pytest.approx(half["main_score"] / exact["main_score"])
    assert all(r["qps"] > 0 and "ndcg_at_100" in r["scores"] for r in rows)
    assert out["vecpipe"]["embeddings"]["embedded"] == 36 and exact["vecpipe"]["embeddings"]["embedded"] == 0
    assert json.loads((tmp_path / "res" / "tinybeir.sweep.json").read_text()) == out


def test_sweep_adds_the_full_dimension_baseline_when_the_grid_lacks_it(beir, tiny_model_dir):
    rows = sweep(beir, tiny_model_dir, "--dims", "16", "--dtypes", "binary", "--rescore", "")["rows"]
    assert [(r["dim"], r["dtype"], r["baseline"]) for r in rows] == [(32, "float32", True), (16, "binary", False)]


def test_sweep_refuses_dims_beyond_the_model(beir, tiny_model_dir):
    result = invoke("sweep", *data_args(beir), "-m", str(tiny_model_dir), "--dims", "64,16")
    assert result.exit_code == 2 and "more than the model's 32" in result.stderr


def test_sweep_table_on_a_terminal(beir, tiny_model_dir, monkeypatch):
    monkeypatch.setattr("vecpipe.cli.eval.common.stdout_is_terminal", lambda: True)
    result = invoke("sweep", *data_args(beir), "-m", str(tiny_model_dir), "-q", "--dims", "16", "--dtypes", "float32")
    assert result.exit_code == 0, result.output
    assert "bytes/vector" in result.stdout and "relative" in result.stdout


def test_plot_without_matplotlib_is_one_line_before_any_work(beir, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    result = invoke("sweep", *data_args(beir), "-m", str(tiny_model_dir), "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 2
    assert result.stderr.strip() == "vecpipe eval sweep: --plot needs matplotlib: pip install 'vecpipe[plot]'"
    assert not (tmp_path / "home" / "embeddings").exists()


def test_plots_are_png_files(beir, tiny_model_dir, tmp_path):
    pytest.importorskip("matplotlib")
    sweep(beir, tiny_model_dir, "--dims", "32,16", "--dtypes", "float32,binary", "--rescore", "2", "--plot", str(tmp_path / "sweep.png"))
    index = build_tiny_index(tiny_model_dir, beir, tmp_path / "docs.idx")
    result = invoke("ann", str(index), "--queries", str(beir / "queries.jsonl"), "-m", str(tiny_model_dir), "-k", "5",
                    "--repeat", "1", "-q", "--plot", str(tmp_path / "ann.png"))
    assert result.exit_code == 0, result.output
    for name in ("sweep.png", "ann.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
