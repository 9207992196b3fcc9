"""Ready ONNX exports: imported as they are, the pooling chain added from sentence-transformers' configs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import FIXTURES
from vecpipe.core.errors import ModelError
from vecpipe.core.models import registry
from vecpipe.core.models.model import Model
from vecpipe.core.models.onnx_import import import_export

EXPORT = FIXTURES / "families" / "roberta-onnx"  # torch.onnx export of the tiny RoBERTa (make_family_checkpoints.py)
TEXTS = [json.loads(line)["text"] for line in open(FIXTURES / "family_texts.jsonl", encoding="utf-8")]


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_an_export_matches_sentence_transformers_through_m_dir(vecpipe_home):
    path = registry.resolve(str(EXPORT))
    model = Model(path)
    assert model.manifest["architecture"] == "onnx-export" and model.dim == 32 and model.max_tokens == 48
    reference = np.load(FIXTURES / "families" / "roberta" / "reference.npy")
    assert cosines(model.embed(TEXTS), reference).min() >= 0.9999
    assert registry.resolve(str(EXPORT)) == path  # imported once


def _copy(tmp_path):
    return shutil.copytree(EXPORT, tmp_path / "export")


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "onnx" / "model.onnx").unlink(), "no model.onnx or onnx/model.onnx"),
    (lambda d: (d / "tokenizer.json").unlink(), "missing tokenizer.json"),
    (lambda d: (d / "onnx" / "model.onnx").write_bytes(b"\x00not onnx at all"), "not a readable ONNX graph"),
    (lambda d: (d / "1_Pooling" / "config.json").write_text("{nope"), "not valid JSON"),
])
def test_a_broken_export_is_one_line_naming_the_file(tmp_path, damage, message):
    export = _copy(tmp_path)
    damage(export)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelError, match=message) as refused:
        import_export(export, out, "broken")
    assert str(refused.value).startswith(str(export))


def test_a_graph_with_other_inputs_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    export = _copy(tmp_path)
    model = onnx.load(str(export / "onnx" / "model.onnx"))
    model.graph.input.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "sequence"]))
    onnx.save(model, str(export / "onnx" / "model.onnx"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelError, match="graph inputs are input_ids, attention_mask, position_ids; vecpipe feeds"):
        import_export(export, out, "x")


def test_models_import_cli_writes_a_model_directory(tmp_path):
    from typer.testing import CliRunner

    from vecpipe.cli import app

    result = CliRunner().invoke(app, ["models", "import", str(EXPORT), "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.stderr
    assert "dim 32, mean pooling" in result.stderr and Model(tmp_path / "m").embed(["hello"]).shape == (1, 32)
