"""Static embeddings against the libraries that wrote them, on two tiny checkpoints made by
tests/fixtures/make_family_checkpoints.py: a model2vec StaticModel (vocabulary-quantized, with
per-token weights, max_length 40, normalize) and a sentence-transformers StaticEmbedding (with
a query prompt, no Normalize)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FIXTURES
from vecpipe.cli import app
from vecpipe.core.errors import ModelError
from vecpipe.core.models.batching import EmbedOptions, embed_texts
from vecpipe.core.models.convert import convert
from vecpipe.core.models.kinds import open_model
from vecpipe.core.models.static import StaticModel

TEXTS = [json.loads(line)["text"] for line in open(FIXTURES / "family_texts.jsonl", encoding="utf-8")]
STATIC = FIXTURES / "families"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine per row; two zero vectors (a text with no tokens left) agree."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms == 0, (np.abs(a).sum(1) + np.abs(b).sum(1) == 0).astype(float), (a * b).sum(1) / np.maximum(norms, 1e-30))


@pytest.fixture(scope="module", params=["static-model2vec", "static-st"])
def static(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    convert(STATIC / request.param, out, request.param)
    return request.param, open_model(out)


def test_vectors_match_the_library_that_wrote_the_checkpoint(static):
    name, model = static
    assert isinstance(model, StaticModel) and model.manifest["architecture"] == "static"
    reference = np.load(STATIC / name / "reference.npy")
    assert cosines(model.embed(TEXTS), reference).min() >= 0.9999


def test_model2vec_drops_the_unknown_token_and_truncates_at_max_length():
    """The fixture's tokenizer never saw the unicode texts, so [UNK] is frequent; and the long texts
    are past max_length 40: parity above holds only if both rules are followed."""
    from vecpipe.core.models.checkpoint import load_tokenizer

    tokenizer = load_tokenizer(STATIC / "static-model2vec" / "tokenizer.json")
    tokenizer.no_truncation()  # model2vec saves its max_length there; vecpipe counts tokens itself
    unk = tokenizer.token_to_id("[UNK]")
    ids = [e.ids for e in tokenizer.encode_batch(TEXTS, add_special_tokens=False)]
    assert sum(unk in seq for seq in ids) >= 5
    assert sum(len(seq) > 40 for seq in ids) >= 10
    assert any(seq and set(seq) == {unk} for seq in ids)  # a text of nothing but [UNK]: the zero vector


def test_sentence_transformers_layout_keeps_unknown_tokens_and_applies_its_prompt(tmp_path):
    convert(STATIC / "static-st", tmp_path, "static-st")
    model = open_model(tmp_path)
    assert model.drop_token_id is None and model.normalize is False
    query = model.embed(TEXTS, prompt="query")
    assert cosines(query, np.load(STATIC / "static-st" / "reference-query.npy")).min() >= 0.9999
    assert cosines(query, model.embed(TEXTS)).min() < 0.99  # the prompt really changes the vectors


def test_batch_size_and_text_order_do_not_change_a_vector(static):
    _, model = static
    together = model.embed(TEXTS)
    alone = np.vstack([model.embed([text]) for text in TEXTS[::5]])
    reversed_order = model.embed(TEXTS[::-1])[::-1]
    assert np.array_equal(together[::5], alone) and np.array_equal(together, reversed_order)


def test_chunking_averages_windows_of_the_text(static):
    _, model = static
    long_text = " ".join(TEXTS[50:58])
    chunked = embed_texts(model, [long_text], EmbedOptions(on_long="chunk", max_tokens=16, aggregate="mean"))
    whole = embed_texts(model, [long_text], EmbedOptions(max_tokens=16))
    assert chunked.shape == (1, model.dim) and np.isfinite(chunked).all()
    assert cosines(chunked, whole)[0] < 0.9999  # chunks cover the whole text, truncation only its start


def test_layers_pooling_and_int8_are_refused_with_a_reason(tmp_path):
    from vecpipe.core.models.optimize import make_variant

    with pytest.raises(ModelError, match="no layers"):
        convert(STATIC / "static-st", tmp_path, "s", layers=1)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    convert(STATIC / "static-st", model_dir, "s")
    with pytest.raises(ModelError, match="averages"):
        open_model(model_dir, pooling="cls")
    (tmp_path / "int8").mkdir()
    with pytest.raises(ModelError, match="static table"):
        make_variant(model_dir, tmp_path / "int8", "int8")


@pytest.mark.parametrize("damage, message", [
    (lambda d: _save(d, {"other": np.zeros((3, 4), np.float32)}), "neither a model2vec"),
    (lambda d: _save(d, {"embeddings": np.zeros((10, 4), np.float32)}), "rows but the tokenizer has"),
    (lambda d: _save(d, {"embeddings": np.zeros((5, 4), np.float32), "mapping": np.full(20000, 9, np.int64)}), "'mapping' must be"),
    (lambda d: (d / "tokenizer.json").write_text("{not json"), "not a usable tokenizer"),
    (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "unreadable"),
    (lambda d: (d / "config.json").write_text(json.dumps({"model_type": "model2vec", "max_length": "long"})), "max_length"),
])
def test_broken_static_checkpoints_are_one_error_naming_the_file(tmp_path, damage, message):
    broken = tmp_path / "broken"
    shutil.copytree(STATIC / "static-model2vec", broken)
    damage(broken)
    (tmp_path / "out").mkdir()
    with pytest.raises(ModelError, match=message) as caught:
        convert(broken, tmp_path / "out", "broken")
    assert str(broken) in str(caught.value) and "\n" not in str(caught.value)


def _save(directory, tensors):
    from safetensors.numpy import save_file

    save_file(tensors, str(directory / "model.safetensors"))


def test_embed_and_search_run_on_a_static_checkpoint_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    checkpoint = str(STATIC / "static-model2vec")
    kept = [i for i, t in enumerate(TEXTS) if t]  # embed refuses an empty text field
    texts = "".join(json.dumps({"id": i, "text": TEXTS[i]}) + "\n" for i in kept)
    embedded = runner.invoke(app, ["embed", "-m", checkpoint, "-q"], texts)
    assert embedded.exit_code == 0, embedded.output
    rows = [json.loads(line) for line in embedded.stdout.splitlines()]
    reference = np.load(STATIC / "static-model2vec" / "reference.npy")
    assert cosines(np.array([r["embedding"] for r in rows], np.float32), reference[kept]).min() >= 0.9999
    assert rows[0]["vecpipe"]["model"] == "static-model2vec"
    index = str(tmp_path / "static.idx")
    assert runner.invoke(app, ["index", "build", "-o", index, "-q"], embedded.stdout).exit_code == 0
    hit = runner.invoke(app, ["search", index, TEXTS[3], "-k", "1"])
    assert hit.exit_code == 0, hit.output
    assert json.loads(hit.stdout)["id"] == 3
    info = runner.invoke(app, ["models", "info", checkpoint])
    assert json.loads(info.stdout)["static"]["library"] == "model2vec"
