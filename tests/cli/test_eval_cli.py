"""`vecpipe eval retrieval` through the real entry point: inputs, edge cases, output shapes, errors."""
from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from vecpipe.cli import app
from vecpipe.core.eval.metrics import evaluate_retrieval

QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq2\td3\t1\n"
RUN_TREC = "q1 Q0 d2 1 0.9 bm25\nq1 Q0 d9 2 0.8 bm25\nq1 Q0 d1 3 0.7 bm25\nq2 Q0 d4 1 0.6 bm25\nq2 Q0 d3 2 0.5 bm25\n"
RUN = {"q1": {"d2": 0.9, "d9": 0.8, "d1": 0.7}, "q2": {"d4": 0.6, "d3": 0.5}}
JUDGMENTS = {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 1}}


@pytest.fixture
def qrels_file(tmp_path):
    path = tmp_path / "mini" / "qrels" / "test.tsv"
    path.parent.mkdir(parents=True)
    path.write_text(QRELS)
    return path


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, ["eval", "retrieval", *args], input=input)


def as_jsonl(run: dict) -> str:
    hits = []
    for qid, docs in run.items():
        for rank, (doc, score) in enumerate(docs.items(), start=1):
            hits.append(json.dumps({"query_id": qid, "rank": rank, "id": doc, "score": score, "text": "..."}))
    return "\n".join(hits) + "\n"


def test_scores_a_trec_run_from_stdin_as_mteb_shaped_json(qrels_file):
    result = invoke("--qrels", str(qrels_file), input=RUN_TREC)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    expected = evaluate_retrieval(RUN, JUDGMENTS, [1, 3, 5, 10, 100, 1000])
    assert out["task_name"] == "mini"
    assert out["main_score"] == expected.averages["ndcg_at_10"]
    entry = out["scores"]["test"][0]
    assert entry["hf_subset"] == "default"
    assert entry["main_score"] == out["main_score"]
    for key in ("ndcg_at_10", "map_at_10", "recall_at_10", "precision_at_10", "mrr_at_10", "hit_rate_at_1000"):
        assert entry[key] == expected.averages[key]
    assert out["evaluation_time"] >= 0
    provenance = out["vecpipe"]
    assert provenance["inputs"]["run"] == {
        "path": "<stdin>",
        "format": "trec",
        "sha256": hashlib.sha256(RUN_TREC.encode()).hexdigest(),
    }
    assert provenance["inputs"]["qrels"]["sha256"] == hashlib.sha256(QRELS.encode()).hexdigest()
    assert provenance["parameters"] == {"k_values": [1, 3, 5, 10, 100, 1000], "complete": False, "main_metric": "ndcg_at_10",
                                        "ignore_identical_ids": False, "score_precision": "float64"}
    assert provenance["queries"] == {"evaluated": 2, "missing_from_run": 0, "not_in_qrels": 0, "without_relevant": 0}


def test_jsonl_search_hits_from_a_file_score_the_same_as_the_trec_run(qrels_file, tmp_path):
    hits = tmp_path / "hits.jsonl"
    hits.write_text(as_jsonl(RUN))
    from_jsonl = json.loads(invoke("--qrels", str(qrels_file), "--run", str(hits)).stdout)
    from_trec = json.loads(invoke("--qrels", str(qrels_file), input=RUN_TREC).stdout)
    assert from_jsonl["scores"] == from_trec["scores"]
    assert from_jsonl["vecpipe"]["inputs"]["run"]["format"] == "jsonl"


def test_k_list_always_includes_the_main_cutoff(qrels_file):
    out = json.loads(invoke("--qrels", str(qrels_file), "--k", "3,1", input=RUN_TREC).stdout)
    assert out["vecpipe"]["parameters"]["k_values"] == [1, 3, 10]
    assert "ndcg_at_100" not in out["scores"]["test"][0]


def test_empty_run_is_a_data_error_unless_complete(qrels_file):
    result = invoke("--qrels", str(qrels_file), input="")
    assert result.exit_code == 3
    assert "nothing to score" in result.stderr
    complete = invoke("--qrels", str(qrels_file), "--complete", input="")
    assert complete.exit_code == 0, complete.stderr
    assert json.loads(complete.stdout)["main_score"] == 0.0


def test_unknown_query_ids_are_ignored_with_a_warning(qrels_file):
    result = invoke("--qrels", str(qrels_file), input=RUN_TREC + "stray Q0 d1 1 9.0 bm25\n")
    assert result.exit_code == 0
    assert "1 queries of the run are not in the qrels; they are ignored" in result.stderr
    assert json.loads(result.stdout)["vecpipe"]["queries"]["not_in_qrels"] == 1


def test_judged_queries_missing_from_the_run_are_reported(qrels_file):
    only_q1 = "q1 Q0 d1 1 0.9 x\n"
    skipped = invoke("--qrels", str(qrels_file), input=only_q1)
    assert "1 judged queries have no results in the run" in skipped.stderr
    assert json.loads(skipped.stdout)["main_score"] == evaluate_retrieval({"q1": {"d1": 0.9}}, JUDGMENTS, [10]).main_score
    complete = json.loads(invoke("--qrels", str(qrels_file), "-c", input=only_q1).stdout)
    assert complete["vecpipe"]["queries"]["evaluated"] == 2


def test_duplicate_documents_count_once_with_a_warning(qrels_file):
    result = invoke("--qrels", str(qrels_file), input=RUN_TREC + "q1 Q0 d1 4 0.1 bm25\n")
    assert result.exit_code == 0
    assert "1 documents listed twice for a query" in result.stderr
    plain = json.loads(invoke("--qrels", str(qrels_file), input=RUN_TREC).stdout)
    assert json.loads(result.stdout)["scores"] == plain["scores"]


def test_bad_qrels_columns_give_one_line_with_file_and_line(tmp_path):
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    result = invoke("--qrels", str(qrels), input=RUN_TREC)
    assert result.exit_code == 3
    assert result.stderr == f"vecpipe eval retrieval: {qrels}:2: expected 3 columns (query-id corpus-id score), found 2\n"
    assert "Traceback" not in result.output


def test_bad_run_score_names_stdin_and_line(qrels_file):
    result = invoke("--qrels", str(qrels_file), input="q1 Q0 d1 1 0.5 x\nq1 Q0 d2 2 high x\n")
    assert result.exit_code == 3
    assert result.stderr == "vecpipe eval retrieval: <stdin>:2: score 'high' is not a number (an ASCII decimal, as C's atof reads it)\n"


def test_missing_qrels_file_is_a_data_error(tmp_path):
    result = invoke("--qrels", str(tmp_path / "nope.tsv"), input=RUN_TREC)
    assert result.exit_code == 3
    assert "nope.tsv" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("k", ["0,10", "ten", ","])
def test_bad_k_is_a_usage_error(qrels_file, k):
    result = invoke("--qrels", str(qrels_file), "--k", k, input=RUN_TREC)
    assert result.exit_code == 2
    assert "--k wants comma-separated positive integers" in result.stderr


def test_output_dir_gets_one_file_per_task(qrels_file, tmp_path):
    out_dir = tmp_path / "results"
    result = invoke("--qrels", str(qrels_file), "--output", str(out_dir), "--task-name", "MiniRetrieval",
                    "--split", "dev", input=RUN_TREC)
    assert result.exit_code == 0
    written = json.loads((out_dir / "MiniRetrieval.json").read_text())
    assert written == json.loads(result.stdout)
    assert list(written["scores"]) == ["dev"]
    assert [p.name for p in out_dir.iterdir()] == ["MiniRetrieval.json"]  # no temp file left behind


def test_task_name_that_is_not_a_file_name_is_refused(qrels_file, tmp_path):
    result = invoke("--qrels", str(qrels_file), "--output", str(tmp_path), "--task-name", "../escape", input=RUN_TREC)
    assert result.exit_code == 2
    assert not (tmp_path.parent / "escape.json").exists()


def test_terminal_gets_a_table_and_json_flag_overrides(qrels_file, monkeypatch):
    monkeypatch.setattr("vecpipe.cli.eval.common.stdout_is_terminal", lambda: True)
    table = invoke("--qrels", str(qrels_file), input=RUN_TREC)
    assert table.exit_code == 0
    expected = evaluate_retrieval(RUN, JUDGMENTS, [10]).main_score
    assert f"mini (test): nDCG@10 {expected:.5f} over 2 queries" in table.stdout
    assert "HitRate" in table.stdout and "@1000" in table.stdout
    forced = invoke("--qrels", str(qrels_file), "--json", input=RUN_TREC)
    assert json.loads(forced.stdout)["main_score"] == expected


def test_run_and_qrels_cannot_both_be_stdin():
    result = invoke("--qrels", "-", input=RUN_TREC)
    assert result.exit_code == 2
    assert "both come from stdin" in result.stderr


def test_qrels_without_judgments_are_a_data_error(tmp_path):
    qrels = tmp_path / "empty.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n")
    result = invoke("--qrels", str(qrels), input=RUN_TREC)
    assert result.exit_code == 3
    assert result.stderr == f"vecpipe eval retrieval: {qrels}: no judgments found\n"


def test_ignore_identical_ids_drops_a_query_finding_itself(tmp_path):
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\td1\t1\nq2\td2\t1\n")
    run = "q1 Q0 q1 1 0.99 r\nq1 Q0 d1 2 0.5 r\nq2 Q0 d2 1 0.7 r\nq2 Q0 q2 2 0.6 r\n"
    kept = invoke("--qrels", str(qrels), "--json", input=run)
    dropped = invoke("--qrels", str(qrels), "--json", "--ignore-identical-ids", input=run)
    assert kept.exit_code == 0 and dropped.exit_code == 0, dropped.stderr
    assert json.loads(kept.stdout)["scores"]["test"][0]["precision_at_1"] == 0.5
    out = json.loads(dropped.stdout)
    assert out["scores"]["test"][0]["precision_at_1"] == 1.0
    assert out["vecpipe"]["parameters"]["ignore_identical_ids"] is True
    assert "2 hits whose document id is their query's id were dropped" in dropped.stderr


def test_float32_score_precision_reproduces_pytrec_eval_ties(tmp_path):
    """1.0 and 1 + 2**-30 differ as doubles but are equal as float32: the tie then goes to the higher doc id."""
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\ta\t1\n")
    run = f"q1 Q0 a 1 {1 + 2**-30!r} r\nq1 Q0 b 2 1.0 r\n"
    doubles = json.loads(invoke("--qrels", str(qrels), "--json", input=run).stdout)
    floats = json.loads(invoke("--qrels", str(qrels), "--json", "--score-precision", "float32", input=run).stdout)
    assert doubles["scores"]["test"][0]["precision_at_1"] == 1.0  # a ranks first on its larger double score
    assert floats["scores"]["test"][0]["precision_at_1"] == 0.0  # tied in float32: b before a (id descending)
    assert floats["vecpipe"]["parameters"]["score_precision"] == "float32"
    refused = invoke("--qrels", str(qrels), "--score-precision", "float16", input=run)
    assert refused.exit_code == 2 and "--score-precision must be float64 or float32" in refused.stderr


def test_a_run_sharing_no_query_with_the_qrels_names_the_run_file(tmp_path, qrels_file):
    run = tmp_path / "run.txt"
    run.write_text("zz Q0 d1 1 0.5 r\n")
    result = invoke("--qrels", str(qrels_file), "--run", str(run))
    assert result.exit_code == 3
    assert result.stderr == f"vecpipe eval retrieval: {run}: no query of the run is judged in the qrels, so there is nothing to score\n"


@pytest.mark.parametrize("where", ["file", "unmakeable"])
def test_output_onto_a_file_or_an_unusable_path_is_one_line(tmp_path, qrels_file, where):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    output = str(target) if where == "file" else str(target / "below")
    result = invoke("--qrels", str(qrels_file), "-o", output, input=RUN_TREC)
    assert result.exit_code in (2, 6)
    assert len(result.stderr.splitlines()) == 1 and output in result.stderr and "Traceback" not in result.output
    assert target.read_text() == "not a directory"
