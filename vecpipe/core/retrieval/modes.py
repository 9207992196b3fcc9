"""Search modes over an index: dense (the vectors), lexical (BM25), hybrid (both, fused).

Hybrid search takes the top `max(k, FUSION_DEPTH)` of each list, with the same `--where`
filter, fuses them (fusion.py) and keeps the k best; `min_score` then applies to the fused
score. Each hybrid hit carries `ranks`: its 1-based rank in each list it came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vecpipe.core.errors import UsageError
from vecpipe.core.index.meta import id_key
from vecpipe.core.index.vector_index import Hit, SearchResult, VectorIndex
from vecpipe.core.retrieval.fusion import DEFAULT_ALPHA, DEFAULT_RRF_K, alpha_weights, check, fuse

MODES = ("dense", "lexical", "hybrid")
# Candidates taken from each list before fusing: enough that a document ranked low in one list
# but high in the other still meets its partner (RRF's k = 60 flattens ranks beyond ~100).
FUSION_DEPTH = 100


def default_mode(index: VectorIndex) -> str:
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

    def check(self, index: VectorIndex, has_text: bool) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode != "dense" and not index.has_lexical:
            raise UsageError(f"--mode {self.mode} needs the index's lexical part; build it with --lexical")
        if self.mode != "dense" and not has_text:
            raise UsageError(f"--mode {self.mode} searches text; vector queries have none (use --mode dense)")
        if self.mode == "hybrid":
            (self.fusion or Fusion()).check()


def search(index: VectorIndex, request: ModeRequest, texts: list[str] | None, vectors: np.ndarray | None, provenance: dict | None) -> SearchResult:
    """Hits per query in `request.mode`; `texts` for lexical and hybrid, `vectors` for dense and hybrid."""
    request.check(index, texts is not None)
    if request.mode == "lexical":
        return index.lexical_search(texts, request.k, where=request.where, min_score=request.min_score)
    dense_k = request.k if request.mode == "dense" else max(request.k, FUSION_DEPTH)
    dense = index.search(vectors, dense_k, provenance=provenance, ef=request.ef, where=request.where, exact=request.exact,
                         min_score=request.min_score if request.mode == "dense" else None, rescore=request.rescore)
    if request.mode == "dense":
        return dense
    lexical = index.lexical_search(texts, max(request.k, FUSION_DEPTH), where=request.where)
    fusion = request.fusion or Fusion()
    hits = [_fused(dense_row, lexical_row, fusion, request.k, request.min_score) for dense_row, lexical_row in zip(dense.hits, lexical.hits)]
    return SearchResult(hits, dense.notices)


def _fused(dense: list[Hit], lexical: list[Hit], fusion: Fusion, k: int, min_score: float | None) -> list[Hit]:
    # Keyed by the id's JSON, as the metadata store keys records: 1 and "1" are different records.
    by_key = {id_key(hit.id): hit for hit in lexical}
    by_key.update({id_key(hit.id): hit for hit in dense})
    lists = {name: [(id_key(hit.id), hit.score) for hit in hits] for name, hits in (("dense", dense), ("lexical", lexical))}
    fused = fuse(lists, fusion.method, rrf_k=fusion.rrf_k, weights=alpha_weights(list(lists), fusion.alpha))
    kept = [(key, score, ranks) for key, score, ranks in fused[:k] if min_score is None or score >= min_score]
    return [Hit(rank, score, by_key[key].id, by_key[key].fields_json, ranks) for rank, (key, score, ranks) in enumerate(kept, start=1)]
