"""The values that go in and out of an index: build and write options, write reports, and hits."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vecpipe.core.index.lexical import LexicalSettings
from vecpipe.formats.text import loads_exact

DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200


@dataclass
class BuildOptions:
    metric: str = "cosine"
    M: int = DEFAULT_M
    ef_construction: int = DEFAULT_EF_CONSTRUCTION
    quantize: str | None = None  # "int8" or "binary": a flat index from float records
    keep_float: bool = False
    calibration: Path | None = None  # int8 ranges for --quantize int8 or for float queries
    overwrite: bool = False
    lexical: LexicalSettings | None = None  # a BM25 part beside the vectors (lexical.py)


@dataclass
class WriteOptions:
    threads: int = 0  # 0: every core
    order: str = "input"  # "random" shuffles insertion (seeded), which moves HNSW recall
    seed: int = 0
    text_hashes: dict | None = None  # id key -> sha256 of the text, model and prompt embedded (index sync)


@dataclass
class WriteReport:
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    missing: list = field(default_factory=list)  # ids asked to be deleted that were not there
    count: int = 0
    generation: str = ""


class Hit:
    """One search result. The stored fields are parsed from their JSON only when read, so a
    caller that passes them on as JSON (`vecpipe search` does) never pays for parsing."""

    __slots__ = ("rank", "score", "id", "fields_json", "_fields", "ranks")

    def __init__(self, rank: int, score: float, record_id, fields_json: bytes, ranks: dict | None = None):
        self.rank, self.score, self.id, self.fields_json = rank, score, record_id, fields_json
        self._fields = None
        self.ranks = ranks  # hybrid search: the hit's rank in each list it came from

    @property
    def fields(self) -> dict:
        if self._fields is None:
            self._fields = loads_exact(self.fields_json)
        return self._fields

    def __repr__(self) -> str:
        return f"Hit(rank={self.rank}, score={self.score:.4f}, id={self.id!r}, fields={self.fields!r})"


@dataclass
class SearchResult:
    hits: list[list[Hit]]
    notices: list[str] = field(default_factory=list)


@dataclass
class SearchRequest:
    k: int
    ef: int
    allowed: np.ndarray | None  # labels passing --where, sorted; None: every label
    exact: bool
    rescore: int | None


def ranked_rows(labels, scores, min_score: float | None = None) -> list[list[tuple[int, float, None]]]:
    """Per query, (label, score, None) rows for `hits_for` from its ranked labels and scores: the
    padding (-1) dropped, and scores under `min_score`."""
    return [[(label, score, None) for label, score in zip(row_labels.tolist(), row_scores.tolist()) if label >= 0 and (min_score is None or score >= min_score)]
            for row_labels, row_scores in zip(labels, scores)]
