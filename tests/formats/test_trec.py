"""TREC runs, vecpipe search JSONL runs and qrels: parsing, sniffing, errors with file:line."""
from __future__ import annotations

import io

import numpy as np
import pytest

from vecpipe.core.errors import DataError
from vecpipe.formats.trec import format_run_line, read_qrels, read_run, write_run


def lines(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode("utf-8"))


def test_trec_run_ignores_rank_column_comments_blank_lines_and_extra_columns():
    data = read_run(lines("# a comment\n\nq1 Q0 d1 7 0.5 tag\nq1 Q0 d2 1 0.25 tag extra\nq2 0 d1 1 -1e-3 t\n"), "run")
    assert data.format == "trec"
    assert data.run == {"q1": {"d1": 0.5, "d2": 0.25}, "q2": {"d1": -0.001}}


def test_jsonl_run_from_search_hits_with_integer_ids():
    text = '{"query_id": "q1", "rank": 1, "id": 5, "score": 0.9, "title": "x"}\n{"qid": 2, "doc_id": "d", "score": 1}\n'
    data = read_run(lines(text), "hits.jsonl")
    assert data.format == "jsonl"
    assert data.run == {"q1": {"5": 0.9}, "2": {"d": 1.0}}


def test_empty_run():
    data = read_run(lines("\n# nothing\n"), "run")
    assert (data.run, data.format) == ({}, "empty")


def test_duplicate_documents_keep_the_best_score_and_are_counted():
    data = read_run(lines("q Q0 d 1 0.2 t\nq Q0 d 2 0.9 t\nq Q0 d 3 0.1 t\n"), "run")
    assert data.run == {"q": {"d": 0.9}}
    assert data.duplicates == 2


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("q1 Q0 d1 1 0.5 t\nq1 Q0 d2 1 0.5\n", 2, "expected 6 columns"),
        ("q1 Q0 d1 1 high t\n", 1, "score 'high' is not a number"),
        ("q1 Q0 d1 1 nan t\n", 1, "NaN"),
        ('{"query_id": "q", "id": "d", "score": 1}\n{"query_id": "q", "id": "e"}\n', 2, "score"),
        ('{"query_id": "q", "id": "d", "score": true}\n', 1, "score"),
        ('{"id": "d", "score": 1}\n', 1, "missing query id"),
        ('{"query_id": "q", "score": 1}\n', 1, "missing document id"),
        ('{"query_id": "q", "id": "d", "score": 1}\n{broken\n', 2, "invalid JSON"),
        ('{"query_id": "q", "id": "d", "score": 1}\n[1, 2]\n', 2, "JSON object"),
    ],
)
def test_bad_run_lines_name_file_and_line(text, line, message):
    with pytest.raises(DataError, match=message) as info:
        read_run(lines(text), "run.txt")
    assert (info.value.source, info.value.line) == ("run.txt", line)


def test_byte_order_mark_is_ignored():
    assert read_run(io.BytesIO(b"\xef\xbb\xbfq Q0 d 1 1 t\n"), "run").run == {"q": {"d": 1.0}}
    assert read_qrels(io.BytesIO(b"\xef\xbb\xbfq 0 d 1\n"), "qrels").qrels == {"q": {"d": 1}}


def test_invalid_utf8_names_the_line():
    with pytest.raises(DataError, match="UTF-8") as info:
        read_run(io.BytesIO(b"q Q0 d 1 1 t\nq Q0 \xff 1 1 t\n"), "run")
    assert info.value.line == 2


def test_written_run_reads_back_in_trec_order():
    run = {"q1": {"b": 0.5, "a": 0.5, "c": 0.75}, "q2": {"x": 1 / 3}}
    out = io.StringIO()
    write_run(run, out, tag="exact")
    assert out.getvalue().splitlines()[:3] == ["q1 Q0 c 1 0.75 exact", "q1 Q0 b 2 0.5 exact", "q1 Q0 a 3 0.5 exact"]
    assert read_run(lines(out.getvalue()), "run").run == run


def test_run_line_writes_numpy_scores_as_plain_numbers():
    assert format_run_line("q", "d", 1, np.float32(0.5), "t") == "q Q0 d 1 0.5 t\n"


# --- qrels -----------------------------------------------------------------------------


def test_beir_qrels_with_header():
    data = read_qrels(lines("query-id\tcorpus-id\tscore\n1\t31715818\t1\n1\t9\t2\n3\tdoc with space\t0\n"), "test.tsv")
    assert data.format == "beir"
    assert data.qrels == {"1": {"31715818": 1, "9": 2}, "3": {"doc with space": 0}}


def test_beir_qrels_without_header_and_only_beirs_own_header_is_skipped():
    assert read_qrels(lines("q\td\t1\n"), "x").qrels == {"q": {"d": 1}}
    assert read_qrels(lines("query-id\tcorpus-id\tscore\nq\td\t2\n"), "x").qrels == {"q": {"d": 2}}
    # Any other first row is data: a non-numeric relevance there is an error, not a header dropped silently.
    with pytest.raises(DataError, match=r"^x:1: relevance 'relevance' is not a number"):
        read_qrels(lines("qid\tdocid\trelevance\nq\td\t2\n"), "x")


def test_trec_qrels_with_negative_and_float_written_grades():
    data = read_qrels(lines("q1 0 d1 1\nq1 0 d2 -1\nq2\t0\td1\t2.0\n"), "qrels.txt")
    assert data.format == "trec"
    assert data.qrels == {"q1": {"d1": 1, "d2": -1}, "q2": {"d1": 2}}


def test_duplicate_judgments_keep_the_last_and_are_counted():
    data = read_qrels(lines("q 0 d 1\nq 0 d 0\n"), "qrels")
    assert data.qrels == {"q": {"d": 0}}
    assert data.duplicates == 1


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("q1 d1\n", 1, "expected 3 columns .* or 4"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", 3, "expected 3 columns"),
        ("q1 0 d1 1\nq1 0 d2\n", 2, "expected 4 columns"),
        ("q1 0 d1 1\nq1 0 d2 high\n", 2, "relevance 'high' is not a number"),
        ("q1 0 d1 0.5\n", 1, "not an integer"),
        ("q1\td1\t1\nq2\td2\tyes\n", 2, "not a number"),
    ],
)
def test_bad_qrels_lines_name_file_and_line(text, line, message):
    with pytest.raises(DataError, match=message) as info:
        read_qrels(lines(text), "qrels.tsv")
    assert (info.value.source, info.value.line) == ("qrels.tsv", line)


@pytest.mark.parametrize("qid, doc", [("q 1", "d"), ("q", "doc two"), ("q", ""), ("q", "d\t")])
def test_ids_a_trec_line_cannot_carry_are_refused(qid, doc):
    with pytest.raises(DataError, match="TREC run cannot carry"):
        format_run_line(qid, doc, 1, 0.5, "t")


@pytest.mark.parametrize("space", ["\u00a0", "\u3000", "\u0085", "\u001f", "\u2028"])
def test_non_ascii_whitespace_stays_inside_an_id_as_in_trec_eval(space):
    doc = f"doc{space}1"
    run = read_run(lines(f"q1 Q0 {doc} 1 0.25 tag\n"), "run")
    assert run.run == {"q1": {doc: 0.25}}
    qrels = read_qrels(lines(f"q1 0 {doc} 2\n"), "qrels")
    assert qrels.format == "trec" and qrels.qrels == {"q1": {doc: 2}}
    assert format_run_line("q1", doc, 1, 0.25, "t") == f"q1 Q0 {doc} 1 0.25 t\n"


@pytest.mark.parametrize("separator", ["\t", "\v", "\f", " \r "])
def test_c_whitespace_separates_columns(separator):
    run = read_run(lines(separator.join(["q1", "Q0", "d1", "1", "0.5", "t"]) + "\n"), "run")
    assert run.run == {"q1": {"d1": 0.5}}


@pytest.mark.parametrize("score", ["1e3", "-.5", "+2.", "inf", "-Infinity", "0"])
def test_scores_c_reads_are_read(score):
    assert read_run(lines(f"q Q0 d 1 {score} t\n"), "run").run == {"q": {"d": float(score)}}


@pytest.mark.parametrize("score", ["1_000", "\u0661\u0662", "\uff11\uff12", "3x", "0x10", "1e", ""])
def test_numbers_python_takes_but_c_does_not_are_refused_with_their_line(score):
    text = f"q Q0 a 1 0.5 t\nq Q0 d 1 {score} t\n" if score else "q Q0 a 1 0.5 t\nq Q0 d 1\n"
    with pytest.raises(DataError, match=r"^run:2: "):
        read_run(lines(text), "run")


@pytest.mark.parametrize("relevance", ["1_0", "\u0661", "\uff11", "1x", "1.5"])
def test_relevance_must_be_an_ascii_integer(relevance):
    with pytest.raises(DataError, match=rf"^qrels:1: relevance {relevance!r} is not"):
        read_qrels(lines(f"q\t0\td\t{relevance}\n"), "qrels")
