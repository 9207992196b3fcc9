"""Vector records as JSONL and as .npy + sidecar: round trips, sniffing, and every bad input."""
from __future__ import annotations

import io
import os

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vecpipe.core.errors import DataError, StorageError, UsageError
from vecpipe.formats.vectors import parts as vector_parts
from vecpipe.formats.vectors import (
    StdinSource,
    VectorBatch,
    VectorInputs,
    VectorWriter,
    concat_batches,
    open_vector_output,
    read_matrix,
    read_vectors,
    sidecar_path,
)

PROVENANCE = {"model": "toy", "model_sha256": "ab" * 32, "dim": 3, "normalized": True}


def batch_of(matrix, provenance=PROVENANCE, ids=None, fields=None) -> VectorBatch:
    n = len(matrix)
    return VectorBatch(
        ids if ids is not None else [f"d{i}" for i in range(n)],
        fields if fields is not None else [{"title": f"t{i}"} for i in range(n)],
        np.asarray(matrix),
        provenance,
        list(range(1, n + 1)),
    )


def to_jsonl(batch: VectorBatch) -> bytes:
    out = io.BytesIO()
    with VectorWriter(out) as writer:
        writer.write(batch)
    return out.getvalue()


def read_all(data: bytes, **kwargs) -> list[VectorBatch]:
    return list(read_vectors("-", io.BytesIO(data), **kwargs))


def read_one(data: bytes) -> VectorBatch:
    (batch,) = read_all(data)
    return batch


def line(record: dict) -> bytes:
    return orjson.dumps(record) + b"\n"


def record(embedding, **extra) -> dict:
    return {"id": "a", "embedding": embedding, "vecpipe": PROVENANCE, **extra}


SMALL = np.array([[0.1, 0.2, 0.3], [-1.5, 2.0, 1 / 3]], dtype=np.float32)


# --- JSONL ------------------------------------------------------------------------------------


def test_jsonl_record_layout_is_id_fields_embedding_provenance():
    data = to_jsonl(batch_of(SMALL, fields=[{"title": "x", "n": 1}, {}]))
    first = data.splitlines()[0]
    assert list(orjson.loads(first)) == ["id", "title", "n", "embedding", "vecpipe"]
    assert b'"embedding":[0.1,0.2,0.3]' in first  # float32 keeps its short repr


def test_jsonl_round_trip_keeps_everything():
    batch = batch_of(SMALL)
    back = read_one(to_jsonl(batch))
    assert back.ids == batch.ids and back.fields == batch.fields
    assert back.provenance == PROVENANCE and back.lines == [1, 2] and back.source == "<stdin>"
    np.testing.assert_array_equal(back.matrix, SMALL)
    assert back.matrix.dtype == np.float32 and back.dtype == "float32" and back.dim == 3


@pytest.mark.parametrize("dtype,values", [
    ("float16", np.array([[0.1, -2.5, 65504.0]], dtype=np.float16)),
    ("int8", np.array([[-128, 0, 127]], dtype=np.int8)),
    ("uint8", np.array([[0, 128, 255]], dtype=np.uint8)),
    ("binary", np.array([[-128, 5]], dtype=np.int8)),
    ("ubinary", np.array([[255, 1]], dtype=np.uint8)),
])
def test_jsonl_round_trip_per_dtype(dtype, values):
    dim = 16 if dtype.endswith("binary") else 3
    provenance = {"model": "toy", "dim": dim, "dtype": dtype}
    back = read_one(to_jsonl(batch_of(values, provenance)))
    assert back.matrix.dtype == values.dtype and back.dtype == dtype
    np.testing.assert_array_equal(back.matrix, values)
    assert back.dim == dim


def test_ids_from_id_then_underscore_id_then_position():
    data = line({"_id": "beir1", "embedding": [1]}) + line({"embedding": [2]}) + line({"id": 7, "_id": "x", "embedding": [3]})
    batch = read_one(data)
    assert batch.ids == ["beir1", 1, 7]
    assert batch.fields == [{}, {}, {"_id": "x"}]


def test_bom_crlf_blank_lines_and_missing_final_newline():
    data = b"\xef\xbb\xbf" + line(record([1, 2, 3]))[:-1] + b"\r\n\r\n  \n" + line(record([4, 5, 6]))[:-1]
    batch = read_one(data)
    assert batch.lines == [1, 4]
    np.testing.assert_array_equal(batch.matrix, [[1, 2, 3], [4, 5, 6]])


def test_batches_are_cut_at_batch_size_with_line_numbers():
    data = b"".join(line(record([i, i, i], id=f"d{i}")) for i in range(10))
    batches = read_all(data, batch_size=4)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert batches[2].lines == [9, 10] and batches[2].ids == ["d8", "d9"]


def test_a_stream_without_provenance_is_float32_with_empty_provenance():
    batch = read_one(line({"id": 1, "embedding": [1, 2.5]}))
    assert batch.provenance == {} and batch.matrix.dtype == np.float32 and batch.dtype == "float32"


BAD_JSONL = [
    (b'{"id": 1, "embedding": [1,2\n', 1, "invalid JSON"),
    (b"[1, 2, 3]\n", 1, "expected a JSON object, got list"),
    (b'{"id": "\xff", "embedding": [1]}\n', 1, "invalid UTF-8"),
    (b'{"id": 1}\n', 1, "missing 'embedding'"),
    (b'{"embedding": "1,2"}\n', 1, "must be a list of numbers"),
    (b'{"embedding": [1, "2"]}\n', 1, "holds '2', not a number"),
    (b'{"embedding": [1, null]}\n', 1, "holds None, not a number"),
    (b'{"embedding": [1, [2]]}\n', 1, "not a number"),
    (b'{"embedding": [1, true]}\n', 1, "boolean"),
    (b'{"embedding": [1, NaN]}\n', 1, "NaN or infinity"),
    (b'{"embedding": [1, 1e39]}\n', 1, "NaN or infinite value"),
    (b'{"embedding": []}\n', 1, "is empty"),
    (b'{"embedding": [1, 2]}\n{"embedding": [1]}\n', 2, "has 1 value, the first one (line 1) has 2"),
    (b'{"id": true, "embedding": [1]}\n', 1, "id must be a string or an integer"),
    (b'{"id": 1.5, "embedding": [1]}\n', 1, "id must be a string or an integer"),
    (b'{"embedding": [1], "vecpipe": 3}\n', 1, "'vecpipe' must be an object"),
    (b'{"embedding": [1], "vecpipe": {"model": "a"}}\n{"embedding": [1], "vecpipe": {"model": "b"}}\n', 2,
     "provenance differs from line 1: model 'a' vs 'b'"),
    (b'{"embedding": [1], "vecpipe": {"dim": 1}}\n{"embedding": [1], "vecpipe": {"dim": 1, "x": 2}}\n', 2,
     "x '(none)' vs 2"),
    (b'{"embedding": [1, 2], "vecpipe": {"dim": 3}}\n', 1, "has 2 values but provenance says dim 3"),
    (b'{"embedding": [1], "vecpipe": {"dtype": "int4"}}\n', 1, "unknown dtype 'int4'"),
    (b'{"embedding": [1, 300], "vecpipe": {"dtype": "int8"}}\n', 1, "int8 vector values must be integers in [-128, 127]"),
    (b'{"embedding": [1, 0.5], "vecpipe": {"dtype": "uint8"}}\n', 1, "must be integers"),
    (b'{"embedding": [1, 2], "vecpipe": {"dtype": "binary", "dim": 17}}\n', 1, "provenance says dim 17 (binary)"),
]


@pytest.mark.parametrize("data,bad_line,message", BAD_JSONL, ids=[m for _, _, m in BAD_JSONL])
def test_bad_jsonl_is_one_data_error_with_file_and_line(data, bad_line, message):
    with pytest.raises(DataError) as caught:
        read_all(data)
    error = caught.value
    assert (error.source, error.line) == ("<stdin>", bad_line)
    assert message in error.message
    assert "\n" not in str(error)


def test_the_bad_row_is_found_inside_a_large_batch():
    data = b"".join(line({"embedding": [1, 2]}) for _ in range(50)) + line({"embedding": [1, "x"]})
    with pytest.raises(DataError) as caught:
        read_all(data)
    assert caught.value.line == 51


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_empty_input_is_an_error(data):
    with pytest.raises(DataError, match="empty input"):
        read_all(data)


def test_a_named_file_is_the_error_source(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_bytes(line({"embedding": [1]}) + b"oops\n")
    with pytest.raises(DataError) as caught:
        list(read_vectors(str(path)))
    assert str(caught.value).startswith(f"{path}:2: invalid JSON (")


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="No such file"):
        list(read_vectors(str(tmp_path / "nope.jsonl")))


# --- .npy + sidecar ---------------------------------------------------------------------------


def write_npy(path, *batches: VectorBatch) -> None:
    with VectorWriter(None, "npy", npy_path=str(path)) as writer:
        for batch in batches:
            writer.write(batch)


def test_npy_round_trip_over_several_batches(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(11, 3)).astype(np.float32)
    write_npy(tmp_path / "x.npy", batch_of(matrix[:5]), batch_of(matrix[5:], ids=list(range(5, 11))))
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), matrix)  # a standard .npy
    sidecar = (tmp_path / "x.meta.jsonl").read_bytes().splitlines()
    assert len(sidecar) == 11 and orjson.loads(sidecar[0]) == {"id": "d0", "title": "t0", "vecpipe": PROVENANCE}
    batches = list(read_vectors(str(tmp_path / "x.npy"), batch_size=4))
    assert [b.lines[0] for b in batches] == [1, 5, 9]
    whole = read_matrix(str(tmp_path / "x.npy"))
    np.testing.assert_array_equal(whole.matrix, matrix)
    assert whole.ids == ["d0", "d1", "d2", "d3", "d4", 5, 6, 7, 8, 9, 10]
    assert whole.provenance == PROVENANCE and whole.fields[0] == {"title": "t0"}


@pytest.mark.parametrize("dtype,values", [
    ("float16", np.array([[0.5, -1, 2]], dtype=np.float16)),
    ("int8", np.array([[-128, 0, 127]], dtype=np.int8)),
    ("uint8", np.array([[0, 1, 255]], dtype=np.uint8)),
    ("binary", np.array([[-128, 127]], dtype=np.int8)),
    ("ubinary", np.array([[0, 255]], dtype=np.uint8)),
])
def test_npy_round_trip_per_dtype(tmp_path, dtype, values):
    provenance = {"model": "toy", "dim": 12 if dtype.endswith("binary") else 3, "dtype": dtype}
    write_npy(tmp_path / "x.npy", batch_of(values, provenance))
    assert np.load(tmp_path / "x.npy").dtype == values.dtype
    back = read_matrix(str(tmp_path / "x.npy"))
    assert back.dtype == dtype and back.matrix.dtype == values.dtype
    np.testing.assert_array_equal(back.matrix, values)


def test_npy_is_sniffed_on_stdin_and_has_no_sidecar(tmp_path):
    write_npy(tmp_path / "x.npy", batch_of(SMALL))
    notes = []
    batches = list(read_vectors("-", io.BytesIO((tmp_path / "x.npy").read_bytes()), batch_size=1, note=notes.append))
    assert [b.ids for b in batches] == [[0], [1]] and batches[1].lines == [2]
    assert batches[0].provenance == {} and batches[0].fields == [{}]
    np.testing.assert_array_equal(np.concatenate([b.matrix for b in batches]), SMALL)
    assert len(notes) == 1 and "no sidecar" in notes[0]


def test_foreign_npy_without_sidecar_gets_positions_and_a_note(tmp_path):
    np.save(tmp_path / "plain.npy", SMALL.astype(np.float64))  # numpy's default float64: read as float32
    notes = []
    batch = read_matrix(str(tmp_path / "plain.npy"), note=notes.append)
    assert batch.ids == [0, 1] and batch.provenance == {} and batch.matrix.dtype == np.float32
    np.testing.assert_array_equal(batch.matrix, SMALL)
    assert notes == [f"{tmp_path}/plain.npy: no sidecar {tmp_path}/plain.meta.jsonl: ids are row positions and provenance is unknown"]


def test_fortran_ordered_and_big_endian_npy_files_are_read(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(SMALL.astype(">f4")))
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "f.npy"), note=lambda _: None).matrix, SMALL)


def test_sidecar_path():
    assert sidecar_path("a/b.npy") == "a/b.meta.jsonl"
    assert sidecar_path("a/b.bin") == "a/b.bin.meta.jsonl"


def expect_npy_error(path, message, line=None, source=None):
    with pytest.raises(DataError) as caught:
        list(read_vectors(str(path), note=lambda _: None))
    assert message in caught.value.message
    assert caught.value.line == line
    assert caught.value.source == str(source or path)


def test_truncated_npy(tmp_path):
    write_npy(tmp_path / "x.npy", batch_of(SMALL))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-5])
    expect_npy_error(tmp_path / "x.npy", "truncated .npy: the header promises 2 rows, the file holds 1")
    with pytest.raises(DataError, match="truncated .npy: the header promises 2 rows, the stream holds 1"):
        read_all(data[:-5])


def test_bytes_after_the_matrix(tmp_path):
    np.save(tmp_path / "x.npy", SMALL)
    with open(tmp_path / "x.npy", "ab") as fh:
        fh.write(b"junk")
    expect_npy_error(tmp_path / "x.npy", "4 unexpected bytes after the .npy matrix")
    with pytest.raises(DataError, match="unexpected bytes"):
        read_all((tmp_path / "x.npy").read_bytes(), note=lambda _: None)


@pytest.mark.parametrize("array,message", [
    (np.array([[1, 2]], dtype=np.int64), "holds int64 values"),
    (np.array([[True]]), "holds bool values"),
    (np.zeros(3, dtype=np.float32), "1-D array"),
    (np.zeros((2, 2, 2), dtype=np.float32), "3-D array"),
    (np.zeros((0, 3), dtype=np.float32), "empty .npy matrix"),
    (np.zeros((3, 0), dtype=np.float32), "width 0"),
    (np.array([[1.0, np.nan]], dtype=np.float32), "NaN or infinite value"),
])
def test_unusable_npy_matrices(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    expect_npy_error(tmp_path / "x.npy", message, line=1 if "NaN" in message else None)


def test_object_npy_is_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[object()]], dtype=object), allow_pickle=True)
    expect_npy_error(tmp_path / "x.npy", "holds object values")


@pytest.mark.parametrize("data,message", [
    (b"\x93NUMPY\x01\x00\x07\x00garbage", "not a readable .npy file"),
    (b"\x93NUMPY\x09\x00garbage", "unsupported .npy format version 9.0"),
])
def test_broken_npy_headers(tmp_path, data, message):
    (tmp_path / "x.npy").write_bytes(data)
    expect_npy_error(tmp_path / "x.npy", message)


def test_nan_in_a_late_npy_row_is_reported_by_row(tmp_path):
    matrix = np.ones((10, 3), dtype=np.float32)
    matrix[7, 1] = np.inf
    np.save(tmp_path / "x.npy", matrix)
    with pytest.raises(DataError) as caught:
        list(read_vectors(str(tmp_path / "x.npy"), batch_size=3, note=lambda _: None))
    assert caught.value.line == 8


def write_sidecar(npy_path, records: list[dict]) -> None:
    with open(sidecar_path(str(npy_path)), "wb") as fh:
        fh.write(b"".join(line(r) for r in records))


def test_sidecar_shorter_than_the_matrix(tmp_path):
    np.save(tmp_path / "x.npy", SMALL)
    write_sidecar(tmp_path / "x.npy", [{"id": "a"}])
    expect_npy_error(tmp_path / "x.npy", "the sidecar has 1 records but the .npy has 2 rows", source=tmp_path / "x.meta.jsonl")


def test_sidecar_longer_than_the_matrix(tmp_path):
    np.save(tmp_path / "x.npy", SMALL)
    write_sidecar(tmp_path / "x.npy", [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    expect_npy_error(tmp_path / "x.npy", "more records than the .npy has rows (2)", line=3, source=tmp_path / "x.meta.jsonl")


def test_sidecar_provenance_must_not_change(tmp_path):
    np.save(tmp_path / "x.npy", SMALL)
    write_sidecar(tmp_path / "x.npy", [{"id": "a", "vecpipe": {"model": "a"}}, {"id": "b", "vecpipe": {"model": "b"}}])
    expect_npy_error(tmp_path / "x.npy", "provenance differs from line 1", line=2, source=tmp_path / "x.meta.jsonl")


def test_sidecar_dtype_must_match_the_matrix(tmp_path):
    np.save(tmp_path / "x.npy", SMALL)
    write_sidecar(tmp_path / "x.npy", [{"id": "a", "vecpipe": {"dim": 3, "dtype": "int8"}}] * 2)
    expect_npy_error(tmp_path / "x.npy", "holds float32 values but the sidecar's provenance says int8")


def test_bad_sidecar_json_points_at_the_sidecar_line(tmp_path):
    np.save(tmp_path / "x.npy", SMALL)
    (tmp_path / "x.meta.jsonl").write_bytes(b'{"id": "a"}\n{"id": \n')
    expect_npy_error(tmp_path / "x.npy", "invalid JSON", line=2, source=tmp_path / "x.meta.jsonl")


# --- writing ----------------------------------------------------------------------------------


def test_npy_format_needs_a_file_name():
    with pytest.raises(UsageError, match="give -o FILE.npy"):
        VectorWriter(None, "npy")


def test_a_failed_npy_write_leaves_the_old_files_and_no_temp_files(tmp_path):
    write_npy(tmp_path / "x.npy", batch_of(SMALL))
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyError):
        with VectorWriter(None, "npy", npy_path=str(tmp_path / "x.npy")) as writer:
            writer.write(batch_of(SMALL[:1]))
            raise KeyError("boom")
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_writer_dropped_without_close_leaves_no_temp_files(tmp_path):
    writer = VectorWriter(None, "npy", npy_path=str(tmp_path / "x.npy"))
    writer.write(batch_of(SMALL))
    del writer
    assert os.listdir(tmp_path) == []


def test_an_empty_npy_output_is_still_a_valid_pair(tmp_path):
    VectorWriter(None, "npy", npy_path=str(tmp_path / "x.npy")).close()
    assert np.load(tmp_path / "x.npy").shape == (0, 0)
    assert (tmp_path / "x.meta.jsonl").read_bytes() == b""


def test_a_stream_cannot_change_provenance_part_way():
    writer = VectorWriter(io.BytesIO())
    writer.write(batch_of(SMALL))
    with pytest.raises(ValueError, match="part-way"):
        writer.write(batch_of(SMALL, {**PROVENANCE, "model": "other"}))


def test_a_non_float32_matrix_without_dtype_gets_one_written():
    back = read_one(to_jsonl(batch_of(SMALL.astype(np.float16), provenance={})))
    assert back.provenance == {"dtype": "float16"} and back.matrix.dtype == np.float16


def test_open_vector_output_writes_a_jsonl_file_atomically(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(KeyError):
        with open_vector_output("jsonl", str(target), io.BytesIO()) as writer:
            writer.write(batch_of(SMALL))
            raise KeyError
    assert not target.exists() and os.listdir(tmp_path) == []
    with open_vector_output("jsonl", str(target), io.BytesIO()) as writer:
        writer.write(batch_of(SMALL))
    assert target.read_bytes() == to_jsonl(batch_of(SMALL))


# --- a directory of .npy parts ----------------------------------------------------------------


def write_parts(path, *batches: VectorBatch, part_rows: int | None = 4) -> None:
    with VectorWriter(None, "npy", npy_path=str(path), part_rows=part_rows) as writer:
        for batch in batches:
            writer.write(batch)


def parts_manifest(path) -> dict:
    return orjson.loads((path / "manifest.json").read_bytes())


def test_parts_round_trip_across_part_boundaries(tmp_path):
    matrix = np.random.default_rng(1).normal(size=(11, 3)).astype(np.float32)
    out = tmp_path / "parts"
    write_parts(out, batch_of(matrix[:5]), batch_of(matrix[5:], ids=list(range(5, 11))))
    manifest = parts_manifest(out)
    assert [p["rows"] for p in manifest["parts"]] == [4, 4, 3] and manifest["rows"] == 11
    assert (manifest["dtype"], manifest["width"], manifest["provenance"]) == ("float32", 3, PROVENANCE)
    np.testing.assert_array_equal(np.concatenate([np.load(out / p["matrix"]) for p in manifest["parts"]]), matrix)  # plain .npy files
    assert orjson.loads((out / "part-00001.meta.jsonl").read_bytes().splitlines()[0])["id"] == "d4"
    batches = list(read_vectors(str(out), batch_size=3))
    whole = concat_batches(batches)
    np.testing.assert_array_equal(whole.matrix, matrix)
    assert whole.ids == ["d0", "d1", "d2", "d3", "d4", 5, 6, 7, 8, 9, 10] and whole.provenance == PROVENANCE
    assert (batches[-1].source, batches[-1].lines) == (str(out / "part-00002.npy"), [1, 2, 3])  # errors name the part and its row


def test_parts_default_to_about_part_bytes_each(tmp_path, monkeypatch):
    monkeypatch.setattr(vector_parts, "PART_BYTES", 2 * 3 * 4)  # two float32 rows of width 3
    write_parts(tmp_path / "parts", batch_of(SMALL), batch_of(SMALL), batch_of(SMALL[:1]), part_rows=None)
    assert [p["rows"] for p in parts_manifest(tmp_path / "parts")["parts"]] == [2, 2, 1]


def test_positions_continue_after_a_parts_directory(tmp_path):
    write_parts(tmp_path / "parts", batch_of(SMALL, provenance={}, ids=[0, 1], fields=[{}, {}]), part_rows=1)
    (tmp_path / "more.jsonl").write_bytes(line({"embedding": [1.0, 2.0, 3.0]}))
    ids = [i for b in VectorInputs([str(tmp_path / "parts"), str(tmp_path / "more.jsonl")]) for i in b.ids]
    assert ids == [0, 1, 2]


def test_parts_replace_earlier_parts_but_nothing_else(tmp_path):
    out = tmp_path / "parts"
    write_parts(out, batch_of(np.ones((9, 3), np.float32)))
    write_parts(out, batch_of(SMALL))
    assert sorted(os.listdir(out)) == ["manifest.json", "part-00000.meta.jsonl", "part-00000.npy"]  # no stale part-00002
    assert sorted(os.listdir(tmp_path)) == ["parts"]  # the old directory and the temp one are gone
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "file").write_text("keep me too")
    for target, message in [("mine", "holds no vector parts"), ("file", "not a directory")]:
        with pytest.raises(StorageError, match=message):
            write_parts(tmp_path / target, batch_of(SMALL))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me" and (tmp_path / "file").read_text() == "keep me too"


def test_parts_written_through_a_symlink_replace_its_target_and_keep_the_link(tmp_path):
    write_parts(tmp_path / "real", batch_of(np.ones((9, 3), np.float32)))
    (tmp_path / "link").symlink_to(tmp_path / "real")
    write_parts(tmp_path / "link", batch_of(SMALL))
    assert (tmp_path / "link").is_symlink() and sorted(os.listdir(tmp_path)) == ["link", "real"]
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "link")).matrix, SMALL)


def test_a_failed_parts_write_leaves_the_old_parts_and_no_temp_files(tmp_path):
    write_parts(tmp_path / "parts", batch_of(SMALL))
    before = {p: p.read_bytes() for p in (tmp_path / "parts").iterdir()}
    with pytest.raises(KeyError):
        with VectorWriter(None, "npy", npy_path=str(tmp_path / "parts"), part_rows=1) as writer:
            writer.write(batch_of(np.ones((5, 3), np.float32)))
            raise KeyError("boom")
    assert {p: p.read_bytes() for p in (tmp_path / "parts").iterdir()} == before
    assert os.listdir(tmp_path) == ["parts"]


def test_an_empty_parts_output_reads_as_no_vectors(tmp_path):
    VectorWriter(None, "npy", npy_path=str(tmp_path / "parts")).close()
    assert parts_manifest(tmp_path / "parts")["parts"] == [] and list(read_vectors(str(tmp_path / "parts"))) == []


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: b"{", "manifest.json: not valid JSON"),
        (lambda m: orjson.dumps({**m, "format": "other"}), "not a vector parts manifest"),
        (lambda m: orjson.dumps({**m, "parts": [{"matrix": "../x.npy", "rows": 1}]}), "must name a .npy file inside the directory"),
        (lambda m: orjson.dumps({**m, "parts": [{"matrix": "part-00000.npy", "rows": "2"}]}), "needs a row count"),
        (lambda m: orjson.dumps({**m, "parts": [{"matrix": "part-00000.npy", "rows": 3}]}), "part-00000.npy: holds 2 rows but manifest.json says 3"),
        (lambda m: orjson.dumps({**m, "parts": [*m["parts"], {"matrix": "part-00001.npy", "rows": 2}]}), "part-00001.npy: No such file"),
        (lambda m: orjson.dumps({**m, "parts": [{"matrix": "loop.npy", "rows": 2}]}), "loop.npy: Is a directory"),
    ],
    ids=["invalid JSON", "another format", "a path outside", "rows not a number", "rows differ", "a missing part", "a directory"],
)
def test_broken_parts_manifests_are_one_line_errors(tmp_path, edit, message):
    out = tmp_path / "parts"
    write_parts(out, batch_of(SMALL))
    (out / "loop.npy").symlink_to(out)  # followed as a parts directory, it would recurse for ever
    (out / "manifest.json").write_bytes(edit(parts_manifest(out)))
    with pytest.raises(DataError) as caught:
        list(read_vectors(str(out)))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_directory_without_a_manifest_is_named(tmp_path):
    with pytest.raises(DataError, match="is a directory without manifest.json"):
        list(VectorInputs([str(tmp_path)]))


# --- several inputs ---------------------------------------------------------------------------


def test_several_inputs_continue_positions_and_must_agree(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(line({"embedding": [1]}) * 2)
    (tmp_path / "b.jsonl").write_bytes(line({"embedding": [2]}) * 2)
    (tmp_path / "c.jsonl").write_bytes(line({"embedding": [2], "vecpipe": {"model": "x"}}))
    ids = [i for b in VectorInputs([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) for i in b.ids]
    assert ids == [0, 1, 2, 3]
    with pytest.raises(DataError) as caught:
        list(VectorInputs([str(tmp_path / "a.jsonl"), str(tmp_path / "c.jsonl")]))
    assert (caught.value.source, caught.value.line) == (str(tmp_path / "c.jsonl"), 1)
    assert "provenance differs from" in caught.value.message


def test_a_rereadable_stdin_can_be_read_twice_and_notes_come_once():
    npy = io.BytesIO()
    np.save(npy, SMALL)
    stdin = StdinSource(io.BytesIO(npy.getvalue()), rereadable=True)
    notes = []
    inputs = VectorInputs(["-"], stdin, note=notes.append)
    assert [len(b) for b in inputs] == [2]
    assert [len(b) for b in inputs] == [2]
    assert len(notes) == 1
    stdin.close()


# --- properties -------------------------------------------------------------------------------

FIELD_NAMES = st.text(min_size=1, max_size=8).filter(lambda k: k not in ("id", "_id", "embedding", "vecpipe"))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
IDS = st.text(max_size=12) | st.integers(-(2**63), 2**63 - 1)


@st.composite
def vector_batches(draw, dtype=np.float32):
    rows = draw(st.integers(1, 6))
    width = draw(st.integers(1, 5))
    elements = st.floats(width=32, allow_nan=False, allow_infinity=False) if dtype == np.float32 else None
    matrix = draw(hnp.arrays(dtype, (rows, width), elements=elements))
    ids = draw(st.lists(IDS, min_size=rows, max_size=rows))
    fields = draw(st.lists(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=3), min_size=rows, max_size=rows))
    provenance = {"model": draw(st.text(max_size=10)), "dim": width}
    if dtype != np.float32:
        provenance["dtype"] = np.dtype(dtype).name
    return batch_of(matrix, provenance, ids, fields)


def assert_same(back: VectorBatch, batch: VectorBatch) -> None:
    assert back.ids == batch.ids
    assert back.fields == batch.fields
    assert back.provenance == batch.provenance
    assert back.matrix.dtype == batch.matrix.dtype
    np.testing.assert_array_equal(back.matrix, batch.matrix)


@settings(max_examples=60, deadline=None)
@given(vector_batches())
def test_property_jsonl_round_trip(batch):
    assert_same(read_one(to_jsonl(batch)), batch)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([np.int8, np.uint8, np.float16]).flatmap(lambda t: vector_batches(t).filter(
    lambda b: b.matrix.dtype.kind != "f" or np.isfinite(b.matrix).all())))
def test_property_jsonl_round_trip_other_dtypes(batch):
    assert_same(read_one(to_jsonl(batch)), batch)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=vector_batches())
def test_property_npy_round_trip(tmp_path, batch):
    write_npy(tmp_path / "p.npy", batch)
    assert_same(read_matrix(str(tmp_path / "p.npy")), batch)


def test_a_named_pipe_is_read_as_a_stream(tmp_path):
    import threading

    fifo = tmp_path / "vectors.fifo"
    os.mkfifo(fifo)
    data = to_jsonl(batch_of(SMALL))
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    back = read_matrix(str(fifo))
    writer.join()
    assert back.source == str(fifo) and back.ids == ["d0", "d1"]
    np.testing.assert_array_equal(back.matrix, SMALL)
