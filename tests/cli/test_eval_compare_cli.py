"""`vecpipe eval compare`: MTEB-shaped result files read back into one table."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vecpipe.cli import app


def result(path, task="scifact", split="test", ndcg=0.6, recall=0.9, **parameters):
    document = {"task_name": task, "main_score": ndcg,
                "scores": {split: [{"ndcg_at_10": ndcg, "recall_at_100": recall, "main_score": ndcg, "hf_subset": "default"}]},
                "vecpipe": {"version": "0.1.0", "model": {"name": "m", "sha256": "ab"},
                            "parameters": {"mode": "dense", "dim": 384, **parameters}, "search": {"bytes_per_vector": 1536, "qps": 900.0}}}
    path.write_text(json.dumps(document))
    return str(path)


def invoke(*args):
    return CliRunner().invoke(app, ["eval", "compare", *args])


def rows(outcome) -> list[dict]:
    assert outcome.exit_code == 0, outcome.stderr
    return [json.loads(line) for line in outcome.stdout.splitlines()]


def test_one_row_per_file_with_settings_metrics_sort_and_baseline(tmp_path):
    a = result(tmp_path / "a.json", ndcg=0.6, dim=384)
    b = result(tmp_path / "b.json", ndcg=0.66, dim=128, mode="hybrid")
    out = rows(invoke(a, b, "--metric", "ndcg_at_10,recall_at_100", "--sort", "ndcg_at_10", "--baseline", a))
    assert [r["file"] for r in out] == [b, a]
    assert out[0]["mode"] == "hybrid" and out[0]["dim"] == 128 and out[0]["model"] == "m" and out[0]["model_sha256"] == "ab"
    assert out[0]["ndcg_at_10_vs_baseline"] == pytest.approx(0.66 / 0.6) and out[1]["ndcg_at_10_vs_baseline"] == 1.0


def test_mtebs_own_result_files_are_read(tmp_path):
    own = tmp_path / "SciFact.json"
    own.write_text(json.dumps({"dataset_revision": "x", "task_name": "scifact", "mteb_version": "1.12.0", "evaluation_time": 3.0,
                               "scores": {"test": [{"ndcg_at_10": 0.64508, "main_score": 0.64508, "hf_subset": "default", "languages": ["eng-Latn"]}]}}))
    out = rows(invoke(str(own), result(tmp_path / "ours.json", ndcg=0.64508), "--metric", "ndcg_at_10"))
    assert out[0]["version"] == "mteb 1.12.0" and out[0]["ndcg_at_10"] == out[1]["ndcg_at_10"]


def test_a_table_on_a_terminal_shows_only_the_settings_that_differ(tmp_path, monkeypatch):
    monkeypatch.setattr("vecpipe.cli.common.stdout_is_terminal", lambda: True)
    outcome = invoke(result(tmp_path / "a.json", dim=384), result(tmp_path / "b.json", dim=64), "--metric", "ndcg_at_10")
    assert outcome.exit_code == 0 and "dim" in outcome.stdout and "mode" not in outcome.stdout


def test_the_plot_draws_quality_against_bytes(tmp_path):
    pytest.importorskip("matplotlib")
    outcome = invoke(result(tmp_path / "a.json"), result(tmp_path / "b.json", ndcg=0.5), "--plot", str(tmp_path / "q.png"), "--json")
    assert outcome.exit_code == 0 and (tmp_path / "q.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("case, message", [
    ("not json", "not a result file: not valid JSON"),
    ("sweep", "not an MTEB-shaped result"),
    ("metric", "no file has the metric 'map_at_3'"),
    ("mixed", "results from different datasets or splits (nfcorpus (test), scifact (test)) do not compare"),
])
def test_bad_input_is_one_line_and_exit_3(tmp_path, case, message):
    good = result(tmp_path / "good.json")
    other = tmp_path / "other.json"
    if case == "not json":
        other.write_text("{nope")
    elif case == "sweep":
        other.write_text(json.dumps({"task_name": "scifact", "rows": []}))
    elif case == "mixed":
        result(other, task="nfcorpus")
    else:
        result(other)
    args = [good, str(other)] + (["--metric", "map_at_3"] if case == "metric" else [])
    outcome = invoke(*args)
    assert outcome.exit_code == 3 and message in outcome.stderr and len(outcome.stderr.splitlines()) == 1
    if case == "mixed":
        assert len(rows(invoke(*args, "--allow-mixed"))) == 2
