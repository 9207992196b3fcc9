"""Retrieval and STS metrics with exactly the definitions MTEB reports.

Retrieval follows trec_eval as pytrec_eval runs it for MTEB (measures `ndcg_cut.k`,
`map_cut.k`, `recall.k`, `P.k`, `success.k`, relevance level 1):

- A run is ranked by score, highest first; equal scores are ordered by document id,
  *descending* (trec_eval's `comp_sim_docno`). Ranks written in a run file are ignored.
- A judgment >= 1 is relevant; 0 and negative judgments are not.
- nDCG uses the judgment itself as the gain (linear, not 2^rel - 1) and 1/log2(rank + 1)
  as the discount; the ideal ranking is built from all judgments in the qrels.
- MAP@k divides by the number of relevant documents in the qrels, not by min(k, R).
- MRR@k is MTEB's own: 1/rank of the first relevant document within the top k.
- A query judged in the qrels but absent from the run is left out of the averages (as
  pytrec_eval and MTEB do), unless `complete` is set (trec_eval -c), when it scores 0.
  A query in the run but not in the qrels is ignored. A judged query without any
  relevant document is evaluated and scores 0 on every measure.

See docs/EVAL.md for the reasoning and the edge cases.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from vecpipe.core.errors import DataError
from vecpipe.formats.trec import trec_ranking

DEFAULT_K_VALUES = (1, 3, 5, 10, 100, 1000)
MAIN_RETRIEVAL_METRIC = "ndcg_at_10"
MAIN_K = 10
RELEVANCE_LEVEL = 1

# MTEB's key prefixes, in the order a report lists them.
RETRIEVAL_METRICS = ("ndcg", "map", "recall", "precision", "mrr", "hit_rate")

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


@dataclass
class RetrievalEvaluation:
    """Per-query and averaged metrics, keyed by MTEB's names (`ndcg_at_10`, ...)."""

    k_values: tuple[int, ...]
    averages: dict[str, float]
    per_query: dict[str, dict[str, float]]
    # Judged queries the run has no results for: left out of the averages unless complete.
    missing_from_run: list[str] = field(default_factory=list)
    # Queries in the run that the qrels do not judge: never scored.
    not_in_qrels: list[str] = field(default_factory=list)
    # Evaluated queries whose judgments hold no relevant document: they score 0.
    without_relevant: list[str] = field(default_factory=list)

    @property
    def main_score(self) -> float:
        return self.averages[MAIN_RETRIEVAL_METRIC]


def metric_key(metric: str, k: int) -> str:
    return f"{metric}_at_{k}"


def normalize_k_values(k_values: Iterable[int]) -> tuple[int, ...]:
    """Sorted, unique, positive cutoffs."""
    ks = sorted(set(int(k) for k in k_values))
    if not ks or ks[0] < 1:
        raise DataError("cutoffs k must be positive integers")
    return tuple(ks)


def _prefix_at(cumulative: np.ndarray, k: int) -> float:
    """cumulative[k-1], or its last value when fewer than k documents were retrieved."""
    if cumulative.size == 0:
        return 0.0
    return float(cumulative[min(k, cumulative.size) - 1])


def _ideal_dcg_curve(judgments: Mapping[str, int], depth: int) -> np.ndarray:
    gains = np.array(sorted((g for g in judgments.values() if g > 0), reverse=True)[:depth], dtype=np.float64)
    return np.cumsum(gains / np.log2(np.arange(gains.size) + 2.0))


def query_metrics(ranking: Sequence[str], judgments: Mapping[str, int], k_values: Sequence[int]) -> dict[str, float]:
    """All retrieval metrics of one query, for a ranking already in trec order."""
    depth = max(k_values)
    gains = np.array([judgments.get(doc, 0) for doc in ranking[:depth]], dtype=np.float64)
    is_relevant = gains >= RELEVANCE_LEVEL
    positions = np.arange(1, gains.size + 1, dtype=np.float64)
    relevant_so_far = np.cumsum(is_relevant)
    num_relevant = sum(1 for g in judgments.values() if g >= RELEVANCE_LEVEL)

    dcg = np.cumsum(np.where(gains > 0, gains, 0.0) / np.log2(positions + 1.0))
    ideal_dcg = _ideal_dcg_curve(judgments, depth)
    precision_sum = np.cumsum(np.where(is_relevant, relevant_so_far / positions, 0.0))
    first_hit = int(np.argmax(is_relevant)) + 1 if is_relevant.any() else math.inf

    scores: dict[str, float] = {}
    for k in k_values:
        hits = _prefix_at(relevant_so_far, k)
        ideal = _prefix_at(ideal_dcg, k)
        scores[metric_key("ndcg", k)] = _prefix_at(dcg, k) / ideal if ideal > 0 else 0.0
        scores[metric_key("map", k)] = _prefix_at(precision_sum, k) / num_relevant if num_relevant else 0.0
        scores[metric_key("recall", k)] = hits / num_relevant if num_relevant else 0.0
        scores[metric_key("precision", k)] = hits / k
        scores[metric_key("mrr", k)] = 1.0 / first_hit if first_hit <= k else 0.0
        scores[metric_key("hit_rate", k)] = 1.0 if hits > 0 else 0.0
    return scores


def _zero_scores(k_values: Sequence[int]) -> dict[str, float]:
    return {metric_key(m, k): 0.0 for k in k_values for m in RETRIEVAL_METRICS}


def _average(per_query: Mapping[str, Mapping[str, float]], keys: Iterable[str]) -> dict[str, float]:
    count = len(per_query)
    return {key: sum(scores[key] for scores in per_query.values()) / count for key in keys}


def _ordered_keys(k_values: Sequence[int]) -> list[str]:
    return [metric_key(m, k) for m in RETRIEVAL_METRICS for k in k_values]


SCORE_PRECISIONS = ("float64", "float32")


def without_identical_ids(run: Run, keep: int | None = None) -> tuple[dict[str, dict[str, float]], int]:
    """The run without hits whose document id is the query id, and how many were dropped.

    MTEB does this for tasks whose queries are also documents (ArguAna, Quora, ...:
    `ignore_identical_ids`); a query would otherwise find itself at rank 1. A retriever that
    fetched one hit more for this passes `keep` (its top k): each query keeps its first `keep`
    other hits, in the run's order."""
    kept = {qid: dict([(doc, score) for doc, score in docs.items() if doc != qid][:keep]) for qid, docs in run.items()}
    return kept, sum(len(docs) for docs in run.values()) - sum(len(docs) for docs in kept.values())


def at_score_precision(run: Run, precision: str) -> Run:
    """Scores rounded to float32, as pytrec_eval (so MTEB) and trec_eval <= 9 store them, or kept as doubles
    (trec_eval 10). Two scores distinct as doubles can be equal as float32 and then tie, broken by doc id."""
    if precision == "float64":
        return run
    if precision != "float32":
        raise DataError(f"score precision must be one of {', '.join(SCORE_PRECISIONS)}, not {precision!r}")
    return {qid: dict(zip(docs, np.asarray(list(docs.values()), np.float32).tolist())) for qid, docs in run.items()}


def evaluate_retrieval(
    run: Run,
    qrels: Qrels,
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    *,
    complete: bool = False,
    source: str | None = None,
) -> RetrievalEvaluation:
    """Score a run (query id -> {doc id: score}) against qrels (query id -> {doc id: relevance}).

    `complete=True` averages over every judged query, scoring those missing from the run
    as 0 (trec_eval -c); the default averages over the judged queries present in the run,
    as pytrec_eval and MTEB do. Raises DataError when no query can be scored.
    """
    ks = normalize_k_values(k_values)
    judged = {qid: judgments for qid, judgments in qrels.items() if judgments}
    per_query: dict[str, dict[str, float]] = {}
    for qid, doc_scores in run.items():
        if qid in judged:
            per_query[qid] = query_metrics(trec_ranking(doc_scores), judged[qid], ks)
    missing = [qid for qid in judged if qid not in run]
    if complete:
        for qid in missing:
            per_query[qid] = _zero_scores(ks)
    if not per_query:
        raise DataError("no query of the run is judged in the qrels, so there is nothing to score", source)
    return RetrievalEvaluation(
        k_values=ks,
        averages=_average(per_query, _ordered_keys(ks)),
        per_query=per_query,
        missing_from_run=missing,
        not_in_qrels=[qid for qid in run if qid not in judged],
        without_relevant=[qid for qid in per_query if not _has_relevant(judged[qid])],
    )


def _has_relevant(judgments: Mapping[str, int]) -> bool:
    return any(g >= RELEVANCE_LEVEL for g in judgments.values())


# --- STS: correlations of predicted similarity with gold scores -------------------------


def _as_paired_vectors(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.size != b.size:
        raise DataError(f"cannot correlate {a.size} values with {b.size}")
    if a.size < 2:
        raise DataError("a correlation needs at least 2 pairs")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("cannot correlate NaN or infinite values")
    return a, b


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their positions (scipy's rankdata 'average')."""
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts_group = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group_of = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group_of]
    return ranks


def _pearson_of_checked(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    if denominator == 0.0:
        return math.nan  # a constant input has no defined correlation (scipy also gives NaN)
    return max(-1.0, min(1.0, float(np.dot(da, db)) / denominator))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; NaN when either input is constant."""
    return _pearson_of_checked(*_as_paired_vectors(x, y))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks; NaN when either input is constant."""
    a, b = _as_paired_vectors(x, y)
    return _pearson_of_checked(average_ranks(a), average_ranks(b))
