"""The module chain after the transformer, read from modules.json: pooling, Dense layers, Normalize."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import write_tiny_checkpoint
from vecpipe.core.errors import ModelError, UsageError
from vecpipe.core.models.convert import convert
from vecpipe.core.models.model import Model

TEXTS = ["hello world", "a somewhat longer sentence about cats, dogs and the weather", "x", ""]
TANH = "torch.nn.modules.activation.Tanh"
IDENTITY = "torch.nn.modules.linear.Identity"


def _add_dense(ckpt, layers: list[tuple[int, int, str, bool]], seed: int = 1, normalize: bool = True):
    """Put Dense modules (in, out, activation, bias) between Pooling and Normalize, as sentence-transformers saves them."""
    rng = np.random.default_rng(seed)
    modules = [m for m in json.loads((ckpt / "modules.json").read_text()) if not m["type"].endswith("Normalize")]
    weights = []
    for number, (n_in, n_out, activation, bias) in enumerate(layers, start=2):
        folder = ckpt / f"{number}_Dense"
        folder.mkdir()
        tensors = {"linear.weight": (rng.standard_normal((n_out, n_in)) * 0.3).astype(np.float32)}
        if bias:
            tensors["linear.bias"] = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
        save_file(tensors, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"in_features": n_in, "out_features": n_out, "bias": bias, "activation_function": activation}))
        modules.append({"idx": number, "name": str(number), "path": folder.name, "type": "sentence_transformers.models.Dense"})
        weights.append((tensors["linear.weight"], tensors.get("linear.bias"), activation))
    if normalize:
        modules.append({"idx": len(modules), "name": "n", "path": "n_Normalize", "type": "sentence_transformers.models.Normalize"})
    (ckpt / "modules.json").write_text(json.dumps(modules))
    return weights


def _converted(ckpt, out, name="tiny"):
    out.mkdir()
    convert(ckpt, out, name)
    return Model(out)


def test_dense_layers_from_modules_json_run_after_pooling(tmp_path):
    plain = write_tiny_checkpoint(tmp_path / "plain")
    _add_dense(plain, [], normalize=False)  # the same body without Dense layers or Normalize
    dense = write_tiny_checkpoint(tmp_path / "dense")
    layers = _add_dense(dense, [(32, 24, TANH, True), (24, 16, IDENTITY, False)])

    pooled = _converted(plain, tmp_path / "plain-onnx").embed(TEXTS)
    expected = pooled
    for weight, bias, activation in layers:
        expected = expected @ weight.T + (0 if bias is None else bias)
        expected = np.tanh(expected) if activation == TANH else expected
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)

    model = _converted(dense, tmp_path / "dense-onnx")
    assert model.dim == 16
    assert model.manifest["dense"] == [
        {"in": 32, "out": 24, "bias": True, "activation": "tanh"},
        {"in": 24, "out": 16, "bias": False, "activation": "identity"},
    ]
    got = model.embed(TEXTS)
    assert got.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_a_dense_layer_that_does_not_chain_is_refused_naming_its_folder(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    _add_dense(ckpt, [(32, 24, TANH, True), (20, 8, TANH, True)])
    with pytest.raises(ModelError, match="Dense layer takes 20 inputs but receives 24") as refused:
        _converted(ckpt, tmp_path / "out")
    assert str(refused.value).startswith(str(ckpt / "3_Dense"))


def test_a_dense_weight_that_contradicts_its_config_is_refused(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    _add_dense(ckpt, [(32, 24, TANH, True)])
    config = ckpt / "2_Dense" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "out_features": 30}))
    with pytest.raises(ModelError, match=r"Dense weight has shape \(24, 32\), config says \(30, 32\)"):
        _converted(ckpt, tmp_path / "out")


def test_a_pickled_dense_layer_is_refused_not_loaded(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    _add_dense(ckpt, [(32, 24, TANH, True)])
    folder = ckpt / "2_Dense"
    shutil.move(folder / "model.safetensors", folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="never pickled") as refused:
        _converted(ckpt, tmp_path / "out")
    assert str(refused.value).startswith(str(folder))


def test_an_unknown_dense_activation_is_refused(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    _add_dense(ckpt, [(32, 24, "torch.nn.modules.activation.ReLU", True)])
    with pytest.raises(ModelError, match="Dense activation 'torch.nn.modules.activation.ReLU' is not supported"):
        _converted(ckpt, tmp_path / "out")


def test_pooling_cannot_be_overridden_under_dense_layers(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    _add_dense(ckpt, [(32, 8, TANH, True)])
    model = _converted(ckpt, tmp_path / "out")
    with pytest.raises(UsageError, match="Dense layers trained on mean pooling"):
        Model(model.dir, pooling="cls")


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last"])
def test_pooling_in_the_graph_equals_pooling_in_numpy(tmp_path, pooling):
    """The sentence_embedding output and the numpy pooling of token_embeddings agree, right-padded batches included."""
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt", pooling=pooling)
    model = _converted(ckpt, tmp_path / "out")
    in_graph = model.embed(TEXTS)
    other = "cls" if pooling != "cls" else "mean"
    via_numpy = Model(model.dir, pooling=other)  # forces the token path ...
    via_numpy.pooling = pooling  # ... then pools the tokens in numpy with the model's own mode
    np.testing.assert_allclose(via_numpy.embed(TEXTS), in_graph, atol=1e-5)


@pytest.mark.parametrize("mask_row", [[0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 0]])
def test_last_token_pooling_takes_the_last_unmasked_position_under_any_padding(tmp_path, mask_row):
    """Decoder embedders pad on the left; last-token pooling, in the graph and in numpy, must not assume right padding."""
    from vecpipe.core.models.model import pool_tokens

    ckpt = write_tiny_checkpoint(tmp_path / "ckpt", pooling="last")
    model = _converted(ckpt, tmp_path / "out")
    ids = np.array([[101, 7592, 2088, 2003, 1037, 102]], np.int64)
    feed = {"input_ids": ids, "attention_mask": np.array([mask_row], np.int64), "token_type_ids": np.zeros_like(ids)}
    tokens, pooled = model.session.run(["token_embeddings", "sentence_embedding"], feed)
    last = max(i for i, on in enumerate(mask_row) if on)
    np.testing.assert_array_equal(pooled[0], tokens[0, last])
    np.testing.assert_array_equal(pool_tokens(tokens, feed["attention_mask"], "last")[0], tokens[0, last])


def test_a_broken_tokenizer_is_one_line_naming_it_before_anything_is_written(tmp_path):
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    (ckpt / "tokenizer.json").write_text('{"version": "1.0", "model": {')
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelError, match="not a usable tokenizer") as refused:
        convert(ckpt, out, "broken")
    assert str(refused.value).startswith(str(ckpt / "tokenizer.json")) and list(out.iterdir()) == []
