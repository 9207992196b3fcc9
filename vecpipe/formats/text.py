"""Text input: plain lines or JSONL records, sniffed from the first non-blank line.

A stream whose first non-blank line starts with `{` is JSONL, and then every line must
be a JSON object with a string text field; otherwise every line is a text. Deciding per
stream rather than per line keeps a typo in a JSONL file from silently turning a broken
record into a text to embed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Iterator

import orjson

from vecpipe.core.errors import DataError

BOM = b"\xef\xbb\xbf"
ID_KEYS = ("id", "_id")
# orjson reads JSON nested up to 1024 levels deep but writes only 254, so a record nested
# deeper would be read and then fail to be written: refuse it when read, naming its line.
MAX_NESTING = 254


@dataclass
class TextRecord:
    id: object
    text: str
    fields: dict  # the input fields other than the id, in input order
    line: int


@dataclass
class ReadStats:
    skipped: int = 0  # bad lines passed over with --skip-bad
    blank: int = 0  # blank lines in plain-text input
    records: int = 0  # records read, over every input: the next record without an id gets this position


def _decode(raw: bytes, source: str, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"invalid UTF-8 at byte {exc.start}", source, line) from None


def record_text(record: dict, field: str, join_title: bool, source: str, line: int) -> str:
    """The text to embed: `field`, with a BEIR `title` joined in front as MTEB does."""
    if field not in record:
        raise DataError(f"missing text field {field!r}", source, line)
    text = record[field]
    if not isinstance(text, str):
        raise DataError(f"text field {field!r} is {type(text).__name__}, not a string", source, line)
    title = record.get("title")
    if join_title and field == "text" and isinstance(title, str) and title:
        text = (title + " " + text).strip()
    if not text.strip():
        raise DataError(f"text field {field!r} is empty", source, line)
    return text


# orjson reads integers beyond 64 bits as floats (those in [-2**63, 2**64) stay ints). So only a
# parsed float of at least 2**63 in size can be one; a record holding such a value is read again by
# the standard library, whose integers are exact, and they travel as orjson.Fragment (their own
# digits), which orjson writes back unchanged. The walk skips a record's `embedding`, the bulk of a
# vector line, where an integer that size would be refused anyway (it overflows float32); a regex
# over the raw line cost 7x orjson's own parse there.
_BIG = float(2**63)
_SKIPPED_KEYS = ("embedding",)


def _exact_int(text: str):
    value = int(text)
    return value if -(2**63) <= value < 2**64 else orjson.Fragment(text.encode("ascii"))


def _may_hold_big_int(value) -> bool:
    """Whether a parsed value holds a float of at least 2**63 in size, outside a top-level embedding."""
    stack = [v for k, v in value.items() if k not in _SKIPPED_KEYS] if isinstance(value, dict) else [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            if abs(node) >= _BIG:
                return True
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def loads_exact(raw: bytes | str):
    """orjson.loads, but integers beyond 64 bits keep every digit (as orjson.Fragment)."""
    value = orjson.loads(raw)
    return json.loads(raw, parse_int=_exact_int) if _may_hold_big_int(value) else value


def is_exact_int(value) -> bool:
    """An integer id or field: a Python int or one beyond 64 bits read by loads_exact."""
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, orjson.Fragment)


def parse_record(raw: bytes, source: str, line: int) -> dict:
    try:
        value = loads_exact(raw)
    except orjson.JSONDecodeError as exc:
        _decode(raw, source, line)  # report bad UTF-8 as such rather than as bad JSON
        raise DataError(f"invalid JSON ({str(exc).split(':')[0]})", source, line) from None
    if not isinstance(value, dict):
        raise DataError(f"expected a JSON object, got {type(value).__name__}", source, line)
    # A line cannot nest deeper than it has brackets, so the walk runs only on odd lines.
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING and _nesting(value) > MAX_NESTING:
        raise DataError(f"JSON nested more than {MAX_NESTING} levels deep", source, line)
    return value


def _nesting(value) -> int:
    """How many objects and arrays deep `value` goes (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def split_id(record: dict, position: int) -> tuple[object, dict]:
    for key in ID_KEYS:
        if key in record:
            rest = {k: v for k, v in record.items() if k != key}
            return record[key], rest
    return position, record


@dataclass
class ReadOptions:
    """How text records are read: read_texts' keyword arguments, as one object a command can pass along."""

    field: str = "text"
    join_title: bool = True
    input_format: str = "auto"
    skip_bad: bool = False


def read_texts(
    stream: IO[bytes],
    source: str,
    field: str = "text",
    join_title: bool = True,
    input_format: str = "auto",
    skip_bad: bool = False,
    stats: ReadStats | None = None,
) -> Iterator[TextRecord]:
    """Yield one TextRecord per input record; raise DataError (or count it, with skip_bad).

    A record without an id gets its 0-based position as one, counted on from the records `stats`
    has already seen, so `vecpipe embed a.txt b.txt` gives each record of b.txt an id after a.txt's."""
    stats = stats if stats is not None else ReadStats()
    jsonl: bool | None = {"auto": None, "text": False, "jsonl": True}[input_format]
    first = position = stats.records
    for line_no, raw in enumerate(stream, start=1):
        if line_no == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            stats.blank += 1
            continue
        if jsonl is None:
            jsonl = raw.lstrip().startswith(b"{")
        try:
            record = _one_record(raw, source, line_no, jsonl, field, join_title, position)
        except DataError:
            if not skip_bad:
                raise
            stats.skipped += 1
            continue
        position += 1
        stats.records = position
        yield record
    if position == first and stats.skipped == 0:
        raise DataError("no input records (empty input)", source)


def _one_record(raw: bytes, source: str, line: int, jsonl: bool, field: str, join_title: bool, position: int) -> TextRecord:
    if not jsonl:
        text = _decode(raw, source, line)
        return TextRecord(position, text, {"text": text}, line)
    record = parse_record(raw, source, line)
    text = record_text(record, field, join_title, source, line)
    rec_id, fields = split_id(record, position)
    return TextRecord(rec_id, text, fields, line)
