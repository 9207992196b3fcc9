"""The id and metadata store of an index: SQLite mapping integer labels to record ids and fields.

One table, `items(label, id, fields)`: `id` is the record id as JSON text (so 7 and "7" stay
distinct) and `fields` every other input field as a JSON object. Search reads only the rows it
returns; `--where` filters run as SQL over the JSON fields.
"""
from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import orjson

from vecpipe.core.errors import IndexStoreError, UsageError
from vecpipe.formats.text import loads_exact

META_FILE = "meta.sqlite"
_SCHEMA = "CREATE TABLE items (label INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, fields BLOB NOT NULL)"
_SQL_VARS = 900  # stay under SQLite's limit on bound parameters per statement
_MMAP_BYTES = 1 << 40  # the whole store (address space, not memory); SQLite caps it at its build maximum


def id_key(record_id) -> str:
    """The id as JSON text; an integer beyond 64 bits (a Python int from the command line, or an
    orjson.Fragment from a record) is its digits either way."""
    if isinstance(record_id, int) and not -(2**63) <= record_id < 2**64:
        return str(record_id)
    return orjson.dumps(record_id).decode()


def _chunks(values: Sequence, size: int = _SQL_VARS) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _stored_json(value, label: int, path: Path):
    """A stored id or fields value, parsed; anything else is a corrupt store, not a traceback."""
    try:
        return loads_exact(value)
    except (orjson.JSONDecodeError, TypeError):
        raise IndexStoreError(f"the row of label {label} is not valid JSON: the index is corrupt", str(path)) from None


def _is_json_object(raw) -> bool:
    """Whether stored fields parse as a JSON object. A plain parse: search passes the bytes on as
    they are, so the exact-integer walk of loads_exact (most of the cost) is not needed here."""
    try:
        return isinstance(orjson.loads(raw), dict)
    except (orjson.JSONDecodeError, TypeError):
        return False


class MetaStore:
    """Labels -> (id, fields). Writable only while staged in a new generation."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self.path = path

    @classmethod
    def create(cls, path: Path) -> "MetaStore":
        store = cls._open_writable(path)
        store._conn.execute(_SCHEMA)
        return store

    @classmethod
    def copy(cls, source: Path, target: Path) -> "MetaStore":
        shutil.copyfile(source, target)
        return cls._open_writable(target)

    @classmethod
    def _open_writable(cls, path: Path) -> "MetaStore":
        conn = sqlite3.connect(path, isolation_level=None)
        # The file is private to a staged generation and fsynced when published, so a journal
        # would only cost time: a crash discards the whole staged directory anyway.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        return cls(conn, path)

    @classmethod
    def open_readonly(cls, path: Path) -> "MetaStore":
        if not path.is_file():
            raise FileNotFoundError(path)
        # Published generations never change, so `immutable` skips SQLite's locking entirely.
        uri = f"file:{path.as_posix()}?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            # Pages read through a memory map instead of a read() call each: a search's hits
            # come ~25% faster (bench/RESULTS.md). Safe because a published file never changes.
            conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            conn.execute("SELECT 1 FROM items LIMIT 1")
        except sqlite3.DatabaseError as exc:
            raise IndexStoreError(f"metadata store is unreadable ({exc})", str(path)) from None
        return cls(conn, path)

    def commit_and_close(self) -> None:
        self._conn.execute("COMMIT")
        self._conn.close()

    def close(self) -> None:
        self._conn.close()

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def labels_for(self, keys: Sequence[str]) -> dict[str, int]:
        found = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            found.update(self._conn.execute(f"SELECT id, label FROM items WHERE id IN ({marks})", chunk))
        return found

    def insert(self, labels: Sequence[int], keys: Sequence[str], fields: Sequence[dict]) -> None:
        rows = ((int(label), key, orjson.dumps(f)) for label, key, f in zip(labels, keys, fields))
        self._conn.executemany("INSERT INTO items (label, id, fields) VALUES (?, ?, ?)", rows)

    def delete(self, labels: Sequence[int]) -> None:
        if self._has_text_hashes():  # a replaced or deleted record's text is no longer what was embedded
            self._conn.executemany("DELETE FROM text_hashes WHERE id = (SELECT id FROM items WHERE label = ?)", ((int(label),) for label in labels))
        self._conn.executemany("DELETE FROM items WHERE label = ?", ((int(label),) for label in labels))

    # `index sync`: the sha256 of each record's text, model and prompt, so unchanged records are not embedded again.
    def _has_text_hashes(self) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'text_hashes'").fetchone() is not None

    def text_hashes(self, keys: Sequence[str]) -> dict[str, str]:
        if not self._has_text_hashes():
            return {}
        found = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            found.update(self._conn.execute(f"SELECT id, sha256 FROM text_hashes WHERE id IN ({marks})", chunk))
        return found

    def set_text_hashes(self, hashes: dict[str, str]) -> None:
        self._conn.execute("CREATE TABLE IF NOT EXISTS text_hashes (id TEXT PRIMARY KEY, sha256 TEXT NOT NULL)")
        self._conn.executemany("INSERT OR REPLACE INTO text_hashes (id, sha256) VALUES (?, ?)", hashes.items())

    def all_labels(self) -> np.ndarray:
        rows = self._conn.execute("SELECT label FROM items ORDER BY label").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def rows(self) -> Iterable[tuple[int, dict]]:
        """(label, fields) of every record, in label order."""
        for label, fields in self._conn.execute("SELECT label, fields FROM items ORDER BY label"):
            yield label, orjson.loads(fields)

    def renumber(self) -> None:
        """Make labels 0..n-1 in their current order (a flat index's rows after a compaction)."""
        # Via negative labels, so that no UPDATE collides with a label not yet moved.
        for statement in (
            "CREATE TEMP TABLE renum (old INTEGER PRIMARY KEY, new INTEGER)",
            "INSERT INTO renum SELECT label, ROW_NUMBER() OVER (ORDER BY label) - 1 FROM items",
            "UPDATE items SET label = -1 - (SELECT new FROM renum WHERE old = items.label)",
            "UPDATE items SET label = -1 - label",
            "DROP TABLE renum",
        ):
            self._conn.execute(statement)

    def fetch(self, labels: Iterable[int]) -> dict[int, tuple[object, bytes]]:
        """(id, fields as JSON bytes) for just these labels; fields are parsed by whoever needs them."""
        wanted = sorted({int(label) for label in labels})
        found = {}
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            for label, key, fields in self._conn.execute(
                f"SELECT label, id, fields FROM items WHERE label IN ({marks})", chunk
            ):
                found[label] = (_stored_json(key, label, self.path), fields)
                if not _is_json_object(fields):
                    _stored_json(fields, label, self.path)  # raises when it is not JSON at all
                    raise IndexStoreError(f"the fields of label {label} are not a JSON object: the index is corrupt", str(self.path))
        missing = [label for label in wanted if label not in found]
        if missing:
            raise IndexStoreError(f"label {missing[0]} has no row: the index is corrupt", str(self.path))
        return found

    def matching_labels(self, conditions: Sequence["Condition"]) -> np.ndarray:
        clauses, params = [], []
        for cond in conditions:
            sql, values = cond.sql()
            clauses.append(sql)
            params.extend(values)
        query = "SELECT label FROM items WHERE " + " AND ".join(clauses) + " ORDER BY label"
        rows = self._conn.execute(query, params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


_WHERE = re.compile(r"^\s*([^!<>=\s][^!<>=]*?)\s*(!=|<=|>=|=|<|>)\s*(.*?)\s*$", re.S)
_LITERALS = {"true": "true", "false": "false", "null": "null"}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class Condition:
    """One `--where` test on a top-level field: = and != compare text, numbers, true/false/null;
    <, <=, >, >= compare numbers only (rows whose field is not a number never match)."""

    field: str
    op: str
    value: str

    @classmethod
    def parse(cls, expression: str) -> "Condition":
        match = _WHERE.match(expression)
        if not match or match.group(1) in ("id", "embedding", "vecpipe"):
            raise UsageError(
                f"bad --where {expression!r}: expected FIELD=VALUE, FIELD!=VALUE, FIELD<NUMBER or FIELD>NUMBER "
                "on a stored field"
            )
        cond = cls(*match.groups())
        if cond.op not in ("=", "!=") and _number(cond.value) is None:
            raise UsageError(f"bad --where {expression!r}: {cond.op} needs a number")
        return cond

    def _path(self) -> str:
        return '$."' + self.field.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def sql(self) -> tuple[str, list]:
        path = self._path()
        typ, val = "json_type(fields, ?)", "json_extract(fields, ?)"
        number = _number(self.value)
        if self.op in ("=", "!="):
            tests = [f"({typ} = 'text' AND {val} = ?)"]
            params = [path, path, self.value]
            if number is not None:
                tests.append(f"({typ} IN ('integer', 'real') AND {val} = ?)")
                params += [path, path, number]
            if self.value in _LITERALS:
                tests.append(f"{typ} = ?")
                params += [path, _LITERALS[self.value]]
            equal = "(" + " OR ".join(tests) + ")"
            return (equal if self.op == "=" else f"NOT coalesce({equal}, 0)"), params
        return f"({typ} IN ('integer', 'real') AND {val} {self.op} ?)", [path, path, number]
