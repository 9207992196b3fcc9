"""Search modes over an index: dense (the vectors), lexical (BM25), hybrid (both, fused).

Hybrid search takes the top `max(k, FUSION_DEPTH)` of each list, with the same `--where`
filter, fuses them (fusion.py) and keeps the k best; `min_score` then applies to the fused
score. Each hybrid hit carries `ranks`: its 1-based rank in each list it came from. Both lists
are fused as index labels, and only the k records that survive are read from the store.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vecpipe.core.errors import UsageError
from vecpipe.core.index.api import Index, SearchResult
from vecpipe.core.retrieval.fusion import DEFAULT_ALPHA, DEFAULT_RRF_K, alpha_weights, check, fuse

MODES = ("dense", "lexical", "hybrid")
# Candidates taken from each list before fusing: enough that a document ranked low in one list
# but high in the other still meets its partner (RRF's k = 60 flattens ranks beyond ~100).
FUSION_DEPTH = 100


def needs_graph(mode: str | None, exact: bool, one_query: bool = False, ef: int | None = None) -> bool:
    """Whether a search should load an HNSW index's graph (open_index's `load_graph`): not for exact
    or lexical search, nor for a single query without --ef, which one scan answers for less than the
    load costs (and exactly)."""
    return not (exact or mode == "lexical" or (one_query and ef is None))


def default_mode(index: Index) -> str:
    """Hybrid when the index has a lexical part, else dense."""
    return "hybrid" if index.has_lexical else "dense"


@dataclass
class Fusion:
    method: str = "rrf"
    rrf_k: float = DEFAULT_RRF_K
    alpha: float = DEFAULT_ALPHA  # convex: the dense list's weight

    def check(self) -> None:
        check(self.method, self.rrf_k, self.alpha)

    def describe(self) -> dict:
        return {"fusion": self.method, "rrf_k": self.rrf_k} if self.method == "rrf" else {"fusion": self.method, "alpha": self.alpha}


@dataclass
class ModeRequest:
    mode: str
    k: int = 10
    where: Sequence[str] = ()
    min_score: float | None = None
    ef: int | None = None
    exact: bool = False
    rescore: int | None = None
    fusion: Fusion = None

    def check(self, index: Index, has_text: bool) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode != "dense" and not index.has_lexical:
            raise UsageError(f"--mode {self.mode} needs the index's lexical part; build it with --lexical")
        if self.mode != "dense" and not has_text:
            raise UsageError(f"--mode {self.mode} searches text; vector queries have none (use --mode dense)")
        if self.mode == "hybrid":
            (self.fusion or Fusion()).check()


def search(index: Index, request: ModeRequest, texts: list[str] | None, vectors: np.ndarray | None, provenance: dict | None) -> SearchResult:
    """Hits per query in `request.mode`; `texts` for lexical and hybrid, `vectors` for dense and hybrid."""
    request.check(index, texts is not None)
    if request.mode == "lexical":
        return index.lexical_search(texts, request.k, where=request.where, min_score=request.min_score)
    if request.mode == "dense":
        return index.search(vectors, request.k, provenance=provenance, ef=request.ef, where=request.where, exact=request.exact,
                            min_score=request.min_score, rescore=request.rescore)
    # Hybrid: both lists as labels only; the records of the fused top k are read once, at the end.
    depth = max(request.k, FUSION_DEPTH)
    dense_labels, dense_scores, notices = index.search_labels(vectors, depth, provenance=provenance, ef=request.ef, where=request.where,
                                                              exact=request.exact, rescore=request.rescore)
    lexical_labels, lexical_scores = index.lexical_labels(texts, depth, where=request.where)
    fusion = request.fusion or Fusion()
    rows = []
    for d_labels, d_scores, l_labels, l_scores in zip(dense_labels.tolist(), dense_scores.tolist(), lexical_labels, lexical_scores):
        lists = {"dense": [(label, score) for label, score in zip(d_labels, d_scores) if label >= 0],
                 "lexical": list(zip(l_labels.tolist(), l_scores.tolist()))}
        fused = fuse(lists, fusion.method, rrf_k=fusion.rrf_k, weights=alpha_weights(list(lists), fusion.alpha))[: request.k]
        rows.append([(label, score, ranks) for label, score, ranks in fused if request.min_score is None or score >= request.min_score])
    return SearchResult(index.hits_for(rows), notices)
