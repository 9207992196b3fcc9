"""The bad-input catalogue (issue 7): every command, fed what users really feed it.

Each refusal must be one line, `vecpipe CMD: SOURCE[:LINE]: problem`, with the documented
exit code (2 usage, 3 data, 4 model, 5 index), no traceback, nothing on stdout, and nothing
written: the working directory (outputs, indexes, the model cache) is fingerprinted before
and after. A few inputs that look odd but are valid (a BOM, CRLF, no final newline, a 100 MB
line, a run listing a document twice) must succeed instead; they are at the end.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from robustness_support import (
    assert_one_line_refusal,
    fingerprint,
    nested,
    run_in_process,
    run_process,
    unit_rows,
    vector_records,
)
from vecpipe.core.index.vector_index import BuildOptions, build_index
from vecpipe.formats.vectors import read_matrix

TEXTS = [f"sentence {i} about {topic}" for i, topic in enumerate(["cats", "ships", "rain", "maps", "bread", "glass"] * 2)]
PREVIOUS = b"the output of an earlier run\n"


@pytest.fixture(scope="module")
def tiny_vectors(tiny_model_dir) -> bytes:
    """Twelve vector records embedded by the tiny model, as `vecpipe embed` writes them."""
    from vecpipe.core.models.model import Model

    model = Model(tiny_model_dir)
    ids = [f"d{i}" for i in range(len(TEXTS))]
    return vector_records(model.embed(TEXTS), model.provenance(), ids, [{"text": t} for t in TEXTS])


class World:
    """A working directory (the cwd of each command, so messages name files as users type them),
    with its own $VECPIPE_HOME, the tiny model, and files made on demand."""

    def __init__(self, root: Path, model: Path, checkpoint: Path, vectors: bytes):
        self.root, self.model, self.checkpoint, self.vectors = root, str(model), checkpoint, vectors

    def file(self, name: str, data: bytes | str) -> str:
        path = self.root / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return name

    def docs(self) -> str:
        return self.file("docs.jsonl", self.vectors)

    def output(self) -> str:
        """An output file holding an earlier result, which a failed run must leave alone."""
        return self.file("out.jsonl", PREVIOUS)

    def index(self, name: str = "idx", **options) -> str:
        build_index(self.root / name, [read_matrix(str(self.root / self.docs()))], BuildOptions(**options))
        return name

    def npy(self, name: str, matrix: np.ndarray, sidecar: bytes | None = None) -> str:
        np.save(self.root / name, matrix)
        if sidecar is not None:
            self.file(name[: -len(".npy")] + ".meta.jsonl", sidecar)
        return name

    def model_copy(self, name: str) -> str:
        shutil.copytree(self.model, self.root / name)
        return name

    def embed(self, name: str, data: bytes | str, *options: str) -> list:
        return ["embed", "-m", self.model, "-q", "-o", self.output(), *options, self.file(name, data)]


@pytest.fixture
def world(tmp_path, monkeypatch, tiny_model_dir, tiny_checkpoint, tiny_vectors) -> World:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "models").mkdir(parents=True)
    return World(tmp_path, tiny_model_dir, tiny_checkpoint, tiny_vectors)


@dataclass
class Case:
    args: list
    command: str  # as it names itself in messages: "embed", "index add", ...
    where: str | None  # SOURCE or SOURCE:LINE; None for option errors, which name the option
    problem: str
    code: int
    stdin: bytes | None = None


CASES: dict[str, Callable[[World], Case]] = {}


def case(make: Callable[[World], Case]) -> Callable[[World], Case]:
    CASES[make.__name__] = make
    return make


# --- embed: text input -------------------------------------------------------------------------


@case
def invalid_json(w):
    return Case(w.embed("in.jsonl", '{"text": "a"}\n{"text": "b",}\n'), "embed", "in.jsonl:2", "invalid JSON", 3)


@case
def json_that_is_not_an_object(w):
    return Case(w.embed("in.jsonl", '{"text": "a"}\n["b"]\n'), "embed", "in.jsonl:2", "expected a JSON object, got list", 3)


@case
def json_nested_deeper_than_can_be_written(w):
    # orjson reads 1024 levels but writes 254: such a record used to be read, then crash the writer.
    return Case(w.embed("in.jsonl", '{"text": "a"}\n' + nested(255) + "\n"), "embed", "in.jsonl:2", "nested more than 254 levels deep", 3)


@case
def json_nested_deeper_than_can_be_read(w):
    return Case(w.embed("in.jsonl", nested(5000) + "\n"), "embed", "in.jsonl:1", "invalid JSON (depth limit exceeded)", 3)


@case
def invalid_utf8_in_plain_text(w):
    return Case(w.embed("in.txt", b"fine\nalso fine\nbad \xc3\x28 byte\n"), "embed", "in.txt:3", "invalid UTF-8 at byte 4", 3)


@case
def invalid_utf8_in_jsonl(w):
    return Case(w.embed("in.jsonl", b'{"text": "a"}\n{"text": "\xff"}\n'), "embed", "in.jsonl:2", "invalid UTF-8", 3)


@case
def missing_text_field(w):
    return Case(w.embed("in.jsonl", '{"text": "a"}\n{"body": "b"}\n'), "embed", "in.jsonl:2", "missing text field 'text'", 3)


@case
def non_string_text_field(w):
    return Case(w.embed("in.jsonl", '{"text": ["a"]}\n'), "embed", "in.jsonl:1", "text field 'text' is list, not a string", 3)


@case
def empty_text(w):
    return Case(w.embed("in.jsonl", '{"text": "a"}\n{"text": ""}\n'), "embed", "in.jsonl:2", "text field 'text' is empty", 3)


@case
def whitespace_only_text(w):
    return Case(w.embed("in.jsonl", '{"text": " \\t\\n "}\n'), "embed", "in.jsonl:1", "text field 'text' is empty", 3)


@case
def empty_input(w):
    return Case(w.embed("in.txt", "\n \n"), "embed", "in.txt", "no input records (empty input)", 3)


@case
def text_over_the_token_limit_with_on_long_error(w):
    return Case(w.embed("in.txt", "short\n" + "word " * 500 + "\n", "--on-long", "error"), "embed", "in.txt:2", "text has 502 tokens, more than --max-tokens 64", 3)


# --- vector input: quantize, truncate, index build / add ------------------------------------------


@case
def nan_in_a_jsonl_vector(w):
    data = '{"id": 1, "embedding": [0.5, 0.5]}\n{"id": 2, "embedding": [NaN, 0.5]}\n'
    return Case(["quantize", "--to", "float16", "-o", w.output(), w.file("v.jsonl", data)], "quantize", "v.jsonl:2", "NaN or infinity in record", 3)


@case
def infinity_after_the_float32_cast(w):
    data = '{"id": 1, "embedding": [0.5, 0.5]}\n{"id": 2, "embedding": [1e39, 0.5]}\n'
    return Case(["truncate", "--dim", "1", "-o", w.output(), w.file("v.jsonl", data)], "truncate", "v.jsonl:2", "NaN or infinite value in the vector", 3)


@case
def nan_in_an_npy_row(w):
    matrix = unit_rows(4, 8, seed=1)
    matrix[2, 5] = np.nan
    sidecar = b"".join(f'{{"id": "r{i}"}}\n'.encode() for i in range(4))  # without one, a note would come first
    return Case(["index", "build", "-q", "-o", "new.idx", w.npy("v.npy", matrix, sidecar)], "index build", "v.npy:3", "NaN or infinite value", 3)


@case
def vector_of_the_wrong_dimension(w):
    lines = w.vectors.splitlines(keepends=True)
    record = json.loads(lines[2])
    record["embedding"] = record["embedding"][:-1]
    data = b"".join(lines[:2]) + json.dumps(record).encode() + b"\n"
    return Case(["index", "build", "-q", "-o", "new.idx", w.file("v.jsonl", data)], "index build", "v.jsonl:3", "the vector has 31 values, the first one (line 1) has 32", 3)


@case
def vectors_of_another_dimension_added_to_an_index(w):
    index = w.index()
    data = vector_records(unit_rows(2, 8, seed=2), {"model": "tiny-bert", "dim": 8})
    return Case(["index", "add", "-q", index, w.file("v.jsonl", data)], "index add", "v.jsonl:1", "record dim 8 differs from the index's 32", 3)


@case
def mixed_dtypes_in_one_stream(w):
    data = '{"id": 1, "embedding": [1, 2], "vecpipe": {"dim": 2}}\n{"id": 2, "embedding": [1, 2], "vecpipe": {"dim": 2, "dtype": "int8"}}\n'
    return Case(["quantize", "--to", "binary", "-o", w.output(), w.file("v.jsonl", data)], "quantize", "v.jsonl:2", "provenance differs from line 1: dtype '(none)' vs 'int8'", 3)


@case
def a_string_among_the_numbers(w):
    data = '{"id": 1, "embedding": [0.5, "0.5"]}\n'
    return Case(["index", "build", "-q", "-o", "new.idx", w.file("v.jsonl", data)], "index build", "v.jsonl:1", "'embedding' holds '0.5', not a number", 3)


@case
def int8_values_out_of_range(w):
    data = '{"id": 1, "embedding": [1, 300], "vecpipe": {"dim": 2, "dtype": "int8"}}\n'
    return Case(["index", "build", "-q", "-o", "new.idx", w.file("v.jsonl", data)], "index build", "v.jsonl:1", "int8 vector values must be integers in [-128, 127]", 3)


@case
def truncated_npy(w):
    w.npy("full.npy", unit_rows(50, 16, seed=3))
    cut = (w.root / "full.npy").read_bytes()[:600]
    return Case(["quantize", "--to", "binary", "-o", w.output(), w.file("cut.npy", cut)], "quantize", "cut.npy", "truncated .npy: the header promises 50 rows, the file holds 7", 3)


@case
def npy_of_the_wrong_dtype(w):
    matrix = np.arange(12, dtype=np.int32).reshape(3, 4)
    return Case(["truncate", "--dim", "2", "-o", w.output(), w.npy("v.npy", matrix)], "truncate", "v.npy", ".npy holds int32 values", 3)


@case
def npy_of_pickled_objects(w):
    # Refused from its header alone: nothing in it is ever unpickled.
    matrix = np.array([[{"a": 1}, None]], dtype=object)
    np.save(w.root / "v.npy", matrix, allow_pickle=True)
    return Case(["quantize", "--to", "binary", "-o", w.output(), "v.npy"], "quantize", "v.npy", ".npy holds object values", 3)


@case
def sidecar_shorter_than_its_matrix(w):
    sidecar = b"".join(f'{{"id": "r{i}"}}\n'.encode() for i in range(3))
    name = w.npy("v.npy", unit_rows(5, 8, seed=4), sidecar)
    return Case(["index", "build", "-q", "-o", "new.idx", name], "index build", "v.meta.jsonl", "the sidecar has 3 records but the .npy has 5 rows", 3)


@case
def sidecar_longer_than_its_matrix(w):
    sidecar = b"".join(f'{{"id": "r{i}"}}\n'.encode() for i in range(6))
    name = w.npy("v.npy", unit_rows(5, 8, seed=4), sidecar)
    return Case(["truncate", "--dim", "4", "-o", w.output(), name], "truncate", "v.meta.jsonl:6", "the sidecar has more records than the .npy has rows (5)", 3)


@case
def dim_larger_than_the_vectors(w):
    return Case(["truncate", "--dim", "999", "-o", w.output(), w.docs()], "truncate", "docs.jsonl:1", "--dim 999 is larger than the vectors (32 dimensions)", 2)


@case
def calibration_made_for_another_dimension(w):
    ranges = np.stack([np.full(16, -1.0), np.full(16, 1.0)]).astype(np.float32)
    np.savez(w.root / "cal16.npz", ranges=ranges)
    args = ["quantize", "--to", "int8", "--calibration", "cal16.npz", "-o", w.output(), w.docs()]
    return Case(args, "quantize", "docs.jsonl:1", "cal16.npz has ranges for 16 dimensions; these vectors have 32", 3)


@case
def index_calibration_made_for_another_dimension(w):
    ranges = np.stack([np.full(16, -1.0), np.full(16, 1.0)]).astype(np.float32)
    np.savez(w.root / "cal16.npz", ranges=ranges)
    args = ["index", "build", "-q", "-o", "new.idx", "--quantize", "int8", "--calibration", "cal16.npz", w.docs()]
    return Case(args, "index build", "docs.jsonl:1", "cal16.npz has ranges for 16 dimensions; these vectors have 32", 3)


@case
def no_vectors_at_all(w):
    return Case(["index", "build", "-q", "-o", "new.idx", w.file("v.jsonl", "\n\n")], "index build", "v.jsonl", "no vector records (empty input)", 3)


# --- indexes ---------------------------------------------------------------------------------


def _edit_manifest(w: World, index: str, **changes) -> None:
    path = w.root / index / "g000001" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@case
def index_from_a_newer_format(w):
    index = w.index()
    _edit_manifest(w, index, format_version=2)
    where = f"{index}/g000001/manifest.json"
    return Case(["search", index, "-k", "1"], "search", where, "index format version 2 is newer than this vecpipe understands (1)", 5, w.vectors)


@case
def truncated_graph(w):
    index = w.index()
    graph = w.root / index / "g000001" / "graph.bin"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    _forget_file_hashes(w, index)
    return Case(["search", index, "-k", "1"], "search", f"{index}/g000001/graph.bin", "graph file is cut short", 5, w.vectors)


@case
def graph_with_its_upper_links_cut(w):
    """Whole vector records but the upper layers' links cut short: hnswlib's own load refuses it."""
    index = w.index()
    graph = w.root / index / "g000001" / "graph.bin"
    graph.write_bytes(graph.read_bytes()[:-8])
    _forget_file_hashes(w, index)
    return Case(["search", index, "-k", "1"], "search", f"{index}/g000001/graph.bin", "graph file is unreadable", 5, w.vectors)


@case
def metadata_naming_a_label_the_graph_lacks(w):
    index = w.index()
    with sqlite3.connect(w.root / index / "g000001" / "meta.sqlite") as db:
        db.execute("UPDATE items SET label = 999999 WHERE label = 0")
    _forget_file_hashes(w, index)
    return Case(["search", index, "-k", "1", "--exact", "--where", "text!=none"], "search", f"{index}/g000001/graph.bin",
                "the graph lacks a label the metadata holds", 5, w.vectors)


@case
def truncated_flat_matrix(w):
    index = w.index("flat.idx", quantize="binary")
    matrix = w.root / index / "g000001" / "vectors.npy"
    matrix.write_bytes(matrix.read_bytes()[:130])
    _forget_file_hashes(w, index)
    return Case(["search", index, "-k", "1"], "search", f"{index}/g000001/vectors.npy", "matrix file is unreadable", 5, w.vectors)


def _forget_file_hashes(w: World, index: str) -> None:
    """Drop the manifest's sha256 of each file, as in an index written before vecpipe recorded them,
    so that the damage reaches the reader's own checks (the hashes are tested in test_index_trust.py)."""
    manifest = w.root / index / "g000001" / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["files"]
    manifest.write_text(json.dumps(data))


def _corrupt_sqlite(w: World, index: str) -> None:
    _forget_file_hashes(w, index)
    meta = w.root / index / "g000001" / "meta.sqlite"
    data = bytearray(meta.read_bytes())
    data[:100] = bytes(100)  # the header: SQLite no longer recognizes the file
    meta.write_bytes(bytes(data))


@case
def corrupt_sqlite_on_search(w):
    index = w.index()
    _corrupt_sqlite(w, index)
    return Case(["search", index, "-k", "1"], "search", f"{index}/g000001/meta.sqlite", "metadata store is unreadable", 5, w.vectors)


@case
def corrupt_sqlite_on_add(w):
    index = w.index()
    _corrupt_sqlite(w, index)
    return Case(["index", "add", "-q", index, w.docs()], "index add", index, "metadata store is unreadable", 5)


@case
def corrupt_sqlite_on_delete(w):
    index = w.index()
    _corrupt_sqlite(w, index)
    return Case(["index", "delete", "-q", index, "--id", "d1"], "index delete", index, "metadata store is unreadable", 5)


@case
def current_names_a_missing_generation(w):
    index = w.index()
    (w.root / index / "CURRENT").write_text("g000007\n")
    return Case(["index", "info", index], "index info", f"{index}/g000007", "index files are missing: the index is corrupt", 5)


@case
def a_directory_that_is_not_an_index(w):
    (w.root / "notes").mkdir()
    w.file("notes/todo.txt", "buy milk\n")
    return Case(["index", "build", "-q", "-o", "notes", w.docs()], "index build", "notes", "exists and is not a vecpipe index", 5)


@case
def query_of_another_model(w):
    index = w.index()
    query = vector_records(unit_rows(1, 32, seed=5), {"model": "other-model", "dim": 32, "normalized": True})
    return Case(["search", index], "search", index, "query model 'other-model' differs from the index's 'tiny-bert'", 5, query)


@case
def query_of_another_dimension(w):
    index = w.index()
    query = b'{"id": "q", "embedding": [0.6, 0.8, 0.0]}\n'
    return Case(["search", index], "search", index, "query vectors have 3 columns; this index expects 32 for float32", 5, query)


@case
def query_truncated_unlike_the_index(w):
    index = w.index()
    short = run_in_process(["truncate", "--dim", "8", w.docs()]).stdout
    return Case(["search", index], "search", index, "query dim 8 differs from the index's 32", 5, short)


@case
def delete_without_ids(w):
    return Case(["index", "delete", w.index()], "index delete", None, "give ids to delete with --id ID or --ids FILE", 2)


# --- eval ----------------------------------------------------------------------------------


RUN = "q1 Q0 d1 1 2.0 run\nq1 Q0 d2 2 1.0 run\n"


@case
def qrels_with_too_few_columns(w):
    args = ["eval", "retrieval", "--qrels", w.file("qrels.tsv", "q1 d1\n"), "--run", w.file("run.trec", RUN), "-o", "results"]
    return Case(args, "eval retrieval", "qrels.tsv:1", "expected 3 columns (query-id corpus-id score) or 4 (qid 0 docid rel), found 2", 3)


@case
def qrels_with_a_relevance_that_is_not_a_number(w):
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n"
    args = ["eval", "retrieval", "--qrels", w.file("qrels.tsv", qrels), "--run", w.file("run.trec", RUN)]
    return Case(args, "eval retrieval", "qrels.tsv:3", "relevance 'high' is not a number", 3)


@case
def run_with_a_missing_column(w):
    args = ["eval", "retrieval", "--qrels", w.file("qrels.tsv", "q1\td1\t1\n"), "--run", w.file("run.trec", "q1 Q0 d1 1 2.0\n")]
    return Case(args, "eval retrieval", "run.trec:1", "expected 6 columns (qid Q0 docid rank score tag), found 5", 3)


@case
def run_with_a_score_that_is_not_a_number(w):
    args = ["eval", "retrieval", "--qrels", w.file("qrels.tsv", "q1\td1\t1\n"), "--run", w.file("run.trec", "q1 Q0 d1 1 high run\n")]
    return Case(args, "eval retrieval", "run.trec:1", "score 'high' is not a number", 3)


@case
def sts_pair_missing_a_sentence(w):
    pairs = '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "a", "score": 2}\n'
    args = ["eval", "sts", "-m", w.model, "--no-cache", "-q", "--pairs", w.file("pairs.jsonl", pairs), "-o", "results"]
    return Case(args, "eval sts", "pairs.jsonl:2", "missing text field 'sentence2'", 3)


@case
def sts_score_that_is_not_a_number(w):
    pairs = '{"sentence1": "a", "sentence2": "b", "score": "high"}\n'
    args = ["eval", "sts", "-m", w.model, "--no-cache", "-q", "--pairs", w.file("pairs.jsonl", pairs)]
    return Case(args, "eval sts", "pairs.jsonl:1", "'score' must be a number", 3)


@case
def corpus_with_a_text_that_is_not_a_string(w):
    corpus = w.file("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": 5}\n')
    queries = w.file("queries.jsonl", '{"_id": "q1", "text": "a"}\n')
    args = ["eval", "retrieval", "-m", w.model, "--no-cache", "-q", "--corpus", corpus, "--queries", queries,
            "--qrels", w.file("qrels.tsv", "q1\td1\t1\n"), "-o", "results"]
    return Case(args, "eval retrieval", "corpus.jsonl:2", "'title' and 'text' must be strings", 3)


# --- models ----------------------------------------------------------------------------------


@case
def unknown_model_name(w):
    return Case(["models", "path", "no-such-model"], "models path", None, "unknown model 'no-such-model'", 4)


@case
def hub_name_climbing_out_of_the_cache(w):
    return Case(["models", "path", "hf:../../etc"], "models path", None, "invalid hub model name '../../etc'", 4)


@case
def model_directory_missing_its_tokenizer(w):
    model = w.model_copy("mymodel")
    (w.root / model / "tokenizer.json").unlink()
    return Case(["embed", "-m", model, "-o", w.output()], "embed", model, "missing tokenizer.json", 4, b"hello\n")


@case
def model_file_with_another_sha256(w):
    model = w.model_copy("mymodel")
    with open(w.root / model / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    return Case(["embed", "-m", model, "-o", w.output()], "embed", model, "model.onnx does not match the sha256 in vecpipe.json", 4, b"hello\n")


@case
def model_manifest_from_a_newer_vecpipe(w):
    model = w.model_copy("mymodel")
    manifest = w.root / model / "vecpipe.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": 99}))
    return Case(["models", "info", model], "models info", f"{model}/vecpipe.json", "manifest is from a newer vecpipe", 4)


@case
def checkpoint_missing_its_weights(w):
    shutil.copytree(w.checkpoint, w.root / "ckpt")
    (w.root / "ckpt" / "model.safetensors").unlink()
    return Case(["models", "path", "ckpt"], "models path", "ckpt", "it lacks model.safetensors", 4)


@case
def checkpoint_with_garbled_weights(w):
    shutil.copytree(w.checkpoint, w.root / "ckpt")
    (w.root / "ckpt" / "model.safetensors").write_bytes(b"\x10\x00not safetensors at all")
    return Case(["models", "path", "ckpt"], "models path", "ckpt", "model.safetensors is unreadable", 4)


# --- the catalogue, run ----------------------------------------------------------------------

# Conversions announce themselves on stderr before they can fail; that notice is allowed.
CONVERSION_NOTICE = "(first use only)"
# A handful run as real processes too: a real pipe, interpreter exit and stdio flushing.
IN_REAL_PROCESSES = ["json_nested_deeper_than_can_be_written", "truncated_npy", "corrupt_sqlite_on_add",
                     "query_of_another_model", "qrels_with_too_few_columns", "model_file_with_another_sha256"]


def _without_conversion_notice(stderr: str) -> str:
    return "".join(line for line in stderr.splitlines(keepends=True) if not line.rstrip().endswith(CONVERSION_NOTICE))


def check_refusal(world: World, make: Callable[[World], Case], run) -> None:
    case = make(world)
    before = fingerprint(world.root)
    outcome = run(case)
    outcome.stderr = _without_conversion_notice(outcome.stderr)
    assert_one_line_refusal(outcome, case.command, case.where, case.problem, case.code)
    assert outcome.stdout == b""
    assert fingerprint(world.root) == before  # outputs, indexes and the model cache as they were


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line_and_nothing_written(name, world):
    check_refusal(world, CASES[name], lambda case: run_in_process(case.args, case.stdin))


@pytest.mark.parametrize("name", IN_REAL_PROCESSES)
def test_refused_the_same_way_by_a_real_process(name, world):
    env = {"VECPIPE_HOME": str(world.root / "home")}
    check_refusal(world, CASES[name], lambda case: run_process(case.args, case.stdin, env=env, cwd=world.root))

# --- odd but valid: these must succeed --------------------------------------------------------

LINES = ["first text", "second text", "third text"]


def _dos(lines: list[str]) -> bytes:
    """What a Windows editor saves: a byte order mark, CRLF line ends, no newline at the end."""
    return ("\ufeff" + "\r\n".join(lines)).encode()


def _unix(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("lines", [LINES, [json.dumps({"id": f"t{i}", "text": t}) for i, t in enumerate(LINES)]], ids=["plain", "jsonl"])
def test_bom_crlf_and_no_final_newline_embed_like_clean_text(world, lines):
    clean = run_in_process(["embed", "-m", world.model, "-q", world.file("unix.txt", _unix(lines))])
    dos = run_in_process(["embed", "-m", world.model, "-q", world.file("dos.txt", _dos(lines))])
    assert clean.code == dos.code == 0 and dos.stderr == ""
    assert dos.stdout == clean.stdout and len(clean.stdout.splitlines()) == 3


def test_bom_crlf_and_no_final_newline_in_vector_records(world):
    lines = world.vectors.decode().splitlines()
    clean = run_in_process(["quantize", "--to", "binary", world.file("unix.jsonl", _unix(lines))])
    dos = run_in_process(["quantize", "--to", "binary", world.file("dos.jsonl", _dos(lines))])
    assert clean.code == dos.code == 0 and dos.stderr == ""
    assert dos.stdout == clean.stdout and len(clean.stdout.splitlines()) == len(lines)


@pytest.fixture(scope="module")
def line_of_100_mb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("huge") / "huge.txt"
    words = b"lorem ipsum dolor sit amet "
    path.write_bytes(words * (100 * 2**20 // len(words)) + b"\n")
    return path


def test_a_100_mb_line_is_truncated_like_any_long_text(world, line_of_100_mb):
    """Decided behaviour: a huge line is one text like any other; only its first 64 tokens are read
    (the tokenizer is spared the rest, so this takes seconds, not minutes and gigabytes)."""
    outcome = run_in_process(["embed", "-m", world.model, "--format", "npy", "-o", "huge.npy", str(line_of_100_mb)])
    assert outcome.code == 0, outcome.stderr
    assert outcome.stderr.startswith("vecpipe embed: 1 texts, 64 tokens, 1 truncated")
    assert np.load(world.root / "huge.npy").shape == (1, 32)


def test_a_100_mb_line_is_refused_from_its_head_with_on_long_error(world, line_of_100_mb):
    before = fingerprint(world.root)
    outcome = run_in_process(["embed", "-m", world.model, "--on-long", "error", "-o", "out.jsonl", str(line_of_100_mb)])
    assert_one_line_refusal(outcome, "embed", f"{line_of_100_mb}:1", "more than --max-tokens 64", 3)
    assert fingerprint(world.root) == before


def test_a_run_listing_a_document_twice_counts_it_once_and_says_so(world):
    """Decided behaviour (formats/trec.py): the best score counts, once, with a one-line warning,
    so a duplicate in a retriever's output cannot count twice."""
    qrels = world.file("qrels.tsv", "q1\td1\t1\nq1\td3\t1\n")
    once = run_in_process(["eval", "retrieval", "--qrels", qrels, "--run", world.file("once.trec", RUN)])
    twice = run_in_process(["eval", "retrieval", "--qrels", qrels, "--run", world.file("twice.trec", RUN + "q1 Q0 d1 3 0.5 run\n")])
    assert once.code == twice.code == 0
    assert twice.stderr == "vecpipe eval retrieval: twice.trec: 1 documents listed twice for a query; each counts once, at its best score\n"
    assert json.loads(twice.stdout)["scores"] == json.loads(once.stdout)["scores"]
