"""Truncation: prefix with re-normalization, PCA fit from a stream, PCA files, and refusals."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vecpipe.core.errors import DataError, UsageError
from vecpipe.core.vectors.quantize import quantize_batch
from vecpipe.core.vectors.truncate import PCA, PCAFitter, fit_pca, matryoshka_warning, truncate_batch, truncate_prefix
from vecpipe.formats.vectors import VectorBatch

PROVENANCE = {"model": "toy", "dim": 8, "normalized": True}


def batch_of(matrix, provenance=None, first_line=1) -> VectorBatch:
    n = len(matrix)
    provenance = provenance if provenance is not None else {**PROVENANCE, "dim": matrix.shape[1]}
    return VectorBatch(list(range(n)), [{} for _ in range(n)], matrix, provenance,
                       list(range(first_line, first_line + n)), "v.jsonl")


def unit_rows(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def low_rank(rows: int, dim: int, rank: int, seed: int = 0) -> np.ndarray:
    """Points on a `rank`-dimensional affine subspace, with decreasing spread along its axes."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0].T
    coords = rng.normal(size=(rows, rank)) * np.linspace(3, 1, rank)
    return (coords @ basis + rng.normal(size=dim)).astype(np.float32)


# --- prefix ----------------------------------------------------------------------------------


def test_prefix_renormalizes_by_default():
    matrix = unit_rows(5, 8)
    out = truncate_batch(batch_of(matrix), 3)
    assert out.matrix.shape == (5, 3) and out.matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.matrix, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(out.matrix * np.linalg.norm(matrix[:, :3], axis=1, keepdims=True), matrix[:, :3], rtol=1e-5)
    assert out.provenance == {"model": "toy", "dim": 3, "normalized": True, "truncate_dim": 3}


def test_prefix_without_renormalizing_is_a_slice():
    matrix = unit_rows(4, 8)
    out = truncate_batch(batch_of(matrix), 5, renormalize=False)
    assert np.array_equal(out.matrix, matrix[:, :5])
    assert out.provenance["normalized"] is False


def test_a_row_that_truncates_to_zeros_stays_zero():
    matrix = np.array([[0, 0, 1, 0], [3, 4, 0, 0]], dtype=np.float32)
    with np.errstate(all="raise"):
        out = truncate_prefix(matrix, 2)
    np.testing.assert_allclose(out, [[0, 0], [0.6, 0.8]], rtol=1e-6)
    assert not out[0].any()


def test_float16_stays_float16():
    half = unit_rows(3, 8).astype(np.float16)
    out = truncate_batch(batch_of(half, {**PROVENANCE, "dtype": "float16"}), 4)
    assert out.matrix.dtype == np.float16 and out.provenance["dtype"] == "float16"


@pytest.mark.parametrize("dim,message", [(9, "--dim 9 is larger than the vectors (8 dimensions)"), (0, "at least 1")])
def test_impossible_dims_are_usage_errors(dim, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        truncate_batch(batch_of(unit_rows(2, 8)), dim)


def test_quantized_input_is_refused():
    bits = quantize_batch(batch_of(unit_rows(3, 8)), "binary")
    with pytest.raises(DataError, match="already quantized .binary.; truncate needs float vectors: truncate first"):
        truncate_batch(bits, 4)


# --- PCA -------------------------------------------------------------------------------------


def test_streamed_fit_equals_a_direct_svd_of_the_centered_sample():
    sample = unit_rows(300, 12, seed=3)
    fitter = PCAFitter()
    for start in range(0, 300, 37):  # uneven batches exercise the pairwise merge
        fitter.add(batch_of(sample[start:start + 37]))
    pca = fitter.fit(5)
    x = sample.astype(np.float64)
    _, singular, rows = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(pca.mean, x.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(pca.explained_variance, singular[:5] ** 2 / 299, rtol=1e-5)
    for mine, direct in zip(pca.components, rows[:5]):  # equal up to each axis' sign
        np.testing.assert_allclose(mine * np.sign(mine @ direct), direct, atol=1e-5)


def test_pca_keeps_a_low_rank_sample_exactly():
    sample = low_rank(200, 16, rank=4)
    pca = fit_pca([batch_of(sample)], 4)
    projected = pca.project(sample, 4)
    restored = projected @ pca.components + pca.mean
    np.testing.assert_allclose(restored, sample, atol=1e-4)
    variances = projected.var(axis=0)
    assert (np.diff(variances) < 0).all()  # components come by decreasing variance


def test_pca_truncation_keeps_more_than_a_prefix_for_a_non_matryoshka_space():
    sample = low_rank(400, 16, rank=4, seed=1)
    pca = fit_pca([batch_of(sample)], 4)
    centered = sample - sample.mean(axis=0)
    kept_by_pca = np.linalg.norm(pca.project(sample, 4)) / np.linalg.norm(centered)
    kept_by_prefix = np.linalg.norm(centered[:, :4]) / np.linalg.norm(centered)
    assert kept_by_pca > 0.999 > kept_by_prefix


def test_pca_batch_provenance_and_renormalization():
    sample = unit_rows(100, 8)
    pca = fit_pca([batch_of(sample)], 3)
    out = truncate_batch(batch_of(sample[:5]), 2, pca=pca)
    np.testing.assert_allclose(np.linalg.norm(out.matrix, axis=1), 1, rtol=1e-6)
    assert out.provenance == {"model": "toy", "dim": 2, "normalized": True, "truncate_dim": 2, "pca_sha256": pca.sha256}
    raw = truncate_batch(batch_of(sample[:5]), 3, renormalize=False, pca=pca)
    np.testing.assert_allclose(raw.matrix, (sample[:5] - pca.mean) @ pca.components.T, rtol=1e-5, atol=1e-6)
    # Prefix truncation of PCA output keeps the rotation's hash: it is still that rotation.
    shorter = truncate_batch(raw, 1)
    assert shorter.provenance["pca_sha256"] == pca.sha256 and shorter.provenance["dim"] == 1


def test_pca_file_round_trip_is_deterministic(tmp_path):
    sample = unit_rows(64, 8, seed=5)
    first = fit_pca([batch_of(sample)], 4)
    assert fit_pca([batch_of(sample)], 4).file_bytes == first.file_bytes  # same sample, same file
    split = fit_pca([batch_of(sample[:30]), batch_of(sample[30:])], 4)
    np.testing.assert_allclose(split.components, first.components, atol=1e-5)  # signs fixed the same way
    first.save(str(tmp_path / "pca.npz"))
    loaded = PCA.load(str(tmp_path / "pca.npz"))
    assert loaded.sha256 == first.sha256 == hashlib.sha256((tmp_path / "pca.npz").read_bytes()).hexdigest()
    assert np.array_equal(loaded.components, first.components) and np.array_equal(loaded.mean, first.mean)
    assert loaded.count == 64 and loaded.provenance == {"model": "toy", "dim": 8}
    assert np.array_equal(truncate_batch(batch_of(sample), 4, pca=loaded).matrix, truncate_batch(batch_of(sample), 4, pca=first).matrix)


def test_a_sample_needs_more_vectors_than_components():
    with pytest.raises(UsageError, match="needs more than 4 sample vectors; the sample has 4"):
        fit_pca([batch_of(unit_rows(4, 8))], 4)
    with pytest.raises(UsageError, match="more than the sample's 8 dimensions"):
        fit_pca([batch_of(unit_rows(40, 8))], 9)
    with pytest.raises(UsageError, match="sample is empty"):
        fit_pca([], 2)


def test_pca_refusals():
    pca = fit_pca([batch_of(unit_rows(50, 8))], 3)
    with pytest.raises(DataError, match="fitted on 8-dimensional vectors; these have 6"):
        truncate_batch(batch_of(unit_rows(2, 6)), 3, pca=pca)
    with pytest.raises(UsageError, match="more components than the PCA holds .3."):
        truncate_batch(batch_of(unit_rows(2, 8)), 4, pca=pca)
    rotated = truncate_batch(batch_of(unit_rows(2, 8)), 3, pca=pca)
    with pytest.raises(DataError, match="already PCA-rotated"):
        truncate_batch(batch_of(unit_rows(2, 8), rotated.provenance | {"dim": 8}), 3, pca=pca)
    with pytest.raises(DataError, match="learned from vectors with model 'toy', these have 'other'"):
        truncate_batch(batch_of(unit_rows(2, 8), {**PROVENANCE, "model": "other"}), 3, pca=pca)
    with pytest.raises(DataError, match="already PCA-rotated"):
        fit_pca([rotated], 1)


@pytest.mark.parametrize("arrays,message", [
    ({"mean": np.zeros(3)}, "no components array"),
    ({"mean": np.zeros(3), "components": np.zeros((2, 4))}, "float mean"),
    ({"mean": np.zeros(3), "components": np.full((2, 3), np.inf)}, "NaN or infinite"),
])
def test_bad_pca_files(tmp_path, arrays, message):
    np.savez(tmp_path / "p.npz", **arrays)
    with pytest.raises(DataError, match=message):
        PCA.load(str(tmp_path / "p.npz"))


# --- Matryoshka warning -----------------------------------------------------------------------


def test_matryoshka_warning():
    manifest = {"name": "mrl-model", "dim": 768, "matryoshka_dims": [768, 512, 256, 128, 64]}
    assert matryoshka_warning(manifest, 256) is None
    assert matryoshka_warning(manifest, 768) is None
    assert matryoshka_warning(manifest, 300) == (
        "mrl-model was trained for Matryoshka dimensions 768, 512, 256, 128, 64; 300 is not one, so it may lose more quality")
    assert matryoshka_warning({"name": "all-MiniLM-L6-v2", "matryoshka_dims": None}, 300) is None
    assert matryoshka_warning(None, 300) is None


# --- invariants ---------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 16)), elements=st.floats(-10, 10, width=32)),
       st.data())
def test_property_prefix_rows_are_unit_or_zero_and_keep_direction(matrix, data):
    dim = data.draw(st.integers(1, matrix.shape[1]))
    with np.errstate(divide="raise", invalid="raise"):
        out = truncate_prefix(matrix, dim)
    norms = np.linalg.norm(out, axis=1)
    zero = ~matrix[:, :dim].any(axis=1)
    assert np.allclose(norms[~zero], 1, rtol=1e-5) and (out[zero] == 0).all()
    # Same direction: no sign flips (a value tiny next to its row's largest may round to 0).
    assert ((np.sign(out) == np.sign(matrix[:, :dim])) | (out == 0)).all()
