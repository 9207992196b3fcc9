"""Retrieval metrics against pytrec_eval (the trec_eval MTEB calls) and correlations against scipy.

The committed fixture (tests/fixtures/make_trec_reference.py) needs neither package; the live
test draws fresh random cases and asks pytrec_eval directly (a dev dependency).
"""
from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from vecpipe.core.errors import DataError
from vecpipe.core.eval.metrics import (
    RETRIEVAL_METRICS,
    average_ranks,
    evaluate_retrieval,
    pearson,
    spearman,
)
from vecpipe.formats.trec import trec_ranking

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
REFERENCE = json.loads((FIXTURES / "trec_reference.json").read_text())
TOLERANCE = 1e-6
# vecpipe's metric name -> pytrec_eval's measure name.
TREC_NAMES = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P", "hit_rate": "success"}


def load_generator():
    spec = importlib.util.spec_from_file_location("make_trec_reference", FIXTURES / "make_trec_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_mrr(recip_rank: float, k: int) -> float:
    """MRR@k from trec_eval's uncut recip_rank: 1/r counts only when r <= k."""
    return recip_rank if recip_rank > 0 and round(1 / recip_rank) <= k else 0.0


def assert_matches_pytrec(case: dict, reference: dict[str, dict[str, float]]) -> None:
    if not reference:
        with pytest.raises(DataError):
            evaluate_retrieval(case["run"], case["qrels"], case["k_values"])
        return
    ours = evaluate_retrieval(case["run"], case["qrels"], case["k_values"])
    assert set(ours.per_query) == set(reference)
    for qid, trec in reference.items():
        for k in case["k_values"]:
            for name, trec_name in TREC_NAMES.items():
                assert ours.per_query[qid][f"{name}_at_{k}"] == pytest.approx(trec[f"{trec_name}_{k}"], abs=TOLERANCE), (qid, name, k)
            assert ours.per_query[qid][f"mrr_at_{k}"] == pytest.approx(expected_mrr(trec["recip_rank"], k), abs=TOLERANCE)
    for name, trec_name in TREC_NAMES.items():
        for k in case["k_values"]:
            mean = sum(trec[f"{trec_name}_{k}"] for trec in reference.values()) / len(reference)
            assert ours.averages[f"{name}_at_{k}"] == pytest.approx(mean, abs=TOLERANCE)


@pytest.mark.parametrize("index", range(len(REFERENCE["retrieval"])))
def test_agrees_with_committed_pytrec_eval_reference(index):
    case = REFERENCE["retrieval"][index]
    assert_matches_pytrec(case, case["pytrec_eval"])


def test_agrees_with_live_pytrec_eval_on_fresh_random_cases():
    import pytrec_eval  # noqa: F401  (dev dependency: pip install -e '.[dev]')

    generator = load_generator()
    rng = random.Random(7)
    for _ in range(300):
        case = generator.random_case(rng)
        assert_matches_pytrec(case, generator.pytrec_reference(case))


def test_fixture_covers_the_edge_cases_it_claims():
    cases = REFERENCE["retrieval"]
    assert any(set(c["qrels"]) - set(c["run"]) for c in cases), "judged queries missing from the run"
    assert any(set(c["run"]) - set(c["qrels"]) for c in cases), "run queries without judgments"
    assert any(len(set(s.values())) < len(s) for c in cases for s in c["run"].values()), "tied scores"
    assert any(v >= 2 for c in cases for j in c["qrels"].values() for v in j.values()), "graded relevance"
    assert any(v < 0 for c in cases for j in c["qrels"].values() for v in j.values()), "negative judgments"
    assert any(
        not any(v > 0 for v in c["qrels"][q].values()) for c in cases for q in c["pytrec_eval"]
    ), "evaluated queries with no relevant document"


# --- hand-checked cases ---------------------------------------------------------------


def test_ties_are_broken_by_descending_document_id():
    assert trec_ranking({"a": 1.0, "b": 1.0, "c": 2.0, "d10": 0.5, "d9": 0.5}) == ["c", "b", "a", "d9", "d10"]


def test_tie_order_decides_the_first_relevant_rank():
    # "b" > "a", so "b" takes rank 1 of the tie: the relevant "a" is at rank 2.
    result = evaluate_retrieval({"q": {"a": 0.5, "b": 0.5}}, {"q": {"a": 1}}, [1, 2])
    assert result.per_query["q"]["mrr_at_1"] == 0.0
    assert result.per_query["q"]["mrr_at_2"] == 0.5
    assert result.per_query["q"]["ndcg_at_2"] == pytest.approx(1 / math.log2(3))


def test_ndcg_gain_is_linear_in_the_grade():
    # Ranking: d1 (grade 1) then d2 (grade 3). Ideal: 3, 1.
    result = evaluate_retrieval({"q": {"d1": 0.9, "d2": 0.8}}, {"q": {"d1": 1, "d2": 3}}, [2])
    dcg = 1 + 3 / math.log2(3)
    ideal = 3 + 1 / math.log2(3)
    assert result.per_query["q"]["ndcg_at_2"] == pytest.approx(dcg / ideal)


def test_ideal_ranking_includes_relevant_documents_the_run_missed():
    result = evaluate_retrieval({"q": {"d1": 1.0}}, {"q": {"d1": 1, "d2": 1}}, [1, 10])
    assert result.per_query["q"]["ndcg_at_1"] == 1.0
    assert result.per_query["q"]["ndcg_at_10"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert result.per_query["q"]["recall_at_10"] == 0.5
    assert result.per_query["q"]["map_at_10"] == 0.5  # divides by all 2 relevant, not by those retrieved


def test_precision_divides_by_k_even_past_the_end_of_the_run():
    result = evaluate_retrieval({"q": {"d1": 1.0}}, {"q": {"d1": 1}}, [1, 5])
    assert result.per_query["q"]["precision_at_5"] == 0.2


def test_zero_and_negative_judgments_are_not_relevant():
    result = evaluate_retrieval({"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q": {"a": 0, "b": -1, "c": 1}}, [3])
    scores = result.per_query["q"]
    assert scores["mrr_at_3"] == pytest.approx(1 / 3)
    assert scores["recall_at_3"] == 1.0
    assert scores["ndcg_at_3"] == pytest.approx(1 / math.log2(4))


def test_query_without_relevant_documents_scores_zero_and_counts():
    run = {"good": {"a": 1.0}, "hopeless": {"a": 1.0}}
    qrels = {"good": {"a": 1}, "hopeless": {"a": 0}}
    result = evaluate_retrieval(run, qrels, [1])
    assert result.per_query["hopeless"] == {f"{m}_at_1": 0.0 for m in RETRIEVAL_METRICS}
    assert result.averages["ndcg_at_1"] == 0.5
    assert result.without_relevant == ["hopeless"]


def test_judged_queries_missing_from_the_run_are_left_out_unless_complete():
    run = {"q1": {"a": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert evaluate_retrieval(run, qrels, [1]).averages["ndcg_at_1"] == 1.0
    complete = evaluate_retrieval(run, qrels, [1], complete=True)
    assert complete.averages["ndcg_at_1"] == 0.5
    assert complete.missing_from_run == ["q2"]


def test_unjudged_run_queries_are_ignored():
    result = evaluate_retrieval({"q1": {"a": 1.0}, "stray": {"a": 1.0}}, {"q1": {"a": 1}}, [1])
    assert list(result.per_query) == ["q1"]
    assert result.not_in_qrels == ["stray"]


def test_nothing_to_score_is_a_data_error():
    with pytest.raises(DataError, match="nothing to score"):
        evaluate_retrieval({}, {"q1": {"a": 1}}, [10])
    assert evaluate_retrieval({}, {"q1": {"a": 1}}, [10], complete=True).main_score == 0.0


def test_k_values_are_sorted_and_deduplicated_and_must_be_positive():
    assert evaluate_retrieval({"q": {"a": 1.0}}, {"q": {"a": 1}}, [10, 1, 10]).k_values == (1, 10)
    with pytest.raises(DataError):
        evaluate_retrieval({"q": {"a": 1.0}}, {"q": {"a": 1}}, [0, 10])


# --- correlations ------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(REFERENCE["correlation"])))
def test_correlations_agree_with_scipy(index):
    case = REFERENCE["correlation"][index]
    assert spearman(case["x"], case["y"]) == pytest.approx(case["spearman"], abs=1e-12)
    assert pearson(case["x"], case["y"]) == pytest.approx(case["pearson"], abs=1e-12)


def test_average_ranks_share_the_mean_position_among_ties():
    assert average_ranks([10, 20, 20, 5, 20]).tolist() == [2.0, 4.0, 4.0, 1.0, 4.0]


def test_hand_checked_correlations():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == 1.0
    assert pearson([1, 2, 3], [3, 2, 1]) == -1.0
    # ranks x: 1, 2.5, 2.5, 4; y: 1, 2, 3, 4 -> r = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_constant_input_has_no_correlation():
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(pearson(np.ones(4), [1, 2, 3, 4]))


@pytest.mark.parametrize("x, y", [([1, 2], [1, 2, 3]), ([1], [1]), ([1, float("nan")], [1, 2])])
def test_bad_correlation_inputs_are_data_errors(x, y):
    with pytest.raises(DataError):
        spearman(x, y)
