"""`vecpipe eval classification` through the real entry point, on the tiny random BERT."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from vecpipe.cli import app


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_result_is_mteb_shaped_with_provenance_and_a_second_run_embeds_nothing(tmp_path, tiny_model_dir):
    folder = tmp_path / "toy"
    folder.mkdir()
    topics = {"pets": "my cat and dog", "money": "bank card payment", "travel": "train ticket to paris"}
    train = _write(folder / "train.jsonl", [{"text": f"{t} {i}", "label": k} for i in range(12) for k, t in topics.items()])
    test = _write(folder / "test.jsonl", [{"text": f"{t} again {i}", "label": k} for i in range(4) for k, t in topics.items()])
    args = ["eval", "classification", "--train", str(train), "--test", str(test), "-m", str(tiny_model_dir),
            "--n-experiments", "3", "--samples-per-label", "4", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.stderr
    out = json.loads(first.stdout)
    entry = out["scores"]["test"][0]
    assert out["task_name"] == "toy" and out["main_score"] == entry["accuracy"] == entry["main_score"]
    assert len(entry["scores_per_experiment"]) == 3 and 0 <= entry["f1"] <= 1
    provenance = out["vecpipe"]
    assert provenance["command"] == "eval classification" and provenance["model"]["name"] == "tiny-bert"
    assert provenance["parameters"]["samples_per_label"] == 4 and provenance["parameters"]["seed"] == 42
    assert set(provenance["inputs"]) == {"train", "test"}
    second = CliRunner().invoke(app, args)
    assert json.loads(second.stdout)["scores"] == out["scores"]
    assert json.loads(second.stdout)["vecpipe"]["embeddings"]["embedded"] == 0


def test_bad_rows_are_one_line_with_exit_3(tmp_path, tiny_model_dir):
    train = _write(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": None}])
    result = CliRunner().invoke(app, ["eval", "classification", "--train", str(train), "--test", str(train), "-m", str(tiny_model_dir)])
    assert result.exit_code == 3
    assert result.stderr == f"vecpipe eval classification: {train}:2: missing label field 'label' (a string or a number)\n"


def test_out_of_range_options_are_usage_errors(tmp_path):
    train = _write(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}])
    result = CliRunner().invoke(app, ["eval", "classification", "--train", str(train), "--test", str(train), "--n-experiments", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
