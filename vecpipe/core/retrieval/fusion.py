"""Fusing ranked lists: reciprocal-rank fusion and a convex mix of min-max normalized scores.

A ranked list is a sequence of (doc, score) pairs, best first. Fusion returns (doc, fused score,
{list name: 1-based rank}) best first, so every fused hit can say which lists it came from.
Ties in the fused score go to the document that came first in the earlier-named list, then in
the later ones: the order is deterministic and does not depend on hashing.
"""
from __future__ import annotations

from typing import Hashable, Mapping, Sequence

FUSIONS = ("rrf", "convex")
DEFAULT_RRF_K = 60
DEFAULT_ALPHA = 0.5

Ranked = Sequence[tuple[Hashable, float]]
Fused = list[tuple[Hashable, float, dict[str, int]]]


def check(fusion: str, rrf_k: float, alpha: float) -> None:
    from vecpipe.core.errors import UsageError

    if fusion not in FUSIONS:
        raise UsageError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if not rrf_k > 0:
        raise UsageError(f"--rrf-k must be positive, not {rrf_k}")
    if not 0 <= alpha <= 1:
        raise UsageError(f"--alpha must be between 0 and 1, not {alpha}")


def alpha_weights(names: Sequence[str], alpha: float) -> dict[str, float]:
    """alpha for the first list, 1 - alpha for the second (dense and lexical, in that order)."""
    return dict(zip(names, (alpha, 1.0 - alpha)))


def fuse(lists: Mapping[str, Ranked], fusion: str = "rrf", *, rrf_k: float = DEFAULT_RRF_K, weights: Mapping[str, float] | None = None) -> Fused:
    """Fuse named ranked lists: `rrf` sums 1 / (rrf_k + rank); `convex` sums each list's weight (default
    equal) x its min-max normalized score, a document missing from a list counting 0 there."""
    ranks: dict[Hashable, dict[str, int]] = {}
    for name, ranked in lists.items():
        for rank, (doc, _) in enumerate(ranked, start=1):
            ranks.setdefault(doc, {}).setdefault(name, rank)
    if fusion == "rrf":
        scores = {doc: sum(1.0 / (rrf_k + rank) for rank in found.values()) for doc, found in ranks.items()}
    else:
        weights = weights or {name: 1.0 / len(lists) for name in lists}
        scores = dict.fromkeys(ranks, 0.0)
        for name, ranked in lists.items():
            for doc, value in _min_max(ranked).items():
                scores[doc] += weights[name] * value
    first_seen = {doc: n for n, doc in enumerate(ranks)}
    order = sorted(ranks, key=lambda doc: (-scores[doc], first_seen[doc]))
    return [(doc, scores[doc], ranks[doc]) for doc in order]


def _min_max(ranked: Ranked) -> dict[Hashable, float]:
    """Scores scaled to [0, 1] over the list; a list whose scores are all equal scales to 1."""
    best: dict[Hashable, float] = {}
    for doc, score in ranked:
        best.setdefault(doc, score)
    if not best:
        return {}
    low, high = min(best.values()), max(best.values())
    span = high - low
    return {doc: (score - low) / span if span > 0 else 1.0 for doc, score in best.items()}


def fuse_runs(runs: Mapping[str, Mapping[str, Mapping[str, float]]], fusion: str = "rrf", *, rrf_k: float = DEFAULT_RRF_K,
              weights: Mapping[str, float] | None = None, depth: int | None = None) -> dict[str, dict[str, float]]:
    """Fuse whole runs (query id -> {doc id: score}) query by query; each run's documents are ranked by
    score as trec_eval ranks them, and the fused run keeps its best `depth` documents per query."""
    from vecpipe.formats.trec import trec_ranking

    fused_run = {}
    for qid in dict.fromkeys(q for run in runs.values() for q in run):
        lists = {name: [(doc, run[qid][doc]) for doc in trec_ranking(run[qid])] for name, run in runs.items() if qid in run}
        fused = fuse(lists, fusion, rrf_k=rrf_k, weights={n: w for n, w in (weights or {}).items() if n in lists} or None)
        fused_run[qid] = {doc: score for doc, score, _ in fused[:depth]}
    return fused_run
