"""Decoder embedders (Qwen3, Gemma3 text) against sentence-transformers, on the tiny checkpoints of
tests/fixtures/make_family_checkpoints.py: GQA, sliding windows shorter than the texts, last-token
pooling (Qwen3, padded on the left by sentence-transformers), bidirectional attention and Dense
layers (Gemma3). test_families.py also runs the shared family checks (chunking, --layer, int8) on both."""
from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest

from conftest import FIXTURES
from vecpipe.core.errors import ModelError
from vecpipe.core.models.convert import convert
from vecpipe.core.models.model import Model

TEXTS = [json.loads(line)["text"] for line in open(FIXTURES / "family_texts.jsonl", encoding="utf-8")]
DECODERS = ("qwen3", "gemma3")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def converted(tmp_path, name: str, edit=None) -> Model:
    """The fixture `name` converted, after `edit(config)` changed its config.json when given."""
    source = FIXTURES / "families" / name
    if edit is not None:
        source = shutil.copytree(source, tmp_path / f"{name}-edited")
        config = json.loads((source / "config.json").read_text())
        edit(config)
        (source / "config.json").write_text(json.dumps(config))
    out = tmp_path / f"{name}-out-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    convert(source, out, name)
    return Model(out)


@pytest.fixture(scope="module", params=DECODERS)
def decoder(request, tmp_path_factory):
    return request.param, converted(tmp_path_factory.mktemp(request.param), request.param)


def test_vectors_match_sentence_transformers_at_batch_size_32_and_1(decoder):
    name, model = decoder
    together = model.embed(TEXTS)
    one_by_one = np.vstack([model.embed([text]) for text in TEXTS])
    assert cosines(together, np.load(FIXTURES / "families" / name / "reference.npy")).min() >= 0.9999
    assert cosines(one_by_one, np.load(FIXTURES / "families" / name / "reference-bs1.npy")).min() >= 0.9999


def test_the_query_prompt_matches_sentence_transformers(decoder):
    name, model = decoder
    assert model.prompts["query"] == {"qwen3": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
                                      "gemma3": "task: search result | query: "}[name]
    queries = model.embed(TEXTS, prompt="query")
    assert cosines(queries, np.load(FIXTURES / "families" / name / "reference-query.npy")).min() >= 0.9999


def test_special_tokens_and_pooling_are_the_checkpoints(decoder):
    name, model = decoder
    head, tail = model.special_tokens
    assert (len(head), len(tail)) == {"qwen3": (0, 1), "gemma3": (1, 1)}[name]
    assert model.manifest["pooling"] == {"qwen3": "last", "gemma3": "mean"}[name]
    assert len(model.manifest.get("dense", [])) == {"qwen3": 0, "gemma3": 2}[name]


@pytest.mark.parametrize("name, edit", [
    ("qwen3", lambda c: c.update(sliding_window=64)),  # wider than every text: the window no longer cuts
    ("qwen3", lambda c: c.update(rope_parameters={"rope_type": "default", "rope_theta": 50.0})),
    ("gemma3", lambda c: c.update(sliding_window=200)),
    ("gemma3", lambda c: c.update(use_bidirectional_attention=False)),
    ("gemma3", lambda c: c.update(query_pre_attn_scalar=256)),
])
def test_each_config_setting_changes_the_vectors_so_parity_really_tests_it(tmp_path, name, edit):
    """Parity above holds only if the window, attention direction, RoPE base and scale are read
    right: changing any of them moves the vectors of the long texts well away from the reference."""
    reference = np.load(FIXTURES / "families" / name / "reference.npy")
    assert cosines(converted(tmp_path, name, edit).embed(TEXTS), reference).min() < 0.999


def _transformers_4_spelling(config: dict) -> None:
    """The same settings as transformers 4.x wrote them: top-level RoPE bases, a sliding pattern."""
    rope = config.pop("rope_parameters")
    config.pop("layer_types")
    if "full_attention" in rope:  # gemma3: layers S, S, F, S are pattern 3
        config.update(rope_theta=rope["full_attention"]["rope_theta"], rope_local_base_freq=rope["sliding_attention"]["rope_theta"],
                      sliding_window_pattern=3)
    else:  # qwen3: sliding from max_window_layers on
        config.update(rope_theta=rope["rope_theta"])


@pytest.mark.parametrize("name", DECODERS)
def test_transformers_4_config_spelling_gives_the_same_vectors(tmp_path, name):
    reference = np.load(FIXTURES / "families" / name / "reference.npy")
    assert cosines(converted(tmp_path, name, _transformers_4_spelling).embed(TEXTS), reference).min() >= 0.9999


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}), "RoPE type 'yarn' is not supported"),
    (lambda c: c.update(layer_types=["full_attention"]), "layer_types must name"),
    (lambda c: c.update(num_attention_heads=0), "positive integer 'num_attention_heads'"),
])
def test_unsupported_settings_are_one_line_naming_config_json(tmp_path, edit, message):
    with pytest.raises(ModelError, match=message) as caught:
        converted(tmp_path, "qwen3", edit)
    assert "config.json" in str(caught.value) and "\n" not in str(caught.value)


def test_npy_output_and_chunking_work_end_to_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vecpipe.cli import app

    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(t for t in TEXTS if t.strip() and "\n" not in t) + "\n", encoding="utf-8")
    out = tmp_path / "vectors.npy"
    runner = CliRunner()
    result = runner.invoke(app, ["embed", "-m", str(FIXTURES / "families" / "qwen3"), "-q", "--format", "npy", "-o", str(out), str(source)])
    assert result.exit_code == 0, result.output
    assert np.load(out).shape[1] == 32
    chunked = runner.invoke(app, ["embed", "-m", str(FIXTURES / "families" / "gemma3"), "-q", "--on-long", "chunk", "--max-tokens", "16"],
                            " ".join(TEXTS[50:54]) + "\n")
    assert chunked.exit_code == 0, chunked.output
    assert len(chunked.stdout.splitlines()) > 3  # one row per chunk


def test_a_known_decoder_name_is_pulled_from_the_hub_and_converted(tmp_path, monkeypatch):
    """The real Qwen3-Embedding-0.6B is not on the package registry: the hub path is tested with a local fake."""
    from vecpipe.core.models import registry

    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))
    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append(repo_id)
        return str(FIXTURES / "families" / "qwen3")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    model = Model(registry.resolve("Qwen3-Embedding-0.6B"))
    assert calls == ["Qwen/Qwen3-Embedding-0.6B"] and model.manifest["architecture"] == "qwen3"
    assert cosines(model.embed(TEXTS[:10]), np.load(FIXTURES / "families" / "qwen3" / "reference.npy")[:10]).min() >= 0.9999
