"""Top-k selection and the Hamming kernel against plain reference computations."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vecpipe.core.index.flat import _HammingScorer
from vecpipe.core.index.scoring import best_positions, top_k


def reference_best(row: np.ndarray, k: int, smallest: bool) -> np.ndarray:
    """Sort by value, ties by position: the order vecpipe promises."""
    keys = row.astype(np.float64) if smallest else -row.astype(np.float64)
    return np.lexsort((np.arange(len(row)), keys))[:k]


@settings(max_examples=200, deadline=None)
@given(
    row=hnp.arrays(np.int32, st.integers(1, 20000), elements=st.integers(0, 40)),  # few values: many ties
    k=st.integers(1, 50),
    smallest=st.booleans(),
)
def test_best_positions_match_a_full_sort_with_ties_to_the_lower_position(row, k, smallest):
    k = min(k, len(row))
    assert best_positions(row, k, smallest).tolist() == reference_best(row, k, smallest).tolist()


def test_top_k_when_the_best_values_sit_outside_the_sample():
    # The sampled bound only narrows the candidates: values between sample points must still win.
    row = np.zeros(50_000, dtype=np.float32)
    row[1::10] = np.linspace(1, 2, 5000)  # off the sample's stride of 12
    positions, scores = top_k(row[None, :], 7)
    assert positions[0].tolist() == reference_best(row, 7, smallest=False).tolist()
    assert scores[0].tolist() == sorted(row, reverse=True)[:7]


def test_top_k_of_k_above_the_sample_size_returns_k():
    row = np.random.default_rng(0).standard_normal(10_000)
    positions, _ = top_k(row[None, :], 6000)
    assert positions[0].tolist() == reference_best(row, 6000, smallest=False).tolist()


@pytest.mark.parametrize("bits", [8, 24, 64, 100, 384, 1024, 2048 + 64])
def test_hamming_distances_equal_a_plain_popcount(bits):
    rng = np.random.default_rng(bits)
    packed = np.packbits(rng.random((3000, bits)) < 0.5, axis=1)
    scorer = _HammingScorer(packed, bits)
    positions, scores = scorer.top(packed[:3], len(packed))
    for query, row, row_scores in zip(packed[:3], positions, scores):
        expected = np.unpackbits(packed ^ query, axis=1).sum(axis=1)
        assert sorted(row.tolist()) == list(range(len(packed)))  # every row, once
        assert np.allclose(row_scores, 1.0 - 2.0 * expected[row] / bits)
        assert (np.diff(row_scores) <= 0).all()  # best first


def test_hamming_top_scores_are_sign_cosines():
    import vecpipe.core.index.flat as flat

    rng = np.random.default_rng(1)
    signs = rng.standard_normal((5000, 128))
    packed = np.packbits(signs > 0, axis=1)
    positions, scores = flat._HammingScorer(packed, 128).top(packed[[10, 4321]], 5)
    assert positions[:, 0].tolist() == [10, 4321] and scores[:, 0].tolist() == [1.0, 1.0]
    plus_minus = np.where(signs > 0, 1.0, -1.0)
    for query, row, row_scores in zip((10, 4321), positions, scores):
        cosines = plus_minus @ plus_minus[query] / 128
        best = reference_best(cosines, 5, smallest=False)
        assert np.allclose(row_scores, cosines[best]) and np.allclose(row_scores, cosines[row])  # ties may come in either order


def test_hamming_searches_from_several_threads_agree_with_one_thread():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(2)
    packed = np.packbits(rng.random((20000, 256)) < 0.5, axis=1)
    scorer = _HammingScorer(packed, 256)
    alone = [scorer.top(query[None, :], 10)[0].tolist() for query in packed[:64]]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda query: scorer.top(query[None, :], 10)[0].tolist(), packed[:64]))
    assert together == alone
