"""Quantization: bit-exact against sentence-transformers' own outputs, calibration files, and the
traps of single vectors and constant dimensions."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vecpipe.core.errors import DataError, UsageError
from vecpipe.core.vectors.quantize import Calibration, RangeTracker, learn_calibration, quantize, quantize_batch
from vecpipe.formats.vectors import VectorBatch

REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "quantize_reference.npz"
PROVENANCE = {"model": "toy", "dim": 37, "normalized": True}


@pytest.fixture(scope="module")
def ref():
    with np.load(REFERENCE) as archive:
        return {name: archive[name] for name in archive.files}


def batch_of(matrix, provenance=None, first_line=1) -> VectorBatch:
    n = len(matrix)
    provenance = provenance if provenance is not None else {**PROVENANCE, "dim": matrix.shape[1]}
    return VectorBatch(list(range(n)), [{} for _ in range(n)], matrix, provenance,
                       list(range(first_line, first_line + n)), "v.jsonl")


def in_batches(matrix, size):
    return [batch_of(matrix[i:i + size], first_line=i + 1) for i in range(0, len(matrix), size)]


# --- exactness against sentence-transformers -----------------------------------------------------


def test_ranges_learned_over_a_stream_equal_sentence_transformers(ref):
    assert np.array_equal(learn_calibration(in_batches(ref["embeddings"], 10)).ranges, ref["ranges_self"])
    assert np.array_equal(learn_calibration([batch_of(ref["calibration"])]).ranges, ref["ranges_calibration"])


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_quantization_is_bit_exact(ref, precision):
    learned = learn_calibration(in_batches(ref["embeddings"], 7))
    from_sample = learn_calibration([batch_of(ref["calibration"])])
    outputs = [quantize_batch(b, precision, learned).matrix for b in in_batches(ref["embeddings"], 7)]
    assert np.array_equal(np.concatenate(outputs), ref[f"{precision}_self"])
    # The calibration sample is narrower than the data: out-of-range values saturate as in ST.
    assert np.array_equal(quantize(ref["embeddings"], precision, from_sample.ranges), ref[f"{precision}_calibration"])
    assert np.array_equal(quantize(ref["single"], precision, learned.ranges), ref[f"{precision}_single"])
    assert outputs[0].dtype == ref[f"{precision}_self"].dtype


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_quantization_is_bit_exact(ref, precision):
    assert np.array_equal(quantize_batch(batch_of(ref["embeddings"]), precision).matrix, ref[precision])
    assert np.array_equal(quantize(ref["single"], precision), ref[f"{precision}_single"])
    assert quantize(ref["single"], precision).dtype == ref[precision].dtype


def test_a_single_vector_cannot_calibrate_itself(ref):
    assert ref["single_without_ranges_refused"]  # sentence-transformers refuses too
    with pytest.raises(UsageError, match="cannot learn int8/uint8 ranges from 1 vector: pass --calibration") as caught:
        learn_calibration([batch_of(ref["single"], first_line=4)])
    assert (caught.value.source, caught.value.line) == ("v.jsonl", 4)


def test_a_constant_dimension_neither_divides_by_zero_nor_wraps(ref):
    constant = int(np.flatnonzero(ref["ranges_self"][0] == ref["ranges_self"][1])[0])
    learned = learn_calibration([batch_of(ref["embeddings"])])
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        buckets = quantize(ref["embeddings"], "uint8", learned.ranges)
    assert (buckets[:, constant] == 0).all()
    assert np.unique(buckets[:, constant + 1]).size > 1  # the other dimensions still spread out


def test_float16_is_a_plain_cast_and_overflow_is_refused():
    matrix = np.array([[0.1, -2.0], [3.0, 1e-8]], dtype=np.float32)
    assert np.array_equal(quantize(matrix, "float16"), matrix.astype(np.float16))
    with pytest.raises(DataError) as caught:
        quantize_batch(batch_of(np.array([[1.0, 2.0], [1.0, 1e6]], dtype=np.float32), first_line=10), "float16")
    assert caught.value.line == 11 and "float16 range" in caught.value.message


# --- provenance and refusals ---------------------------------------------------------------------


def test_quantized_provenance(ref):
    learned = learn_calibration([batch_of(ref["embeddings"])])
    int8 = quantize_batch(batch_of(ref["embeddings"]), "int8", learned)
    assert int8.provenance == {**PROVENANCE, "dtype": "int8", "calibration_sha256": learned.sha256}
    bits = quantize_batch(batch_of(ref["embeddings"], {"model": "toy"}), "binary")
    assert bits.provenance == {"model": "toy", "dim": 37, "dtype": "binary"}  # dim kept: 5 bytes could be 33..40
    assert bits.dim == 37


def test_already_quantized_input_is_refused(ref):
    bits = quantize_batch(batch_of(ref["embeddings"]), "ubinary")
    with pytest.raises(DataError, match=r"already quantized \(ubinary\); quantize needs float vectors"):
        quantize_batch(bits, "int8", learn_calibration([batch_of(ref["embeddings"])]))
    with pytest.raises(DataError, match="already quantized"):
        RangeTracker().add(bits)


def test_float16_input_quantizes_like_its_float32_values(ref):
    half = ref["embeddings"].astype(np.float16)
    learned = learn_calibration([batch_of(half, {**PROVENANCE, "dtype": "float16"})])
    out = quantize_batch(batch_of(half, {**PROVENANCE, "dtype": "float16"}), "int8", learned)
    assert np.array_equal(out.matrix, quantize(half.astype(np.float32), "int8", learned.ranges))
    assert out.provenance["dtype"] == "int8"


def test_calibration_of_another_dimension_or_model_is_refused(ref):
    learned = learn_calibration([batch_of(ref["embeddings"])])
    with pytest.raises(DataError, match="has ranges for 37 dimensions; these vectors have 36"):
        quantize_batch(batch_of(ref["embeddings"][:, :36]), "int8", learned)
    other = batch_of(ref["embeddings"], {**PROVENANCE, "model": "other"})
    with pytest.raises(DataError, match="learned from vectors with model 'toy', these have 'other'"):
        quantize_batch(other, "int8", learned)


# --- calibration files ---------------------------------------------------------------------------


def test_calibration_round_trip(tmp_path, ref):
    learned = learn_calibration(in_batches(ref["embeddings"], 16))
    learned.save(str(tmp_path / "cal.npz"))
    loaded = Calibration.load(str(tmp_path / "cal.npz"))
    assert np.array_equal(loaded.ranges, learned.ranges)
    assert loaded.count == 64 and loaded.provenance == {"model": "toy", "dim": 37}
    # Provenance names the file by its sha256, whether the ranges were saved or not.
    assert loaded.sha256 == learned.sha256 == hashlib.sha256((tmp_path / "cal.npz").read_bytes()).hexdigest()
    queries = quantize_batch(batch_of(ref["single"]), "int8", loaded)
    assert np.array_equal(queries.matrix, ref["int8_single"])
    assert queries.provenance["calibration_sha256"] == learned.sha256


def test_the_same_ranges_give_the_same_file(tmp_path, ref):
    first = learn_calibration([batch_of(ref["embeddings"])])
    again = learn_calibration(in_batches(ref["embeddings"][::-1].copy(), 5))
    assert first.file_bytes == again.file_bytes


def test_a_plain_numpy_ranges_file_is_accepted(tmp_path, ref):
    np.savez(tmp_path / "st.npz", ranges=ref["ranges_calibration"].astype(np.float64))
    loaded = Calibration.load(str(tmp_path / "st.npz"))
    assert loaded.count == 0 and loaded.provenance == {}
    assert np.array_equal(quantize(ref["embeddings"], "uint8", loaded.ranges), ref["uint8_calibration"])


@pytest.mark.parametrize("arrays,message", [
    ({"other": np.zeros((2, 3))}, "no ranges array"),
    ({"ranges": np.zeros((3, 3))}, "(2, dim) array"),
    ({"ranges": np.array([[1.0, 0.0], [0.0, 1.0]])}, "min above max in dimension 0"),
    ({"ranges": np.array([[0.0, np.nan], [1.0, 1.0]])}, "NaN or infinite"),
    ({"ranges": np.zeros((2, 3)), "provenance": np.array("[1]")}, "provenance is not a JSON object"),
])
def test_bad_calibration_files(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        Calibration.load(str(tmp_path / "bad.npz"))
    assert caught.value.source == str(tmp_path / "bad.npz")


def test_pickles_in_a_calibration_file_are_never_loaded(tmp_path):
    np.savez(tmp_path / "evil.npz", ranges=np.array([[object()], [object()]], dtype=object))
    with pytest.raises(DataError, match="not a readable calibration .npz file"):
        Calibration.load(str(tmp_path / "evil.npz"))


@pytest.mark.parametrize("content", [b"", b"not a zip", None])
def test_unreadable_calibration_files(tmp_path, content):
    path = tmp_path / "cal.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError):
        Calibration.load(str(path))


def test_calibration_bytes_are_a_normal_npz(tmp_path, ref):
    learned = learn_calibration([batch_of(ref["embeddings"])])
    learned.save(str(tmp_path / "cal.npz"))
    assert zipfile.ZipFile(tmp_path / "cal.npz").namelist() == ["format.npy", "ranges.npy", "count.npy", "provenance.npy"]
    with np.load(tmp_path / "cal.npz") as archive:
        assert archive["ranges"].shape == (2, 37) and int(archive["count"]) == 64


# --- invariants ----------------------------------------------------------------------------------

MATRICES = hnp.arrays(
    np.float32,
    st.tuples(st.integers(2, 12), st.integers(1, 20)),
    elements=st.floats(-4, 4, width=32),
)


@settings(max_examples=80, deadline=None)
@given(MATRICES)
def test_property_scalar_buckets_are_in_range_monotone_and_close(matrix):
    ranges = learn_calibration([batch_of(matrix)]).ranges
    with np.errstate(divide="raise", invalid="raise", over="raise"):  # underflow of tiny steps is harmless
        buckets = quantize(matrix, "uint8", ranges).astype(np.int64)
    signed = quantize(matrix, "int8", ranges).astype(np.int64)
    assert np.array_equal(signed, buckets - 128)
    order = np.argsort(matrix, axis=0, kind="stable")
    assert (np.diff(np.take_along_axis(buckets, order, axis=0), axis=0) >= 0).all()
    steps = (ranges[1] - ranges[0]) / 255
    varying = steps > 0
    restored = ranges[0] + buckets * steps
    assert (np.abs(restored - matrix)[:, varying] <= steps[varying] * 1.001 + 1e-6).all()


@settings(max_examples=80, deadline=None)
@given(MATRICES)
def test_property_binary_bits_are_the_signs(matrix):
    packed = quantize(matrix, "ubinary")
    assert packed.shape[1] == (matrix.shape[1] + 7) // 8
    bits = np.unpackbits(packed, axis=1)
    assert np.array_equal(bits[:, : matrix.shape[1]], (matrix > 0).astype(np.uint8))
    assert not bits[:, matrix.shape[1]:].any()  # padding bits are zero
    assert np.array_equal(quantize(matrix, "binary").view(np.uint8), packed ^ 0x80)
