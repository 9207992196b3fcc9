"""BEIR folders: MTEB's document text, queries restricted to a split, clear errors."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from vecpipe.core.errors import DataError
from vecpipe.formats.beir import beir_paths, document_text, iter_corpus, read_queries

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact"


def lines(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode("utf-8"))


@pytest.mark.parametrize(
    "record, text",
    [
        ({"title": "T", "text": "body"}, "T body"),
        ({"title": "", "text": " body "}, "body"),
        ({"text": "body"}, "body"),
        ({"title": "T", "text": ""}, "T"),
        ({"title": None, "text": "body"}, "body"),
    ],
)
def test_document_text_joins_title_and_text_as_mteb_does(record, text):
    assert document_text(record) == text


def test_corpus_ids_become_strings():
    corpus = list(iter_corpus(lines('{"_id": 7, "title": "A", "text": "b"}\n{"_id": "x", "text": "c"}\n'), "corpus.jsonl"))
    assert corpus == [("7", "A b"), ("x", "c")]


def test_queries_can_be_restricted_to_judged_ids():
    text = '{"_id": "1", "text": "one"}\n{"_id": "2", "text": "two"}\n'
    assert read_queries(lines(text), "q.jsonl") == {"1": "one", "2": "two"}
    assert read_queries(lines(text), "q.jsonl", only={"2"}) == {"2": "two"}


@pytest.mark.parametrize(
    "text, line, message",
    [
        ('{"_id": "1", "text": "a"}\n{"text": "b"}\n', 2, "missing '_id'"),
        ('{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', 2, "appears twice"),
        ('{"_id": "1", "text": 5}\n', 1, "must be strings"),
        ('not json\n', 1, "invalid JSON"),
    ],
)
def test_bad_query_lines_name_file_and_line(text, line, message):
    with pytest.raises(DataError, match=message) as info:
        read_queries(lines(text), "queries.jsonl")
    assert (info.value.source, info.value.line) == ("queries.jsonl", line)


def test_beir_paths_of_the_shared_scifact_folder():
    paths = beir_paths(SCIFACT)
    assert paths.qrels == SCIFACT / "qrels" / "test.tsv"


def test_beir_paths_name_the_missing_file(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("")
    with pytest.raises(DataError, match="BEIR folder") as info:
        beir_paths(tmp_path)
    assert info.value.source == str(tmp_path / "queries.jsonl")
