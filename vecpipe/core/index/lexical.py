"""The lexical part of an index: BM25 over the records' text, with bm25s (and PyStemmer).

It lives in `lexical/` inside an index generation, written in the same atomic generation as
the vectors: bm25s's own files (saved and loaded without pickle) plus `labels.npy`, the index
label of each BM25 document. bm25s cannot add to an index, so every write of an index with a
lexical part re-indexes the text of every record it holds (it is in the metadata store).

A record's text is chosen as `vecpipe embed` chooses it: `field` (default `text`), with a BEIR
`title` joined in front. A document without any matching term scores 0 and is not a hit.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from vecpipe.core.errors import DataError, IndexStoreError, UsageError

LEXICAL_DIR = "lexical"
LABELS_FILE = "labels.npy"
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
# Languages with a bm25s stopword list; every PyStemmer language can stem.
STOPWORD_LANGUAGES = ("english", "german", "dutch", "french", "spanish", "portuguese", "italian", "russian",
                      "swedish", "norwegian", "chinese", "turkish", "korean", "danish")
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's (and scikit-learn's) default


@dataclass(frozen=True)
class LexicalSettings:
    """How text becomes BM25 terms and scores; recorded in the index manifest."""

    language: str = "english"
    stem: bool = True
    stopwords: bool = True
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    field: str = "text"
    join_title: bool = True
    token_pattern: str = TOKEN_PATTERN

    def check(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown BM25 method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (0 <= self.b <= 1 and 0 <= self.k1 <= 100):
            raise UsageError("BM25 wants 0 <= b <= 1 and 0 <= k1 <= 100")
        if self.stem:
            import Stemmer

            if self.language not in Stemmer.algorithms():
                raise UsageError(f"no stemmer for {self.language!r}; choose one of {', '.join(Stemmer.algorithms())}, or --no-stem")

    @classmethod
    def from_manifest(cls, entry: dict, source: str) -> "LexicalSettings":
        """The settings an index manifest recorded, each checked: a wrong type or value is one line
        naming the key (exit 5), not a failure deep inside bm25s or PyStemmer."""
        if not isinstance(entry, dict) or any(key not in entry for key in cls.__dataclass_fields__):
            raise IndexStoreError("the manifest's lexical settings are incomplete", source)
        for key, kind in _SETTING_TYPES.items():
            value = entry[key]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise IndexStoreError(f"the manifest's lexical setting {key!r} has the wrong type ({type(value).__name__})", source)
        settings = cls(**{key: entry[key] for key in cls.__dataclass_fields__})
        try:
            re.compile(settings.token_pattern)
            settings.check()
        except (re.error, UsageError) as exc:
            raise IndexStoreError(f"the manifest's lexical settings are unusable ({exc})", source) from None
        return settings

    def describe(self) -> dict:
        return asdict(self)

    def tokenize(self, texts: list[str], as_ids: bool = False):
        """Terms per text (query side), or bm25s's Tokenized ids and vocabulary, which it indexes fastest."""
        import bm25s

        stopwords = self.language if self.stopwords and self.language in STOPWORD_LANGUAGES else None
        stemmer = _stemmer(self.language) if self.stem else None
        return bm25s.tokenize(texts, lower=True, token_pattern=self.token_pattern, stopwords=stopwords, stemmer=stemmer,
                              return_ids=as_ids, show_progress=False)


_SETTING_TYPES = {"language": str, "stem": bool, "stopwords": bool, "k1": (int, float), "b": (int, float), "method": str,
                  "field": str, "join_title": bool, "token_pattern": str}


def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(language)


def text_of(fields: dict, settings: LexicalSettings) -> str | None:
    """The record's text as `vecpipe embed` reads it, or None when it has none."""
    text = fields.get(settings.field)
    if not isinstance(text, str):
        return None
    title = fields.get("title")
    if settings.join_title and settings.field == "text" and isinstance(title, str) and title:
        text = (title + " " + text).strip()
    return text if text.strip() else None


def check_texts(fields: list[dict], settings: LexicalSettings, source: str, lines: list) -> None:
    """Every record of a batch must carry text for the lexical part (one line naming the record's line)."""
    for position, record in enumerate(fields):
        if text_of(record, settings) is None:
            line = lines[position] if position < len(lines) else None
            raise DataError(f"record has no text in {settings.field!r} for the lexical index (--lexical)", source, line)


def build(generation: Path, rows: Iterable[tuple[int, dict]], settings: LexicalSettings) -> dict:
    """Index the text of (label, fields) rows into `generation/lexical/`; returns the manifest entry."""
    import bm25s

    labels, texts = [], []
    for label, fields in rows:
        labels.append(label)
        texts.append(text_of(fields, settings) or "")
    folder = generation / LEXICAL_DIR
    folder.mkdir()
    retriever = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
    if texts:
        retriever.index(settings.tokenize(texts, as_ids=True), show_progress=False)
        retriever.save(str(folder), show_progress=False)
    np.save(folder / LABELS_FILE, np.asarray(labels, dtype=np.int64), allow_pickle=False)
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {**settings.describe(), "documents": len(labels), "bytes": size,
            "bytes_per_document": round(size / len(labels), 1) if labels else None}


class LexicalIndex:
    """A loaded lexical part: BM25 scores of every document for a query, as index labels."""

    def __init__(self, retriever, labels: np.ndarray, settings: LexicalSettings):
        self.retriever, self.labels, self.settings = retriever, labels, settings

    @classmethod
    def load(cls, generation: Path, entry: dict, count: int) -> "LexicalIndex":
        folder = generation / LEXICAL_DIR
        settings = LexicalSettings.from_manifest(entry, str(folder))
        try:
            labels = np.load(folder / LABELS_FILE, allow_pickle=False)
            retriever = _load_bm25(folder) if len(labels) else None
        except (OSError, ValueError, KeyError) as exc:
            raise IndexStoreError(f"lexical part is unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", str(folder)) from None
        documents = int(retriever.scores["num_docs"]) if retriever is not None else 0
        if labels.ndim != 1 or len(labels) != count or documents != count or entry.get("documents") != count:
            raise IndexStoreError(f"lexical part holds {documents} documents and {len(labels)} labels; the index has {count} records", str(folder))
        return cls(retriever, labels, settings)

    def search(self, texts: list[str], depth: int, allowed: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per query: the labels and BM25 scores of up to `depth` documents that match a term, best first."""
        tokens = self.settings.tokenize(texts)
        mask = None
        if allowed is not None and self.retriever is not None:
            mask = np.isin(self.labels, allowed).astype(np.float32)
        all_labels, all_scores = [], []
        for query in tokens:
            ids = self.retriever.get_tokens_ids(query) if self.retriever is not None and query else []
            if not ids:
                all_labels.append(np.empty(0, np.int64))
                all_scores.append(np.empty(0, np.float32))
                continue
            scores = self.retriever.get_scores_from_ids(ids, weight_mask=mask)
            top = _top(scores, depth)
            all_labels.append(self.labels[top])
            all_scores.append(scores[top])
        return all_labels, all_scores


def _load_bm25(folder: Path):
    import bm25s

    return bm25s.BM25.load(str(folder), mmap=False, allow_pickle=False, show_progress=False, verbosity=0)


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Positions of the best positive scores, best first; ties to the lower position (stable)."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > depth:
        keep = np.argpartition(-scores[positive], depth - 1)[:depth]
        positive = np.sort(positive[keep])
    return positive[np.argsort(-scores[positive], kind="stable")]
