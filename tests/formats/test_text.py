"""Text input: sniffing, fields, ids, BEIR titles and every bad-input error."""
from __future__ import annotations

import io

import pytest

from vecpipe.core.errors import DataError
from vecpipe.formats.text import ReadStats, read_texts


def texts(data: bytes, **kw):
    return list(read_texts(io.BytesIO(data), "in.jsonl", **kw))


def test_plain_lines_get_positions_as_ids_and_skip_blank_lines():
    recs = texts(b"first\n\nsecond\r\nthird")
    assert [(r.id, r.text, r.line) for r in recs] == [(0, "first", 1), (1, "second", 3), (2, "third", 4)]


def test_jsonl_keeps_fields_in_order_and_takes_id():
    (rec,) = texts(b'{"z": 1, "id": "doc-7", "text": "hi", "a": [1]}\n')
    assert rec.id == "doc-7" and rec.text == "hi"
    assert list(rec.fields) == ["z", "text", "a"]


def test_beir_id_and_title_are_joined_as_mteb_does():
    (rec,) = texts(b'{"_id": "4983", "title": "Title.", "text": "Body text."}\n')
    assert rec.id == "4983" and rec.text == "Title. Body text."
    (rec,) = texts(b'{"_id": "1", "title": "T", "text": "x"}\n', join_title=False)
    assert rec.text == "x"


def test_field_selects_another_text():
    (rec,) = texts(b'{"sentence1": "a b", "text": "no"}\n', field="sentence1")
    assert rec.text == "a b"


def test_bom_is_ignored():
    (rec,) = texts(b"\xef\xbb\xbf" + b'{"text": "x"}\n')
    assert rec.text == "x"


def test_forced_text_format_embeds_json_looking_lines_verbatim():
    (rec,) = texts(b'{"text": "x"}\n', input_format="text")
    assert rec.text == '{"text": "x"}'


@pytest.mark.parametrize(
    "data, line, message",
    [
        (b'{"text": "a"}\n{"text": \n', 2, "invalid JSON"),
        (b'{"text": "a"}\n[1, 2]\n', 2, "expected a JSON object, got list"),
        (b'{"text": "a"}\n{"title": "b"}\n', 2, "missing text field 'text'"),
        (b'{"text": "a"}\n{"text": 5}\n', 2, "text field 'text' is int, not a string"),
        (b'{"text": "a"}\n{"text": "   "}\n', 2, "text field 'text' is empty"),
        (b'{"text": "a"}\n{"text": "\xff\xfe"}\n', 2, "invalid UTF-8"),
        (b"ok\nbad \xc3\x28 byte\n", 2, "invalid UTF-8"),
    ],
)
def test_bad_lines_name_file_and_line(data, line, message):
    with pytest.raises(DataError) as err:
        texts(data)
    assert str(err.value).startswith(f"in.jsonl:{line}: {message}")


def test_empty_input_is_an_error():
    with pytest.raises(DataError, match="in.jsonl: no input records"):
        texts(b"\n  \n")


def test_skip_bad_counts_skipped_lines():
    stats = ReadStats()
    recs = texts(b'{"text": "a"}\n{oops\n{"text": 3}\n{"text": "b"}\n', skip_bad=True, stats=stats)
    assert [r.text for r in recs] == ["a", "b"] and stats.skipped == 2
