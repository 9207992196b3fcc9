"""Fusing ranked lists and runs: RRF and convex mixes computed by hand, ties, and the hybrid search mode."""
from __future__ import annotations

import numpy as np
import pytest

from vecpipe.core.errors import UsageError
from vecpipe.core.index.lexical import LexicalSettings
from vecpipe.core.index.vector_index import BuildOptions, VectorIndex, build_index
from vecpipe.core.retrieval.fusion import alpha_weights, check, fuse, fuse_runs
from vecpipe.core.retrieval.modes import Fusion, ModeRequest, default_mode, search
from vecpipe.formats.vectors import VectorBatch

DENSE = [("a", 0.9), ("b", 0.8), ("c", 0.5)]
LEXICAL = [("c", 12.0), ("d", 7.0), ("a", 2.0)]


def test_rrf_sums_reciprocal_ranks_and_reports_each_lists_rank():
    fused = fuse({"dense": DENSE, "lexical": LEXICAL}, "rrf", rrf_k=60)
    expected = {"a": 1 / 61 + 1 / 63, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62}
    assert [doc for doc, _, _ in fused] == ["a", "c", "b", "d"]  # a and c tie: a came first in the dense list
    assert {doc: score for doc, score, _ in fused} == pytest.approx(expected)
    assert dict((doc, ranks) for doc, _, ranks in fused)["c"] == {"dense": 3, "lexical": 1}
    assert dict((doc, ranks) for doc, _, ranks in fused)["d"] == {"lexical": 2}


def test_convex_mixes_min_max_normalized_scores_over_the_union():
    fused = fuse({"dense": DENSE, "lexical": LEXICAL}, "convex", weights=alpha_weights(["dense", "lexical"], 0.7))
    dense_norm = {"a": 1.0, "b": 0.75, "c": 0.0}
    lexical_norm = {"c": 1.0, "d": 0.5, "a": 0.0}
    expected = {doc: 0.7 * dense_norm.get(doc, 0) + 0.3 * lexical_norm.get(doc, 0) for doc in "abcd"}
    assert {doc: score for doc, score, _ in fused} == pytest.approx(expected)
    assert [doc for doc, _, _ in fused] == ["a", "b", "c", "d"]
    only_lexical = fuse({"dense": DENSE, "lexical": LEXICAL}, "convex", weights=alpha_weights(["dense", "lexical"], 0.0))
    assert [doc for doc, _, _ in only_lexical][:2] == ["c", "d"]


def test_a_list_of_equal_scores_normalizes_to_one():
    fused = fuse({"x": [("a", 3.0), ("b", 3.0)], "y": []}, "convex")
    assert [score for _, score, _ in fused] == [0.5, 0.5]


def test_fuse_runs_ranks_each_run_as_trec_eval_does_and_cuts_to_depth():
    runs = {"one": {"q": {"d1": 0.5, "d2": 0.9, "d3": 0.5}}, "two": {"q": {"d3": 1.0}, "q2": {"x": 1.0}}}
    fused = fuse_runs(runs, "rrf", depth=2)
    # run one ranks d2, then d3 before d1 (equal scores: id descending); d3 is also first in run two
    assert list(fused["q"]) == ["d3", "d2"]
    assert fused["q"]["d3"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["q2"] == {"x": pytest.approx(1 / 61)}


@pytest.mark.parametrize("args, message", [(("bm25", 60, 0.5), "unknown fusion"), (("rrf", 0, 0.5), "--rrf-k must be positive"),
                                           (("convex", 60, 1.5), "--alpha must be between 0 and 1")])
def test_bad_fusion_settings_are_usage_errors(args, message):
    with pytest.raises(UsageError, match=message):
        check(*args)


DIM = 8
PROVENANCE = {"model": "m", "dim": DIM, "normalized": True}
TEXTS = ["red apples and green pears", "a red car on the road", "green tea leaves", "the road to the sea", "apples of the sea"]


@pytest.fixture(scope="module")
def hybrid_index(tmp_path_factory):
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(len(TEXTS), DIM)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    path = tmp_path_factory.mktemp("hybrid") / "idx"
    ids = [f"t{i}" for i in range(len(TEXTS))]
    build_index(path, [VectorBatch(ids, [{"text": t} for t in TEXTS], matrix, PROVENANCE, list(range(1, 6)), "t.jsonl")],
                BuildOptions(lexical=LexicalSettings()))
    return path, matrix


def test_hybrid_fuses_the_dense_and_lexical_lists_of_the_index(hybrid_index):
    path, matrix = hybrid_index
    query = matrix[3:4]  # the dense list puts t3 first
    with VectorIndex.open(path) as index:
        assert default_mode(index) == "hybrid"
        dense = search(index, ModeRequest("dense", k=5), None, query, PROVENANCE).hits[0]
        lexical = search(index, ModeRequest("lexical", k=5), ["red apples"], None, None).hits[0]
        hybrid = search(index, ModeRequest("hybrid", k=3, fusion=Fusion("rrf")), ["red apples"], query, PROVENANCE).hits[0]
    expected = fuse({"dense": [(h.id, h.score) for h in dense], "lexical": [(h.id, h.score) for h in lexical]}, "rrf")[:3]
    assert [(h.id, h.score, h.ranks) for h in hybrid] == [(doc, pytest.approx(score), ranks) for doc, score, ranks in expected]
    assert [h.rank for h in hybrid] == [1, 2, 3] and hybrid[0].fields == {"text": TEXTS[int(hybrid[0].id[1])]}
    assert {h.id for h in lexical} == {"t0", "t1", "t4"}  # "apples" or "red" (stemmed)


def test_vector_queries_cannot_search_text(hybrid_index):
    path, matrix = hybrid_index
    with VectorIndex.open(path) as index, pytest.raises(UsageError, match="vector queries have none"):
        search(index, ModeRequest("hybrid"), None, matrix[:1], PROVENANCE)
