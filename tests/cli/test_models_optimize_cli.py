"""`vecpipe models optimize`, `convert --graph` and `info --verify` through the real entry point."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vecpipe.cli import app

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_optimize_int8_into_the_cache_then_embed_with_name_colon_int8(home, tiny_checkpoint):
    result = runner.invoke(app, ["models", "optimize", str(tiny_checkpoint), "--int8"])
    assert result.exit_code == 0, result.output
    assert "use it with -m tiny-bert:int8" in result.stderr
    assert (home / "models" / "tiny-bert@int8" / "vecpipe.json").exists()
    embedded = runner.invoke(app, ["embed", "-m", "tiny-bert:int8", "-q"], "hello\n")
    assert embedded.exit_code == 0, embedded.output
    provenance = json.loads(embedded.stdout)["vecpipe"]
    assert provenance["model"] == "tiny-bert:int8" and provenance["variant"] == "int8"


def test_an_int8_index_embeds_queries_with_int8_and_refuses_fp32_vectors(home, tiny_checkpoint, tmp_path):
    runner.invoke(app, ["models", "path", str(tiny_checkpoint)])  # cache tiny-bert, the variant's base
    texts = "red apples\ngreen pears\nblue whales\n"
    int8_vectors = runner.invoke(app, ["embed", "-m", "tiny-bert:int8", "-q"], texts).stdout
    index = str(tmp_path / "int8.idx")
    assert runner.invoke(app, ["index", "build", "-o", index, "-q"], int8_vectors).exit_code == 0
    hits = runner.invoke(app, ["search", index, "blue whales", "-k", "1"])
    assert hits.exit_code == 0, hits.output
    assert json.loads(hits.stdout)["id"] == 2  # the query was embedded with the same int8 variant
    fp32_vectors = runner.invoke(app, ["embed", "-m", "tiny-bert", "-q"], "blue whales\n").stdout
    refused = runner.invoke(app, ["search", index], fp32_vectors)
    assert refused.exit_code != 0 and "tiny-bert:int8" in refused.stderr


def test_optimize_to_a_directory_with_own_calibration(home, tiny_model_dir, tmp_path):
    texts = tmp_path / "calibration.txt"
    texts.write_text("first calibration text\nsecond one, a little longer than the first\n")
    out = tmp_path / "tiny-int8"
    result = runner.invoke(app, ["models", "optimize", str(tiny_model_dir), "--int8", "--calibration", str(texts), "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "vecpipe.json").read_text())
    assert manifest["variant"] == "int8" and manifest["quantization"]["calibration_texts"] == 2
    assert runner.invoke(app, ["embed", "-m", str(out), "-q"], "hi\n").exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--int8", "-o", "{existing}"], "already exists"),
        ([], "--int8"),
    ],
)
def test_optimize_usage_errors(home, tiny_model_dir, tmp_path, args, message):
    args = [a.replace("{existing}", str(tmp_path)) for a in args]
    result = runner.invoke(app, ["models", "optimize", str(tiny_model_dir), *args])
    assert result.exit_code == 2 and message in result.stderr


def test_convert_plain_graph_is_the_reference_form(tiny_checkpoint, tmp_path):
    out = tmp_path / "plain"
    result = runner.invoke(app, ["models", "convert", str(tiny_checkpoint), "-o", str(out), "--graph", "plain"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "vecpipe.json").read_text())["graph"] == "plain"
    assert runner.invoke(app, ["models", "convert", str(tiny_checkpoint), "-o", str(tmp_path / "x"), "--graph", "turbo"]).exit_code == 2


def test_info_verify_rehashes_and_catches_a_changed_file(home, tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    ok = runner.invoke(app, ["models", "info", str(copy), "--verify"])
    assert ok.exit_code == 0 and "matches its sha256" in ok.stderr
    with open(copy / "model.onnx", "r+b") as fh:
        fh.write(b"x")
    bad = runner.invoke(app, ["models", "info", str(copy), "--verify"])
    assert bad.exit_code == 4 and "does not match the sha256" in bad.stderr


def test_models_list_known_prints_the_catalogue_with_local_presence():
    import json as _json

    from typer.testing import CliRunner

    from vecpipe.cli import app

    result = CliRunner().invoke(app, ["models", "list", "--known"])
    assert result.exit_code == 0, result.stderr
    rows = [_json.loads(line) for line in result.stdout.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["multilingual-e5-small"]["family"] == "xlm-roberta" and by_name["multilingual-e5-small"]["prompts"]["query"] == "query: "
    assert {"family", "dim", "max_tokens", "prompts", "matryoshka_dims", "licence", "local"} <= set(rows[0])
    assert by_name["bge-m3"]["local"] is False
