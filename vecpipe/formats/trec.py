"""TREC runs and relevance judgments (qrels).

Runs come in two shapes, sniffed from the first line that is not blank or a `#` comment:
- TREC: `qid Q0 docid rank score tag`, whitespace-separated; extra columns are ignored.
- JSONL hits, as `vecpipe search` writes them: `{"query_id": ..., "id": ..., "score": ..., ...}`.
As in trec_eval, the rank column is ignored: documents are ranked by score.

Qrels come as BEIR TSV (`query-id<TAB>corpus-id<TAB>score`, header optional) or TREC
qrels (`qid 0 docid rel`), told apart by their number of columns.

Columns are split as trec_eval splits them: on C's isspace bytes (space, tab, \v, \f, \r)
only, so an id holding U+00A0, U+3000, U+0085 or U+001F is one column, as it is there.
Numbers are read as C reads them, never more loosely: an ASCII decimal (scores may have a
fraction and an exponent, or be inf), so `1_000` or Arabic-Indic and fullwidth digits, which
Python's float() takes, are refused with the line; what atof/atol would read only in part
(`3x`) is refused too rather than silently truncated.

A document listed twice for one query keeps its best score (so it can only count once);
a judgment listed twice keeps the last value, as MTEB's BEIR loader does. Both are
counted so the caller can warn.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator, Mapping

from vecpipe.core.errors import DataError
from vecpipe.formats.text import BOM, parse_record

RUN_COLUMNS = "qid Q0 docid rank score tag"
QUERY_ID_KEYS = ("query_id", "qid")
DOC_ID_KEYS = ("id", "doc_id", "docid", "corpus_id")
BEIR_HEADER = ("query-id", "corpus-id", "score")
# C's isspace() in the "C" locale: the only bytes trec_eval splits columns on.
C_SPACE = " \t\n\v\f\r"
_C_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity)", re.IGNORECASE)
_C_INTEGER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")


def c_columns(text: str) -> list[str]:
    """Whitespace-separated columns as trec_eval sees them: split on C's isspace only."""
    return [c for c in re.split(f"[{re.escape(C_SPACE)}]+", text) if c]


def trec_ranking(doc_scores: Mapping[str, float]) -> list[str]:
    """Document ids in trec_eval's order: score descending, then id descending."""
    # Reversing the (score, id) tuple order gives both descending sorts at once;
    # Python's code-point order on str equals strcmp on UTF-8 bytes.
    return [doc for doc, _ in sorted(doc_scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


@dataclass
class RunData:
    run: dict[str, dict[str, float]] = field(default_factory=dict)
    format: str = "empty"  # "trec", "jsonl" or "empty"
    duplicates: int = 0  # (query, document) pairs listed more than once


@dataclass
class QrelsData:
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    format: str = "empty"  # "beir", "trec" or "empty"
    duplicates: int = 0  # (query, document) judgments listed more than once


def numbered_lines(stream: Iterable[bytes], source: str) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line) for each line that is not blank or a `#` comment."""
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]  # editors on Windows save files with one
        stripped = raw.strip()
        if stripped and not stripped.startswith(b"#"):
            yield number, raw


def decode_line(raw: bytes, source: str, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"invalid UTF-8 at byte {exc.start}", source, line) from None


# --- runs ------------------------------------------------------------------------------


def _parse_score(text: str, source: str, line: int) -> float:
    if text.lower() == "nan":
        raise DataError("score is NaN", source, line)
    if not _C_FLOAT.fullmatch(text):
        raise DataError(f"score {text!r} is not a number (an ASCII decimal, as C's atof reads it)", source, line)
    return float(text)


def _trec_run_row(raw: bytes, source: str, line: int) -> tuple[str, str, float]:
    columns = c_columns(decode_line(raw, source, line))
    if len(columns) < 6:
        raise DataError(f"expected 6 columns ({RUN_COLUMNS}), found {len(columns)}", source, line)
    return columns[0], columns[2], _parse_score(columns[4], source, line)


def _first_present(record: Mapping, keys: tuple[str, ...], what: str, source: str, line: int) -> str:
    for key in keys:
        value = record.get(key)
        if value is not None and not isinstance(value, (dict, list, bool)):
            return str(value)
    raise DataError(f"missing {what} (one of {', '.join(keys)})", source, line)


def _jsonl_run_row(raw: bytes, source: str, line: int) -> tuple[str, str, float]:
    record = parse_record(raw, source, line)
    qid = _first_present(record, QUERY_ID_KEYS, "query id", source, line)
    doc = _first_present(record, DOC_ID_KEYS, "document id", source, line)
    score = record.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise DataError("missing numeric 'score'", source, line)
    return qid, doc, float(score)  # JSON has no NaN, so any number is a valid score


def read_run(stream: Iterable[bytes], source: str) -> RunData:
    """Read a TREC run or vecpipe search JSONL into query id -> {doc id: score}."""
    data = RunData()
    parse_row = None
    for line, raw in numbered_lines(stream, source):
        if parse_row is None:
            data.format = "jsonl" if raw.lstrip().startswith(b"{") else "trec"
            parse_row = _jsonl_run_row if data.format == "jsonl" else _trec_run_row
        qid, doc, score = parse_row(raw, source, line)
        doc_scores = data.run.setdefault(qid, {})
        if doc in doc_scores:
            data.duplicates += 1
            score = max(score, doc_scores[doc])
        doc_scores[doc] = score
    return data


def _check_column(value: str, what: str) -> None:
    # A TREC line is split on C's whitespace, so an id holding any would shift every column after it.
    if c_columns(value) != [value]:
        raise DataError(f"{what} {value!r} is empty or holds whitespace, which a TREC run cannot carry; use JSONL")


def format_run_line(qid: str, doc: str, rank: int, score: float, tag: str) -> str:
    _check_column(qid, "query id")
    _check_column(doc, "document id")
    return f"{qid} Q0 {doc} {rank} {float(score)!r} {tag}\n"  # repr round-trips the exact double


def write_run(run: Mapping[str, Mapping[str, float]], out: IO[str], tag: str = "vecpipe") -> None:
    """Write a run as TREC lines, ranked the way trec_eval will rank them."""
    for qid, doc_scores in run.items():
        for rank, doc in enumerate(trec_ranking(doc_scores), start=1):
            out.write(format_run_line(qid, doc, rank, doc_scores[doc], tag))


# --- qrels -----------------------------------------------------------------------------


def _parse_relevance(text: str, source: str, line: int) -> int:
    if not _C_INTEGER.fullmatch(text):
        problem = "is not an integer" if _C_FLOAT.fullmatch(text) else "is not a number (an ASCII integer, as C's atol reads it)"
        raise DataError(f"relevance {text!r} {problem}", source, line)
    return int(float(text)) if "." in text else int(text)


def _is_beir_header(columns: list[str]) -> bool:
    """Only BEIR's own header, `query-id corpus-id score`: any other first row is data (and checked as data)."""
    return tuple(columns) == BEIR_HEADER


def _qrels_columns(text: str) -> list[str]:
    # BEIR is tab-separated; TREC qrels are separated by C's whitespace, as trec_eval splits them.
    columns = text.split("\t")
    return [c.strip(C_SPACE) for c in columns] if len(columns) == 3 else c_columns(text)


def _qrels_row(text: str, fmt: str, source: str, line: int) -> tuple[str, str, int]:
    columns = _qrels_columns(text)
    expected = 3 if fmt == "beir" else 4
    if len(columns) != expected:
        shape = "query-id corpus-id score" if fmt == "beir" else "qid 0 docid rel"
        raise DataError(f"expected {expected} columns ({shape}), found {len(columns)}", source, line)
    qid, doc, rel = (columns[0], columns[1], columns[2]) if fmt == "beir" else (columns[0], columns[2], columns[3])
    return qid, doc, _parse_relevance(rel, source, line)


def _sniff_qrels(text: str, source: str, line: int) -> str:
    count = len(_qrels_columns(text))
    if count in (3, 4):
        return "beir" if count == 3 else "trec"
    raise DataError(
        f"expected 3 columns (query-id corpus-id score) or 4 (qid 0 docid rel), found {count}", source, line
    )


def read_qrels(stream: Iterable[bytes], source: str) -> QrelsData:
    """Read BEIR TSV or TREC qrels into query id -> {doc id: relevance}."""
    data = QrelsData()
    for line, raw in numbered_lines(stream, source):
        text = decode_line(raw, source, line).rstrip("\r\n")
        if data.format == "empty":
            data.format = _sniff_qrels(text, source, line)
            if data.format == "beir" and _is_beir_header(_qrels_columns(text)):
                continue
        qid, doc, rel = _qrels_row(text, data.format, source, line)
        judgments = data.qrels.setdefault(qid, {})
        if doc in judgments:
            data.duplicates += 1
        judgments[doc] = rel
    return data
