"""MTEB's published all-MiniLM-L6-v2 scores, reproduced on the real data in ../shared/data.

Slow, but run by `make test`. On two otherwise idle cores, embedding SciFact's 5183 documents
(the `scifact_embedded` session fixture, shared with the ANN recall test) takes about 4.5 minutes
and SICK-R's 6077 distinct sentences about 12 seconds. Embedding runs with the cache off, so the
tests measure this code, not what an earlier run left in the cache.
"""
from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from vecpipe.core.eval import evaluation as ev

SCIFACT_NDCG_AT_10 = 0.64508
SICKR_COSINE_SPEARMAN = 0.77582
TOLERANCE = 0.003

pytestmark = pytest.mark.slow


def test_scifact_exact_search_reproduces_mteb_ndcg_at_10(scifact_embedded):
    data, docs, queries = scifact_embedded
    assert (len(data.doc_ids), len(data.query_ids)) == (5183, 300)
    outcome = ev.evaluate_config(data, docs, queries, ev.SearchConfig())
    assert outcome.main_score == pytest.approx(SCIFACT_NDCG_AT_10, abs=TOLERANCE)
    assert outcome.evaluation.per_query.keys() == set(data.query_ids)


def test_sickr_reproduces_mteb_cosine_spearman(default_model):
    pairs = ev.read_sts_pairs(str(SHARED_DATA / "sickr" / "test.jsonl"))
    assert len(pairs.gold) == 9927
    scores = ev.evaluate_sts(ev.Embedder(default_model, use_cache=False), pairs)
    assert scores["cosine_spearman"] == pytest.approx(SICKR_COSINE_SPEARMAN, abs=TOLERANCE)


BANKING77_ACCURACY = 0.80042  # MTEB's published 0.8004220779220779


def test_banking77_reproduces_mteb_classification_accuracy(default_model):
    from vecpipe.core.eval.classification import evaluate_classification, read_labelled

    folder = SHARED_DATA / "banking77"
    train, test = read_labelled(str(folder / "train.jsonl")), read_labelled(str(folder / "test.jsonl"))
    assert (len(train.texts), len(test.texts), len(set(train.labels))) == (10003, 3080, 77)
    result = evaluate_classification(ev.Embedder(default_model, use_cache=False), train, test)
    assert result.draws == 10 and len(result.scores["scores_per_experiment"]) == 10
    assert result.train_texts_used <= 10 * 8 * 77
    assert result.main_score == pytest.approx(BANKING77_ACCURACY, abs=TOLERANCE)


BM25S_SCIFACT_NDCG_AT_10 = 0.68630  # bm25s run directly: English stopwords, PyStemmer English, k1 1.5, b 0.75 (bench/hybrid.py)


def test_scifact_lexical_matches_bm25s_and_rrf_hybrid_beats_both(scifact_embedded):
    data, docs, queries = scifact_embedded
    lexical = ev.evaluate_config(data, None, None, ev.SearchConfig(), mode="lexical")
    assert lexical.main_score == pytest.approx(BM25S_SCIFACT_NDCG_AT_10, abs=0.005)
    hybrid = ev.evaluate_config(data, docs, queries, ev.SearchConfig(), mode="hybrid")
    assert hybrid.main_score >= 0.71
