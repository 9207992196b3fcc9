"""`vecpipe quantize` through the real entry point: exactness, calibration files, npy, errors."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from vecpipe.cli import app
from vecpipe.formats.vectors import VectorBatch, VectorWriter, read_matrix

REFERENCE = Path(__file__).resolve().parent.parent / "fixtures" / "quantize_reference.npz"
PROVENANCE = {"model": "toy", "dim": 37, "normalized": True}


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE) as archive:
        return {name: archive[name] for name in archive.files}


def jsonl_of(matrix, provenance=None) -> bytes:
    provenance = provenance if provenance is not None else {**PROVENANCE, "dim": matrix.shape[1]}
    out = io.BytesIO()
    with VectorWriter(out) as writer:
        writer.write(VectorBatch([f"d{i}" for i in range(len(matrix))], [{"n": i} for i in range(len(matrix))],
                                 matrix, provenance, list(range(1, len(matrix) + 1))))
    return out.getvalue()


def quantize(*args: str, input: bytes | None = None):
    return CliRunner().invoke(app, ["quantize", *args], input=input)


def records(output: bytes) -> list[dict]:
    return [orjson.loads(line) for line in output.splitlines()]


def matrix_of(output: bytes, dtype) -> np.ndarray:
    return np.array([r["embedding"] for r in records(output)], dtype=dtype)


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_from_stdin_matches_sentence_transformers(ref, precision):
    result = quantize("--to", precision, input=jsonl_of(ref["embeddings"]))
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(matrix_of(result.stdout_bytes, ref[precision].dtype), ref[precision])
    first = records(result.stdout_bytes)[0]
    assert list(first) == ["id", "n", "embedding", "vecpipe"] and first["id"] == "d0" and first["n"] == 0
    assert first["vecpipe"] == {**PROVENANCE, "dtype": precision}
    assert result.stderr == ""


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_with_learned_ranges_matches_sentence_transformers(ref, tmp_path, precision):
    (tmp_path / "docs.jsonl").write_bytes(jsonl_of(ref["embeddings"]))
    result = quantize(str(tmp_path / "docs.jsonl"), "--to", precision, "--save-calibration", str(tmp_path / "cal.npz"))
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(matrix_of(result.stdout_bytes, ref[f"{precision}_self"].dtype), ref[f"{precision}_self"])
    assert "only 64 vectors" in result.stderr  # a small sample is worth a word
    saved = (tmp_path / "cal.npz").read_bytes()
    assert records(result.stdout_bytes)[0]["vecpipe"]["calibration_sha256"] == hashlib.sha256(saved).hexdigest()


def test_learning_from_stdin_reads_it_twice_and_says_ranges_were_not_saved(ref):
    result = quantize("--to", "int8", input=jsonl_of(ref["embeddings"]))
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(matrix_of(result.stdout_bytes, np.int8), ref["int8_self"])
    assert "were not saved" in result.stderr and "--save-calibration" in result.stderr


def test_a_query_quantized_with_the_documents_calibration_matches(ref, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(jsonl_of(ref["embeddings"]))
    cal = tmp_path / "cal.npz"
    whole = quantize(str(docs), "--to", "int8", "--save-calibration", str(cal))
    one_line = jsonl_of(ref["embeddings"][5:6])
    alone = quantize("--to", "int8", "--calibration", str(cal), input=one_line)
    assert alone.exit_code == 0, alone.stderr
    assert records(alone.stdout_bytes)[0]["embedding"] == records(whole.stdout_bytes)[5]["embedding"]
    assert records(alone.stdout_bytes)[0]["vecpipe"] == records(whole.stdout_bytes)[5]["vecpipe"]
    single = quantize("--to", "int8", "--calibration", str(cal), input=jsonl_of(ref["single"]))
    assert np.array_equal(matrix_of(single.stdout_bytes, np.int8), ref["int8_single"])


def test_a_sentence_transformers_ranges_file_works_as_calibration(ref, tmp_path):
    np.savez(tmp_path / "ranges.npz", ranges=ref["ranges_calibration"])
    result = quantize("--to", "uint8", "--calibration", str(tmp_path / "ranges.npz"), input=jsonl_of(ref["embeddings"]))
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(matrix_of(result.stdout_bytes, np.uint8), ref["uint8_calibration"])


def test_npy_in_and_npy_out(ref, tmp_path):
    with VectorWriter(None, "npy", npy_path=str(tmp_path / "docs.npy")) as writer:
        writer.write(VectorBatch(list(range(64)), [{}] * 64, ref["embeddings"], PROVENANCE, list(range(1, 65))))
    result = quantize(str(tmp_path / "docs.npy"), "--to", "binary", "--format", "npy", "-o", str(tmp_path / "bits.npy"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == b""
    assert np.array_equal(np.load(tmp_path / "bits.npy"), ref["binary"])
    back = read_matrix(str(tmp_path / "bits.npy"))
    assert back.dtype == "binary" and back.dim == 37 and back.ids == list(range(64))


def test_float16(ref):
    result = quantize("--to", "float16", input=jsonl_of(ref["embeddings"]))
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(matrix_of(result.stdout_bytes, np.float16), ref["embeddings"].astype(np.float16))
    assert records(result.stdout_bytes)[0]["vecpipe"]["dtype"] == "float16"


def test_several_inputs_make_one_stream(ref, tmp_path):
    (tmp_path / "a.jsonl").write_bytes(jsonl_of(ref["embeddings"][:30]))
    (tmp_path / "b.jsonl").write_bytes(jsonl_of(ref["embeddings"][30:]))
    result = quantize(str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--to", "int8")
    assert np.array_equal(matrix_of(result.stdout_bytes, np.int8), ref["int8_self"])  # ranges over both files


def assert_one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vecpipe quantize: "), result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.output and result.stdout_bytes == b""


@pytest.mark.parametrize("args,text", [
    (["--to", "int4"], "--to must be one of float16, int8, uint8, binary, ubinary"),
    (["--to", "binary", "--calibration", "x.npz"], "apply to int8 and uint8, not binary"),
    (["--to", "int8", "--calibration", "x.npz", "--save-calibration", "y.npz"], "with --calibration nothing is learned"),
    (["--to", "binary", "--format", "npy"], "give -o FILE.npy"),
])
def test_usage_errors(ref, args, text):
    assert_one_line_error(quantize(*args, input=jsonl_of(ref["embeddings"][:3])), 2, text)


def test_a_single_vector_without_calibration_is_refused(ref):
    result = quantize("--to", "int8", input=jsonl_of(ref["single"]))
    assert_one_line_error(result, 2, "<stdin>:1: cannot learn int8/uint8 ranges from 1 vector: pass --calibration FILE")


def test_bad_data_errors(ref, tmp_path):
    bits = quantize("--to", "binary", input=jsonl_of(ref["embeddings"][:3])).stdout_bytes
    assert_one_line_error(quantize("--to", "binary", input=bits), 3, "<stdin>:1: input is already quantized (binary)")
    mixed = jsonl_of(ref["embeddings"][:2]) + jsonl_of(ref["embeddings"][:1, :30])
    assert_one_line_error(quantize("--to", "binary", input=mixed), 3, "<stdin>:3: ")
    assert_one_line_error(quantize("--to", "binary", input=b""), 3, "<stdin>: no vector records (empty input)")
    assert_one_line_error(quantize(str(tmp_path / "missing.jsonl"), "--to", "binary"), 3, "missing.jsonl: No such file")
    np.save(tmp_path / "nan.npy", np.array([[1.0, 2.0], [np.nan, 0.0]], dtype=np.float32))
    result = quantize(str(tmp_path / "nan.npy"), "--to", "binary")
    assert result.exit_code == 3 and f"{tmp_path}/nan.npy:2: NaN or infinite value" in result.stderr
    assert "Traceback" not in result.output


def test_a_calibration_of_another_dimension_is_refused(ref, tmp_path):
    np.savez(tmp_path / "cal.npz", ranges=ref["ranges_self"][:, :20])
    result = quantize("--to", "int8", "--calibration", str(tmp_path / "cal.npz"), input=jsonl_of(ref["embeddings"][:2]))
    assert_one_line_error(result, 3, "has ranges for 20 dimensions; these vectors have 37")


def test_nothing_is_written_when_a_late_record_is_bad(ref, tmp_path):
    data = jsonl_of(ref["embeddings"]) + b'{"embedding": "oops"}\n'
    result = quantize("--to", "binary", "-o", str(tmp_path / "out.jsonl"), input=data)
    assert result.exit_code == 3
    assert list(tmp_path.iterdir()) == []


def test_a_real_pipeline_closed_early_exits_quietly(ref, tmp_path):
    import subprocess
    import sys

    (tmp_path / "docs.jsonl").write_bytes(jsonl_of(np.tile(ref["embeddings"], (40, 1))))
    vecpipe = f"{sys.executable} -m vecpipe"
    pipeline = f"set -o pipefail; {vecpipe} truncate --dim 16 docs.jsonl | {vecpipe} quantize --to ubinary | head -1"
    done = subprocess.run(["bash", "-c", pipeline], cwd=tmp_path, capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stderr == b""
    (first,) = records(done.stdout)
    assert first["vecpipe"] == {**PROVENANCE, "dim": 16, "truncate_dim": 16, "dtype": "ubinary"}
    assert len(first["embedding"]) == 2
