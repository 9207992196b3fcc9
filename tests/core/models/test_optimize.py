"""int8 variants: saturation-free weights, exact outlier smoothing, manifests, `NAME:int8` resolution."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import FIXTURES
from vecpipe.core.models import optimize
from vecpipe.core.models import registry
from vecpipe.core.errors import ModelError
from vecpipe.core.models.model import Model

TEXTS = ["hello world", "a somewhat longer sentence about cats, dogs and the weather", "x", "what is the time?"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _same_sign_pair_sums(q: np.ndarray) -> np.ndarray:
    padded = np.vstack([q, np.zeros((len(q) % 2, q.shape[1]), q.dtype)]).astype(np.int32)
    first, second = padded[0::2], padded[1::2]
    return np.where(np.sign(first) == np.sign(second), np.abs(first + second), 0)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 6)), elements=st.floats(-4, 4, width=32)))
def test_quantized_weight_pairs_never_pass_128(weight):
    q, scale = optimize.quantize_weight(weight)
    assert q.dtype == np.int8 and q.shape == weight.shape and scale.shape == (weight.shape[1],)
    assert _same_sign_pair_sums(q).max(initial=0) <= 128
    assert np.abs(q.astype(np.float32) * scale - weight).max(initial=0) <= scale.max() * 1.5 + 1e-6


def test_quantized_weight_keeps_full_precision_when_no_pair_is_large():
    weight = np.array([[1.0, -0.5], [0.0, 0.25], [-0.3, 0.1]], np.float32)
    q, scale = optimize.quantize_weight(weight)
    np.testing.assert_allclose(scale, [1 / 127, 0.5 / 127], rtol=1e-6)
    assert q[0, 0] == 127 and q[0, 1] == -127


def test_quantized_matmul_is_exact_integer_math_on_adversarial_inputs():
    """Weights a naive int8 quantizer would put at +127/+127 in one row pair, fed uint8 255s:
    an AVX2 (no VNNI) CPU saturates that pair; quantize_weight keeps every sum representable."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = np.full((8, 4), 0.01, np.float32)
    weight[0:2] = 1.0  # rows 0 and 1 form one vpmaddubsw pair
    q, scale = optimize.quantize_weight(weight)
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s"], ["y"], domain=optimize.MS_DOMAIN)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(q, "w"), numpy_helper.from_array(scale, "s")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(optimize.MS_DOMAIN, 1)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((3, 8), np.float32)
    x[:, :2] = 10.0  # quantizes to uint8 255 in the paired rows
    got = session.run(None, {"x": x})[0]
    expected = x @ (q.astype(np.float32) * scale)
    np.testing.assert_allclose(got, expected, rtol=1e-2)


def test_outlier_scales_only_ever_divide():
    channel_max = np.array([1.0, 2.0, 1.5, 40.0] + [2.0] * 36, np.float32)
    s = optimize.outlier_scales(channel_max)
    assert (s >= 1).all() and s[3] > 10 and (s[[0, 1, 2]] == 1).all()


def test_smoothing_leaves_the_fp32_function_unchanged(tiny_model_dir, tmp_path):
    model = onnx.load(str(tiny_model_dir / "model.onnx"))
    targets = optimize.quantized_inputs(model)
    rng = np.random.default_rng(1)
    weights = {init.name: init for init in model.graph.initializer}
    rows = {name: weights[nodes[0].input[1]].dims[0] for name, nodes in targets.items()}
    scales = {name: (1 + 5 * rng.random(n)).astype(np.float32) for name, n in rows.items()}
    optimize.smooth_outliers(model, targets, scales)
    smoothed = _copy_model_dir(tiny_model_dir, tmp_path / "smoothed", model)
    np.testing.assert_allclose(Model(smoothed).embed(TEXTS), Model(tiny_model_dir).embed(TEXTS), atol=2e-5)
    assert any(node.op_type == "Mul" and node.name.endswith("_smooth") for node in model.graph.node)


def _copy_model_dir(src, dst, model):
    import shutil

    shutil.copytree(src, dst)
    onnx.save_model(model, str(dst / "model.onnx"))
    manifest = json.loads((dst / "vecpipe.json").read_text())
    manifest.pop("files")  # the graph changed on purpose
    (dst / "vecpipe.json").write_text(json.dumps(manifest))
    return dst


@pytest.mark.parametrize("graph_form, quantized_ops", [
    ("plain", {"DynamicQuantizeMatMul"}),
    ("fused", {"DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLinear"}),
])
def test_int8_variant_manifest_and_graph(tiny_checkpoint, tmp_path, graph_form, quantized_ops):
    from vecpipe.core.models.convert import convert

    tiny_model_dir = tmp_path / "fp32"
    tiny_model_dir.mkdir()
    convert(tiny_checkpoint, tiny_model_dir, "tiny-bert", graph_form=graph_form)
    out = tmp_path / "int8"
    out.mkdir()
    manifest = optimize.make_variant(tiny_model_dir, out, "int8")
    assert manifest["name"] == "tiny-bert:int8" and manifest["variant"] == "int8"
    assert manifest["base"] == {"name": "tiny-bert", "manifest_sha256": registry.manifest_sha256(tiny_model_dir)}
    assert manifest["quantization"]["calibration_texts"] > 20 and len(manifest["quantization"]["calibration_sha256"]) == 64
    registry.verify_model_dir(out)
    graph = onnx.load(str(out / "model.onnx")).graph
    assert quantized_ops <= {node.op_type for node in graph.node}
    assert optimize.quantized_inputs(onnx.load(str(out / "model.onnx"))) == {}  # no float weight left to multiply
    int8, fp32 = Model(out), Model(tiny_model_dir)
    assert int8.provenance()["model"] == "tiny-bert:int8" and int8.provenance()["variant"] == "int8"
    assert (int8.embed(TEXTS) * fp32.embed(TEXTS)).sum(1).min() > 0.98
    assert manifest["quantization"]["recipe"] == optimize.QUANTIZATION_RECIPE


def test_biases_are_added_inside_the_quantized_matmuls_with_the_same_result(tiny_model_dir, tmp_path, monkeypatch):
    folded, unfolded = tmp_path / "folded", tmp_path / "unfolded"
    folded.mkdir()
    unfolded.mkdir()
    optimize.make_variant(tiny_model_dir, folded, "int8")
    monkeypatch.setattr(optimize, "_fold_biases", lambda model: None)
    optimize.make_variant(tiny_model_dir, unfolded, "int8")
    graphs = {path: onnx.load(str(path / "model.onnx")).graph for path in (folded, unfolded)}
    matmuls = [node for node in graphs[folded].node if node.op_type == "DynamicQuantizeMatMul"]
    assert matmuls and all(len(node.input) == 5 and node.input[3] == "" for node in matmuls)
    produced_by_matmul = {node.output[0] for node in matmuls}
    constants = {init.name for init in graphs[folded].initializer}
    assert not any(node.op_type == "Add" and set(node.input) & produced_by_matmul and set(node.input) & constants for node in graphs[folded].node)
    adds = [sum(node.op_type == "Add" for node in graphs[path].node) for path in (folded, unfolded)]
    assert adds[0] == adds[1] - len(matmuls)
    np.testing.assert_allclose(Model(folded).embed(TEXTS), Model(unfolded).embed(TEXTS), atol=1e-5)


def test_a_variant_of_a_variant_is_refused(tiny_model_dir, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    optimize.make_variant(tiny_model_dir, first, "int8")
    with pytest.raises(ModelError, match="already an optimized variant"):
        optimize.make_variant(first, second, "int8")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("all-MiniLM-L6-v2:int8", ("all-MiniLM-L6-v2", "int8")),
        ("hf:acme/model:int8", ("hf:acme/model", "int8")),
        ("hf:acme/model", ("hf:acme/model", None)),
        ("name:fp16", ("name:fp16", None)),
        (":int8", (":int8", None)),
    ],
)
def test_variant_suffix_is_split_only_when_known(name, expected):
    assert optimize.split_variant(name) == expected


def test_name_int8_is_made_on_first_use_then_reused(home, tiny_checkpoint):
    notes = []
    path = registry.resolve(f"{tiny_checkpoint}:int8", notify=notes.append)
    assert path == home / "models" / "tiny-bert@int8" and any("int8 variant" in n for n in notes)
    notes.clear()
    assert registry.resolve("tiny-bert:int8", notify=notes.append) == path and notes == []


def test_variant_is_remade_when_its_base_changes(home, tiny_checkpoint):
    path = registry.resolve(f"{tiny_checkpoint}:int8")
    manifest = json.loads((path / "vecpipe.json").read_text())
    manifest["base"]["manifest_sha256"] = "0" * 64
    (path / "vecpipe.json").write_text(json.dumps(manifest))
    notes = []
    again = registry.resolve("tiny-bert:int8", notify=notes.append)
    assert any("changed since" in n for n in notes)
    assert json.loads((again / "vecpipe.json").read_text())["base"]["manifest_sha256"] != "0" * 64


def test_variant_made_by_another_recipe_is_made_again(home, tiny_checkpoint):
    path = registry.resolve(f"{tiny_checkpoint}:int8")
    manifest = json.loads((path / "vecpipe.json").read_text())
    manifest["quantization"].pop("recipe")  # as the first recipe wrote it
    (path / "vecpipe.json").write_text(json.dumps(manifest))
    notes = []
    again = registry.resolve("tiny-bert:int8", notify=notes.append)
    assert any("made by another vecpipe" in n for n in notes)
    assert json.loads((again / "vecpipe.json").read_text())["quantization"]["recipe"] == optimize.QUANTIZATION_RECIPE
    notes.clear()
    assert registry.resolve("tiny-bert:int8", notify=notes.append) == again and notes == []


def test_variant_of_an_uncached_directory_says_how(home, tiny_model_dir):
    with pytest.raises(ModelError, match="models optimize .* -o DIR"):
        registry.resolve(f"{tiny_model_dir}:int8")


@pytest.mark.slow
def test_default_model_int8_quality(default_model_dir, tmp_path):
    """The 256 parity texts (short sentences and abstracts): int8 stays close to fp32."""
    out = tmp_path / "int8"
    out.mkdir()
    optimize.make_variant(default_model_dir, out, "int8")
    texts = [json.loads(line)["text"] for line in open(FIXTURES / "parity_texts.jsonl", encoding="utf-8")]
    cosines = (Model(out).embed(texts) * Model(default_model_dir).embed(texts)).sum(1)
    assert cosines.mean() >= 0.995 and cosines.min() >= 0.985, (cosines.mean(), cosines.min())
