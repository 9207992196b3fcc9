"""The torch-free converter, checked against a plain numpy BERT and against sentence-transformers."""
from __future__ import annotations

import json
from math import erf, sqrt

import numpy as np
import pytest

from conftest import FIXTURES, TINY_CONFIG, tiny_weights, write_tiny_checkpoint
from vecpipe.core.models.convert import GRAPH_FORMS, convert
from vecpipe.core.errors import ModelError
from vecpipe.core.models.model import Model

_erf = np.vectorize(erf)


def _layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def numpy_bert(w: dict, ids: list[int], layers: int, heads: int) -> np.ndarray:
    """Token embeddings of one unpadded sequence, written straight from the BERT paper's equations."""
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: len(ids)] + w["embeddings.token_type_embeddings.weight"][0]
    x = _layer_norm(x.astype(np.float64), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for i in range(layers):
        p = f"encoder.layer.{i}"
        lin = lambda v, name: v @ w[f"{p}.{name}.weight"].T + w[f"{p}.{name}.bias"]  # noqa: E731
        q, k, v = (lin(x, f"attention.self.{n}") for n in ("query", "key", "value"))
        d = x.shape[1] // heads
        ctx = np.zeros_like(x)
        for h in range(heads):
            s = slice(h * d, (h + 1) * d)
            scores = q[:, s] @ k[:, s].T / sqrt(d)
            probs = np.exp(scores - scores.max(1, keepdims=True))
            ctx[:, s] = (probs / probs.sum(1, keepdims=True)) @ v[:, s]
        x = _layer_norm(lin(ctx, "attention.output.dense") + x, w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"])
        inner = lin(x, "intermediate.dense")
        inner = 0.5 * inner * (1 + _erf(inner / sqrt(2)))
        x = _layer_norm(lin(inner, "output.dense") + x, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"])
    return x


TEXTS = ["hello world", "a somewhat longer sentence about cats, dogs and the weather", "x"]


def _reference(model: Model, pooling: str, layers: int) -> np.ndarray:
    w = tiny_weights(TINY_CONFIG)
    out = []
    for text in TEXTS:
        ids = model.tokenizer.encode(text).ids
        tokens = numpy_bert(w, ids, layers, TINY_CONFIG["num_attention_heads"])
        pooled = {"mean": tokens.mean(0), "cls": tokens[0], "max": tokens.max(0), "last": tokens[-1]}[pooling]
        out.append(pooled / np.linalg.norm(pooled))
    return np.array(out)


@pytest.mark.parametrize("graph_form", GRAPH_FORMS)
@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last"])
def test_converted_graph_matches_numpy_bert(tmp_path, pooling, graph_form):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt", pooling=pooling)
    out = tmp_path / "onnx"
    out.mkdir()
    convert(ckpt, out, "tiny", graph_form=graph_form)
    model = Model(out)
    got = model.embed(TEXTS)  # batched and padded: padding must not leak into results
    np.testing.assert_allclose(got, _reference(model, pooling, 2), atol=2e-5)


@pytest.mark.parametrize("graph_form", GRAPH_FORMS)
def test_layers_cut_keeps_first_layers(tmp_path, tiny_checkpoint, graph_form):
    out = tmp_path / "onnx1"
    out.mkdir()
    manifest = convert(tiny_checkpoint, out, "tiny", layers=1, graph_form=graph_form)
    assert manifest["layers"] == 1 and manifest["num_layers"] == 2
    model = Model(out)
    np.testing.assert_allclose(model.embed(TEXTS), _reference(model, "mean", 1), atol=2e-5)
    assert (out / "model.onnx.data").stat().st_size < (tiny_checkpoint / "model.safetensors").stat().st_size


def test_manifest_records_checkpoint_settings(tiny_model_dir, tiny_checkpoint):
    manifest = json.loads((tiny_model_dir / "vecpipe.json").read_text())
    assert manifest["pooling"] == "mean" and manifest["normalize"] is True
    assert manifest["max_tokens"] == 64 and manifest["dim"] == 32
    assert manifest["prompts"] == {"query": "query: ", "document": "passage: "}
    assert set(manifest["files"]) == {"model.onnx", "model.onnx.data", "tokenizer.json"}
    assert len(manifest["source_sha256"]["model.safetensors"]) == 64


def test_bert_prefixed_weight_names_are_accepted(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt", prefix="bert.")
    out = tmp_path / "onnx"
    out.mkdir()
    convert(ckpt, out, "tiny")
    assert Model(out).embed(["ok"]).shape == (1, 32)


def test_unknown_family_is_refused_naming_its_model_type_and_the_supported_ones(tmp_path, tiny_checkpoint):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    (ckpt / "config.json").write_text(json.dumps({**TINY_CONFIG, "model_type": "t5", "architectures": ["T5Model"]}))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelError, match=r"model_type 't5' is not supported; vecpipe converts bert") as refused:
        convert(ckpt, out, "t5")
    assert str(refused.value).startswith(str(ckpt / "config.json"))
    assert list(out.iterdir()) == []


def test_default_model_matches_sentence_transformers(default_model):
    """Parity on 256 fixed texts (85 longer than 256 tokens) against vectors made by sentence-transformers."""
    texts = [json.loads(line)["text"] for line in open(FIXTURES / "parity_texts.jsonl", encoding="utf-8")]
    reference = np.load(FIXTURES / "parity_reference.npy")
    cosines = (default_model.embed(texts) * reference).sum(1)
    assert cosines.min() >= 0.9999, f"worst text {int(cosines.argmin())}: cosine {cosines.min():.6f}"


def test_fused_graph_uses_the_contrib_ops(tmp_path, tiny_checkpoint):
    import onnx

    manifest = convert(tiny_checkpoint, tmp_path, "tiny", graph_form="fused")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert {"EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu"} <= ops
    assert not ops & {"Erf", "Softmax", "LayerNormalization"}
    assert manifest["graph"] == "fused"


def test_unknown_graph_form_is_refused(tmp_path, tiny_checkpoint):
    with pytest.raises(ModelError, match="unknown graph form"):
        convert(tiny_checkpoint, tmp_path, "tiny", graph_form="turbo")


def test_default_model_fused_graph_matches_the_plain_default(default_model, tmp_path):
    """The fused ops compute the same function as the standard-op graph, to float rounding."""
    from vecpipe.core.models.registry import BUILTINS, DEFAULT_MODEL, find_installed_checkpoint

    assert default_model.manifest["graph"] == "plain"
    fused_dir = tmp_path / "fused"
    fused_dir.mkdir()
    convert(find_installed_checkpoint(BUILTINS[DEFAULT_MODEL]), fused_dir, "fused", graph_form="fused")
    texts = [json.loads(line)["text"] for line in open(FIXTURES / "parity_texts.jsonl", encoding="utf-8")]
    cosines = (default_model.embed(texts) * Model(fused_dir).embed(texts)).sum(1)
    assert cosines.min() >= 0.99999, f"worst text {int(cosines.argmin())}: cosine {cosines.min():.7f}"
