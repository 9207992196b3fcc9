"""`vecpipe truncate` through the real entry point: prefix, PCA fit/save/apply, warnings, errors."""
from __future__ import annotations

import io
import json

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from vecpipe.cli import app
from vecpipe.core.vectors.truncate import PCA
from vecpipe.formats.vectors import VectorBatch, VectorWriter, read_matrix

PROVENANCE = {"model": "toy", "dim": 12, "normalized": True}


def unit_rows(rows: int, dim: int = 12, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim)) * np.linspace(1, 3, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def jsonl_of(matrix, provenance=PROVENANCE) -> bytes:
    out = io.BytesIO()
    with VectorWriter(out) as writer:
        writer.write(VectorBatch([f"d{i}" for i in range(len(matrix))], [{"n": i} for i in range(len(matrix))],
                                 matrix, provenance, list(range(1, len(matrix) + 1))))
    return out.getvalue()


def truncate(*args: str, input: bytes | None = None):
    return CliRunner().invoke(app, ["truncate", *args], input=input)


def records(output: bytes) -> list[dict]:
    return [orjson.loads(line) for line in output.splitlines()]


def matrix_of(output: bytes) -> np.ndarray:
    return np.array([r["embedding"] for r in records(output)], dtype=np.float32)


def test_dim_keeps_a_renormalized_prefix():
    vectors = unit_rows(5)
    result = truncate("--dim", "4", input=jsonl_of(vectors))
    assert result.exit_code == 0, result.stderr
    out = matrix_of(result.stdout_bytes)
    expected = vectors[:, :4] / np.linalg.norm(vectors[:, :4], axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    first = records(result.stdout_bytes)[0]
    assert first["id"] == "d0" and first["n"] == 0
    assert first["vecpipe"] == {"model": "toy", "dim": 4, "normalized": True, "truncate_dim": 4}
    assert result.stderr == ""  # no manifest for "toy": nothing to warn about


def test_no_renormalize_keeps_the_values():
    vectors = unit_rows(3)
    result = truncate("--dim", "4", "--no-renormalize", input=jsonl_of(vectors))
    assert np.array_equal(matrix_of(result.stdout_bytes), vectors[:, :4])
    assert records(result.stdout_bytes)[0]["vecpipe"]["normalized"] is False


def test_pca_fit_save_then_apply_gives_the_same_vectors(tmp_path):
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(jsonl_of(unit_rows(200, seed=1)))
    docs = jsonl_of(unit_rows(20, seed=2))
    fitted = truncate("--pca", "4", "--fit", str(sample), "--save", str(tmp_path / "pca.npz"), input=docs)
    assert fitted.exit_code == 0, fitted.stderr
    applied = truncate("--pca-file", str(tmp_path / "pca.npz"), input=docs)
    assert applied.stdout_bytes == fitted.stdout_bytes
    pca = PCA.load(str(tmp_path / "pca.npz"))
    first = records(fitted.stdout_bytes)[0]["vecpipe"]
    assert first == {"model": "toy", "dim": 4, "normalized": True, "truncate_dim": 4, "pca_sha256": pca.sha256}
    fewer = truncate("--pca-file", str(tmp_path / "pca.npz"), "--pca", "2", input=docs)
    assert matrix_of(fewer.stdout_bytes).shape == (20, 2)


def test_fitting_on_stdin_that_is_also_the_input(tmp_path):
    docs = jsonl_of(unit_rows(50, seed=3))
    (tmp_path / "docs.jsonl").write_bytes(docs)
    from_stdin = truncate("--pca", "3", "--fit", "-", input=docs)
    from_file = truncate(str(tmp_path / "docs.jsonl"), "--pca", "3", "--fit", str(tmp_path / "docs.jsonl"))
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert from_stdin.stdout_bytes == from_file.stdout_bytes and len(records(from_stdin.stdout_bytes)) == 50
    assert "the PCA was not saved" in from_stdin.stderr


def test_npy_output(tmp_path):
    result = truncate("--dim", "3", "--format", "npy", "-o", str(tmp_path / "short.npy"), input=jsonl_of(unit_rows(4)))
    assert result.exit_code == 0, result.stderr
    back = read_matrix(str(tmp_path / "short.npy"))
    assert back.matrix.shape == (4, 3) and back.provenance["truncate_dim"] == 3 and back.ids[0] == "d0"


def test_matryoshka_warning_names_the_listed_dims_once(tmp_path):
    model = tmp_path / "mrl"
    model.mkdir()
    (model / "vecpipe.json").write_text(json.dumps({"name": "mrl", "dim": 12, "pooling": "mean", "max_tokens": 128, "matryoshka_dims": [12, 8, 4]}))
    data = jsonl_of(unit_rows(30), {**PROVENANCE, "model": str(model)})
    warned = truncate("--dim", "6", input=data)
    assert warned.exit_code == 0, warned.stderr
    assert warned.stderr == "vecpipe truncate: mrl was trained for Matryoshka dimensions 12, 8, 4; 6 is not one, so it may lose more quality\n"
    assert truncate("--dim", "8", input=data).stderr == ""


def assert_one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vecpipe truncate: "), result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args,text", [
    ([], "say how to shorten"),
    (["--dim", "3", "--pca", "3"], "use one or the other"),
    (["--pca", "3"], "--pca N needs --fit SAMPLE"),
    (["--fit", "s.jsonl"], "--fit needs --pca N"),
    (["--pca", "2", "--fit", "s.jsonl", "--pca-file", "p.npz"], "use one or the other"),
    (["--dim", "3", "--save", "p.npz"], "--save keeps a PCA learned with --fit"),
    (["--dim", "13"], "--dim 13 is larger than the vectors (12 dimensions)"),
    (["--dim", "0"], "--dim must be at least 1"),
    (["--pca", "30", "--fit", "-"], "--pca 30 is more than the sample's 12 dimensions"),
])
def test_usage_errors(args, text):
    assert_one_line_error(truncate(*args, input=jsonl_of(unit_rows(3))), 2, text)


def test_bad_data_errors(tmp_path):
    bits = CliRunner().invoke(app, ["quantize", "--to", "binary"], input=jsonl_of(unit_rows(3))).stdout_bytes
    assert_one_line_error(truncate("--dim", "4", input=bits), 3, "<stdin>:1: input is already quantized (binary)")
    (tmp_path / "sample.jsonl").write_bytes(jsonl_of(unit_rows(40, 8)[:, :8], {**PROVENANCE, "dim": 8}))
    truncate("--pca", "4", "--fit", str(tmp_path / "sample.jsonl"), "--save", str(tmp_path / "pca8.npz"), input=jsonl_of(unit_rows(2, 8), {**PROVENANCE, "dim": 8}))
    result = truncate("--pca-file", str(tmp_path / "pca8.npz"), input=jsonl_of(unit_rows(2)))
    assert_one_line_error(result, 3, "was fitted on 8-dimensional vectors; these have 12")
    assert_one_line_error(truncate("--dim", "2", input=b'{"embedding": [1, 2]}\n{"embedding": [1]}\n'), 3, "<stdin>:2: the vector has 1 value")
