"""BEIR data sets: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv` in one folder.

Corpus and query lines are JSON objects with `_id` and `text` (corpus lines may add
`title`). Documents are embedded as MTEB embeds them: `(title + " " + text).strip()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, Iterator, Mapping

from vecpipe.core.errors import DataError
from vecpipe.formats.text import parse_record
from vecpipe.formats.trec import QrelsData, numbered_lines, read_qrels

__all__ = ["BeirPaths", "beir_paths", "document_text", "iter_corpus", "read_queries", "read_qrels", "QrelsData"]


@dataclass(frozen=True)
class BeirPaths:
    corpus: Path
    queries: Path
    qrels: Path


def beir_paths(folder: Path | str, split: str = "test") -> BeirPaths:
    """The three files of a BEIR folder; DataError naming the first one that is missing."""
    root = Path(folder)
    paths = BeirPaths(root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv")
    for path in (paths.corpus, paths.queries, paths.qrels):
        if not path.is_file():
            raise DataError("not found (expected a BEIR folder: corpus.jsonl, queries.jsonl, qrels/)", str(path))
    return paths


def document_text(record: Mapping) -> str:
    """MTEB's text for a BEIR document: title and text joined by a space, stripped."""
    title = record.get("title") or ""
    text = record.get("text") or ""
    if not isinstance(title, str) or not isinstance(text, str):
        raise DataError("'title' and 'text' must be strings")
    return (title + " " + text).strip()


def _records(stream: Iterable[bytes], source: str) -> Iterator[tuple[int, dict]]:
    for line, raw in numbered_lines(stream, source):
        record = parse_record(raw, source, line)
        if record.get("_id") is None:
            raise DataError("missing '_id'", source, line)
        yield line, record


def _text_of(record: dict, source: str, line: int) -> str:
    try:
        return document_text(record)
    except DataError as exc:
        raise DataError(exc.message, source, line) from None


def iter_corpus(stream: Iterable[bytes], source: str) -> Iterator[tuple[str, str]]:
    """(document id, MTEB text) for each corpus line."""
    for line, record in _records(stream, source):
        yield str(record["_id"]), _text_of(record, source, line)


def read_queries(stream: Iterable[bytes], source: str, only: Collection[str] | None = None) -> dict[str, str]:
    """Query id -> text, keeping only the ids in `only` when given (e.g. those judged in a split)."""
    queries: dict[str, str] = {}
    for line, record in _records(stream, source):
        qid = str(record["_id"])
        if only is not None and qid not in only:
            continue
        if qid in queries:
            raise DataError(f"query id {qid!r} appears twice", source, line)
        queries[qid] = _text_of(record, source, line)
    return queries
