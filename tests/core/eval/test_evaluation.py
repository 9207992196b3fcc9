"""End-to-end evaluation in the library: data loading, every search path against brute force,
sweep grids, STS scores against scipy, and the ANN measures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vecpipe.core.eval import evaluation as ev
from vecpipe.core.eval.ann import pareto_flags, recall_at_k
from vecpipe.core.errors import DataError, UsageError

DIM = 24
PROVENANCE = {"model": "test-model", "model_sha256": "ab" * 32, "dim": DIM, "normalized": True}
RNG = np.random.default_rng(11)


def unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


DOCS = ev.Vectors([f"d{i}" for i in range(80)], unit(RNG.normal(size=(80, DIM))), PROVENANCE, "docs")
QUERIES = ev.Vectors([f"q{i}" for i in range(7)], unit(RNG.normal(size=(7, DIM))), PROVENANCE, "queries")


def brute_force(docs: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    return np.argsort(-(unit(queries) @ unit(docs).T), axis=1, kind="stable")[:, :k].tolist()


def ranked(run: dict, qid: str) -> list[str]:
    return [doc for doc, _ in sorted(run[qid].items(), key=lambda item: -item[1])]


# --- search paths -------------------------------------------------------------------------


def test_exact_search_is_brute_force_cosine():
    outcome = ev.search_run(DOCS, QUERIES, ev.SearchConfig(), top_k=10)
    expected = brute_force(DOCS.matrix, QUERIES.matrix, 10)
    for row, qid in enumerate(QUERIES.ids):
        assert ranked(outcome.run, qid) == [DOCS.ids[i] for i in expected[row]]
        best = DOCS.ids[expected[row][0]]
        assert outcome.run[qid][best] == pytest.approx(float(QUERIES.matrix[row] @ DOCS.matrix[expected[row][0]]), abs=1e-6)
    assert outcome.seconds > 0 and outcome.qps(len(QUERIES.ids)) > 0


def test_top_k_larger_than_the_corpus_returns_every_document():
    outcome = ev.search_run(DOCS, QUERIES, ev.SearchConfig(), top_k=1000)
    assert all(len(docs) == len(DOCS.ids) for docs in outcome.run.values())


def test_hnsw_with_a_wide_search_finds_the_exact_neighbours():
    config = ev.SearchConfig(hnsw=ev.parse_index_params("M=16,ef_construction=200,ef=200"))
    outcome = ev.search_run(DOCS, QUERIES, config, top_k=5)
    exact = ev.search_run(DOCS, QUERIES, ev.SearchConfig(), top_k=5)
    for qid in QUERIES.ids:
        assert ranked(outcome.run, qid) == ranked(exact.run, qid)


def test_binary_codes_rank_by_hamming_and_full_rescoring_restores_the_exact_ranking():
    codes_only = ev.search_run(DOCS, QUERIES, ev.SearchConfig(dtype="binary"), top_k=10)
    signs = lambda m: np.where(m > 0, 1.0, -1.0)  # noqa: E731 - the ±1 vectors binary codes stand for
    expected = signs(QUERIES.matrix) @ signs(DOCS.matrix).T / DIM
    for row, qid in enumerate(QUERIES.ids):
        for doc, score in codes_only.run[qid].items():
            assert score == pytest.approx(expected[row, DOCS.ids.index(doc)], abs=1e-6)
    # k x R covers the whole corpus, so rescoring ranks every document by float cosine.
    rescored = ev.search_run(DOCS, QUERIES, ev.SearchConfig(dtype="binary", rescore=8), top_k=10)
    exact = ev.search_run(DOCS, QUERIES, ev.SearchConfig(), top_k=10)
    for qid in QUERIES.ids:
        assert ranked(rescored.run, qid) == ranked(exact.run, qid)


def test_int8_search_scores_queries_against_codes_quantized_with_the_corpus_ranges():
    from vecpipe.core.vectors.quantize import quantize

    outcome = ev.search_run(DOCS, QUERIES, ev.SearchConfig(dtype="int8"), top_k=10)
    ranges = np.vstack([DOCS.matrix.min(axis=0), DOCS.matrix.max(axis=0)]).astype(np.float64)
    step = (ranges[1] - ranges[0]) / 255
    centres = ranges[0] + (quantize(DOCS.matrix, "int8", ranges.astype(np.float32)) + 128.5) * step
    scores = unit(QUERIES.matrix) @ centres.T
    for row, qid in enumerate(QUERIES.ids):
        np.testing.assert_allclose(sorted(outcome.run[qid].values(), reverse=True), np.sort(scores[row])[::-1][:10], rtol=1e-5)


def test_truncation_keeps_a_renormalized_prefix_and_says_so():
    short = ev.truncated(DOCS, 8)
    np.testing.assert_allclose(short.matrix, unit(DOCS.matrix[:, :8]), atol=1e-6)
    assert short.provenance["dim"] == short.provenance["truncate_dim"] == 8
    assert ev.truncated(DOCS, DIM) is DOCS and ev.truncated(DOCS, None) is DOCS
    with pytest.raises(UsageError, match="--dim"):
        ev.truncated(DOCS, DIM + 1)


def test_truncated_search_is_exact_search_over_the_prefix():
    outcome = ev.search_run(DOCS, QUERIES, ev.SearchConfig(dim=8), top_k=5)
    expected = brute_force(DOCS.matrix[:, :8], QUERIES.matrix[:, :8], 5)
    assert ranked(outcome.run, "q0") == [DOCS.ids[i] for i in expected[0]]


@pytest.mark.parametrize("config, message", [
    (ev.SearchConfig(dtype="float16"), "unknown dtype"),
    (ev.SearchConfig(rescore=2), "--rescore needs --quantize"),
    (ev.SearchConfig(dtype="binary", rescore=0), "--rescore needs"),
    (ev.SearchConfig(dtype="int8", hnsw=(("M", 8),)), "--index-params applies to float32"),
])
def test_impossible_configurations_are_usage_errors(config, message):
    with pytest.raises(UsageError, match=message):
        config.check()


def test_index_params_parse_and_refuse_unknown_keys():
    assert ev.parse_index_params("M=8, ef=50,ef_construction=100") == (("M", 8), ("ef", 50), ("ef_construction", 100))
    for bad in ("M=0", "m=16", "ef=abc", "M"):
        with pytest.raises(UsageError, match="--index-params"):
            ev.parse_index_params(bad)


def test_bytes_per_vector():
    assert [ev.bytes_per_vector(t, 384) for t in ("float32", "int8", "binary")] == [1536, 384, 48]
    assert ev.bytes_per_vector("binary", 20) == 3


def test_sweep_grid_has_codes_alone_and_each_rescoring_for_quantized_types():
    configs = ev.sweep_configs([64, 32], ["float32", "binary"], [1, 4])
    assert [(c.dim, c.dtype, c.rescore) for c in configs] == [
        (64, "float32", None), (64, "binary", None), (64, "binary", 1), (64, "binary", 4),
        (32, "float32", None), (32, "binary", None), (32, "binary", 1), (32, "binary", 4),
    ]
    assert ev.baseline_config(configs, 64, None) == configs[0]
    assert ev.baseline_config(configs[4:], 64, None) == ev.SearchConfig(64, "float32")
    with pytest.raises(UsageError):
        ev.sweep_configs([64], ["float64"], [])


def test_evaluate_config_scores_the_run_against_the_qrels():
    data = ev.RetrievalData(DOCS.ids, [""] * 80, QUERIES.ids, [""] * 7,
                            {qid: {DOCS.ids[brute_force(DOCS.matrix, QUERIES.matrix, 1)[i][0]]: 1} for i, qid in enumerate(QUERIES.ids)}, {})
    outcome = ev.evaluate_config(data, DOCS, QUERIES, ev.SearchConfig(), k_values=[1, 5])
    assert outcome.main_score == 1.0 and outcome.evaluation.averages["mrr_at_1"] == 1.0
    assert outcome.bytes_per_vector == DIM * 4 and outcome.evaluation.k_values == (1, 5, 10)


def test_ignore_identical_ids_keeps_top_k_other_documents_end_to_end():
    """Queries that are also documents (ArguAna, Quora): each finds itself first; MTEB drops it and keeps k others."""
    docs = ev.Vectors(DOCS.ids[:70] + QUERIES.ids, np.vstack([DOCS.matrix[:70], QUERIES.matrix]), PROVENANCE, "docs")
    ranking = brute_force(docs.matrix, QUERIES.matrix, 4)
    assert all(row[0] == 70 + i for i, row in enumerate(ranking))  # each query is its own nearest document
    truth = [[docs.ids[j] for j in row[1:]] for row in ranking]
    data = ev.RetrievalData(docs.ids, [""] * 77, QUERIES.ids, [""] * 7,
                            {qid: {truth[i][0]: 1} for i, qid in enumerate(QUERIES.ids)}, {})
    found_self = ev.evaluate_config(data, docs, QUERIES, ev.SearchConfig(), top_k=3, k_values=[1])
    assert found_self.evaluation.averages["precision_at_1"] == 0.0
    outcome = ev.evaluate_config(data, docs, QUERIES, ev.SearchConfig(), top_k=3, k_values=[1], ignore_identical_ids=True)
    assert outcome.evaluation.averages["precision_at_1"] == 1.0
    for i, qid in enumerate(QUERIES.ids):
        assert ranked(outcome.search.run, qid) == truth[i]


# --- data ---------------------------------------------------------------------------------


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def beir(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "text": "two "}])
    queries = write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "unjudged"}])
    (tmp_path / "qrels").mkdir()
    qrels = tmp_path / "qrels" / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td2\t1\n")
    return corpus, queries, qrels


def test_beir_loading_joins_titles_keeps_judged_queries_and_hashes_inputs(beir):
    corpus, queries, qrels = beir
    data = ev.load_retrieval_data(str(corpus), str(queries), str(qrels))
    assert data.doc_texts == ["T one", "two"]
    assert data.query_ids == ["q1"] and data.judged_without_text == ["q9"]
    assert data.inputs["corpus"]["path"] == str(corpus) and len(data.inputs["qrels"]["sha256"]) == 64


def test_duplicate_document_ids_are_a_data_error(beir):
    corpus, queries, qrels = beir
    write_jsonl(corpus, [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}])
    with pytest.raises(DataError, match="appears twice"):
        ev.load_retrieval_data(str(corpus), str(queries), str(qrels))


def test_queries_file_without_any_judged_query_is_a_data_error(beir):
    corpus, queries, qrels = beir
    write_jsonl(queries, [{"_id": "q7", "text": "nothing"}])
    with pytest.raises(DataError, match="none of the judged queries"):
        ev.load_retrieval_data(str(corpus), str(queries), str(qrels))


def test_missing_input_file_names_it(beir, tmp_path):
    corpus, queries, qrels = beir
    with pytest.raises(DataError) as caught:
        ev.load_retrieval_data(str(tmp_path / "nope.jsonl"), str(queries), str(qrels))
    assert caught.value.source.endswith("nope.jsonl")


# --- STS ----------------------------------------------------------------------------------


def test_sts_scores_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    a, b = RNG.normal(size=(50, 8)), RNG.normal(size=(50, 8))
    gold = np.round(RNG.uniform(0, 5, size=50), 1)  # rounding makes ties, as real gold scores have
    scores = ev.sts_scores(a, b, gold)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert scores["cosine_spearman"] == pytest.approx(stats.spearmanr(gold, cosine)[0], abs=1e-12)
    assert scores["cosine_pearson"] == pytest.approx(stats.pearsonr(gold, cosine)[0], abs=1e-12)
    assert scores["manhattan_spearman"] == pytest.approx(stats.spearmanr(gold, -np.abs(a - b).sum(1))[0], abs=1e-12)
    assert scores["euclidean_pearson"] == pytest.approx(stats.pearsonr(gold, -np.linalg.norm(a - b, axis=1))[0], abs=1e-12)
    assert scores["spearman"] == scores["cosine_spearman"] and scores["pearson"] == scores["cosine_pearson"]


def test_sts_pairs_read_numbers_and_strings_and_name_bad_lines(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1},
                                                 {"sentence1": "c", "sentence2": "d", "score": "2.5"}])
    pairs = ev.read_sts_pairs(str(good))
    assert pairs.first == ["a", "c"] and pairs.gold.tolist() == [1.0, 2.5]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1},
                                               {"sentence1": "c", "score": 2}])
    with pytest.raises(DataError) as caught:
        ev.read_sts_pairs(str(bad))
    assert (caught.value.line, "sentence2" in caught.value.message) == (2, True)
    nan = write_jsonl(tmp_path / "nan.jsonl", [{"sentence1": "a", "sentence2": "b", "score": "nan"}] * 2)
    with pytest.raises(DataError, match="must be a number"):
        ev.read_sts_pairs(str(nan))


def test_sts_needs_two_pairs(tmp_path):
    one = write_jsonl(tmp_path / "one.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1}])
    with pytest.raises(DataError, match="at least 2 pairs"):
        ev.read_sts_pairs(str(one))


# --- ANN measures ---------------------------------------------------------------------------


def test_recall_counts_shared_ids_per_query():
    assert recall_at_k([["a", "b"], ["c", "x"]], [["a", "b"], ["c", "d"]], 2) == 0.75
    assert recall_at_k([["a"]], [["a"]], 10) == 1.0  # an index with one row: k is what exists


def test_pareto_frontier_keeps_points_nothing_beats():
    points = [(0.5, 1000.0), (0.9, 500.0), (0.8, 400.0), (0.99, 100.0), (0.99, 50.0)]
    assert pareto_flags(points) == [True, True, False, True, False]
