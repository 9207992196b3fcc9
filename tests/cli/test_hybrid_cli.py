"""Hybrid retrieval through the real entry point: index build --lexical, search --mode, eval --mode and eval fuse."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vecpipe.cli import app

DOCS = [
    {"_id": "d1", "title": "Archives", "text": "tar compresses a directory into one archive file"},
    {"_id": "d2", "title": "Packages", "text": "dpkg -S tells which package owns a file"},
    {"_id": "d3", "title": "Network", "text": "ss shows open sockets and network connections"},
    {"_id": "d4", "title": "Permissions", "text": "chmod changes the permissions of a file"},
]
QUERIES = [{"_id": "q1", "text": "compress a directory"}, {"_id": "q2", "text": "which package owns this file"},
           {"_id": "q3", "text": "show network connections"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n"


def invoke(*args, input=None):
    return CliRunner().invoke(app, list(args), input=input)


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    root = tmp_path_factory.mktemp("beir") / "toy"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    (root / "qrels" / "test.tsv").write_text(QRELS)
    return root


@pytest.fixture(scope="module")
def hybrid_index(beir, tiny_model_dir, tmp_path_factory):
    vectors = invoke("embed", "-m", str(tiny_model_dir), "-q", str(beir / "corpus.jsonl"))
    assert vectors.exit_code == 0, vectors.stderr
    path = tmp_path_factory.mktemp("idx") / "toy.idx"
    built = invoke("index", "build", "--lexical", "-q", "-o", str(path), input=vectors.stdout)
    assert built.exit_code == 0, built.stderr
    return path


def hits(result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_hybrid_is_the_default_and_each_hit_says_where_it_came_from(hybrid_index, tiny_model_dir):
    found = hits(invoke("search", str(hybrid_index), "which package owns a file", "-k", "2", "--json", "-m", str(tiny_model_dir)))
    assert [h["rank"] for h in found] == [1, 2] and all(set(h["ranks"]) <= {"dense", "lexical"} and h["ranks"] for h in found)
    by_id = {h["id"]: h for h in found}
    assert by_id["d2"]["ranks"]["lexical"] == 1  # the only document with all three query terms (the tiny model's dense list is random)
    info = json.loads(invoke("index", "info", str(hybrid_index), "--json").stdout)
    assert info["default_mode"] == "hybrid" and info["lexical"]["documents"] == 4


def test_lexical_mode_finds_exact_terms_and_writes_trec(hybrid_index):
    found = hits(invoke("search", str(hybrid_index), "dpkg", "--mode", "lexical", "--json"))
    assert [h["id"] for h in found] == ["d2"] and "ranks" not in found[0]
    trec = invoke("search", str(hybrid_index), "dpkg", "--mode", "lexical", "--format", "trec")
    assert trec.stdout.startswith("0 Q0 d2 1 ")


def test_convex_fusion_and_where_work_in_hybrid_mode(hybrid_index, tiny_model_dir):
    found = hits(invoke("search", str(hybrid_index), "file", "--fusion", "convex", "--alpha", "0.2", "--where", "title=Permissions",
                        "--json", "-m", str(tiny_model_dir)))
    assert [h["id"] for h in found] == ["d4"]


@pytest.mark.parametrize("args, message", [
    (["--alpha", "1.5", "--fusion", "convex"], "--alpha must be between 0 and 1"),
    (["--mode", "sparse"], "unknown mode 'sparse'"),
])
def test_bad_hybrid_options_are_one_line_usage_errors(hybrid_index, args, message):
    result = invoke("search", str(hybrid_index), "file", *args)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_text_modes_refuse_a_dense_only_index(tmp_path, hybrid_index, beir, tiny_model_dir):
    vectors = invoke("embed", "-m", str(tiny_model_dir), "-q", str(beir / "corpus.jsonl")).stdout
    assert invoke("index", "build", "-q", "-o", str(tmp_path / "dense.idx"), input=vectors).exit_code == 0
    result = invoke("search", str(tmp_path / "dense.idx"), "file", "--mode", "lexical")
    assert result.exit_code == 2 and "build it with --lexical" in result.stderr


def test_a_record_without_text_is_refused_by_index_build_lexical(tmp_path):
    record = {"id": "x", "embedding": [1.0, 0.0], "vecpipe": {"model": "m", "dim": 2, "normalized": True}}
    result = invoke("index", "build", "--lexical", "-o", str(tmp_path / "x.idx"), input=json.dumps(record) + "\n")
    assert result.exit_code == 3 and "<stdin>:1: record has no text in 'text'" in result.stderr
    assert not (tmp_path / "x.idx").exists()


def test_eval_retrieval_lexical_embeds_nothing_and_hybrid_records_its_fusion(beir, tiny_model_dir):
    base = ["eval", "retrieval", "--corpus", str(beir / "corpus.jsonl"), "--queries", str(beir / "queries.jsonl"),
            "--qrels", str(beir / "qrels" / "test.tsv"), "--json", "-q"]
    lexical = json.loads(invoke(*base, "--mode", "lexical", "-m", "/nonexistent-model").stdout)
    assert lexical["main_score"] == 1.0 and "model" not in lexical["vecpipe"]
    assert lexical["vecpipe"]["parameters"]["mode"] == "lexical" and lexical["vecpipe"]["parameters"]["lexical"]["stem"] is True
    hybrid = invoke(*base, "--mode", "hybrid", "--fusion", "convex", "--alpha", "0.3", "-m", str(tiny_model_dir))
    parameters = json.loads(hybrid.stdout)["vecpipe"]["parameters"]
    assert parameters["mode"] == "hybrid" and parameters["fusion"] == "convex" and parameters["alpha"] == 0.3


def test_eval_fuse_fuses_runs_from_any_retriever(tmp_path, beir):
    (tmp_path / "a.trec").write_text("q1 Q0 d1 1 9.0 a\nq1 Q0 d2 2 5.0 a\nq2 Q0 d3 1 3.0 a\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"query_id": "q1", "id": "d2", "score": 0.9}) + "\n"
                                      + json.dumps({"query_id": "q2", "id": "d2", "score": 0.8}) + "\n")
    fused = invoke("eval", "fuse", str(tmp_path / "a.trec"), str(tmp_path / "b.jsonl"))
    assert fused.exit_code == 0, fused.stderr
    lines = [line.split() for line in fused.stdout.splitlines()]
    assert [(q, d, r) for q, _, d, r, _, _ in lines] == [("q1", "d2", "1"), ("q1", "d1", "2"), ("q2", "d3", "1"), ("q2", "d2", "2")]
    assert float(lines[0][4]) == pytest.approx(1 / 62 + 1 / 61) and lines[0][5] == "fused"
    scored = invoke("eval", "retrieval", "--qrels", str(beir / "qrels" / "test.tsv"), "--json", input=fused.stdout)
    assert scored.exit_code == 0 and json.loads(scored.stdout)["scores"]["test"][0]["recall_at_10"] == 1.0  # q3 is not in the run: left out
    convex = invoke("eval", "fuse", str(tmp_path / "a.trec"), str(tmp_path / "b.jsonl"), "--fusion", "convex", "--weights", "1,0")
    assert [line.split()[2] for line in convex.stdout.splitlines()][:2] == ["d1", "d2"]


@pytest.mark.parametrize("args, message", [
    (["--fusion", "convex", "--weights", "1"], "--weights wants 2 non-negative numbers"),
    (["--alpha", "0.5"], "--weights and --alpha apply to --fusion convex"),
])
def test_eval_fuse_bad_weights(tmp_path, args, message):
    for name in ("a", "b"):
        (tmp_path / f"{name}.trec").write_text("q Q0 d 1 1.0 x\n")
    result = invoke("eval", "fuse", str(tmp_path / "a.trec"), str(tmp_path / "b.trec"), *args)
    assert result.exit_code == 2 and message in result.stderr


def test_eval_retrieval_index_embeds_text_queries_as_search_does(hybrid_index, beir, tiny_model_dir, tmp_path):
    """--index with BEIR text queries: the same query encoder as `vecpipe search`, so the run equals
    the one from query vector records that `vecpipe embed --prompt query` made."""
    qrels = str(beir / "qrels" / "test.tsv")
    from_text = invoke("eval", "retrieval", "--index", str(hybrid_index), "--queries", str(beir / "queries.jsonl"), "--qrels", qrels,
                       "--mode", "dense", "-m", str(tiny_model_dir), "--json")
    assert from_text.exit_code == 0, from_text.stderr
    vectors = tmp_path / "queries.vectors.jsonl"
    assert invoke("embed", "-m", str(tiny_model_dir), "--prompt", "query", "-q", "-o", str(vectors), str(beir / "queries.jsonl")).exit_code == 0
    from_vectors = invoke("eval", "retrieval", "--index", str(hybrid_index), "--queries", str(vectors), "--qrels", qrels, "--mode", "dense", "--json")
    assert from_vectors.exit_code == 0, from_vectors.stderr
    text_scores, vector_scores = (json.loads(r.stdout)["scores"]["test"][0] for r in (from_text, from_vectors))
    assert text_scores.keys() == vector_scores.keys()
    assert all(text_scores[k] == pytest.approx(vector_scores[k], abs=1e-9) for k in text_scores if isinstance(text_scores[k], float))
    hybrid = invoke("eval", "retrieval", "--index", str(hybrid_index), "--queries", str(beir / "queries.jsonl"), "--qrels", qrels,
                    "-m", str(tiny_model_dir), "--json")
    assert hybrid.exit_code == 0, hybrid.stderr
    assert json.loads(hybrid.stdout)["vecpipe"]["parameters"]["mode"] == "hybrid"  # the index's default, with the query text
