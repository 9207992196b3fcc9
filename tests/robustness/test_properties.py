"""Property tests for what tests/formats and tests/core do not already cover.

Already there: JSONL and .npy vector round trips with arbitrary fields and unicode ids, for
every dtype (tests/formats/test_vectors.py); scalar buckets in range, monotone and within one
step, and binary bits equal to the signs (tests/core/vectors/test_quantize.py); prefix truncation
giving unit rows of the same direction (tests/core/vectors/test_truncate.py).

Here: text input round trips (plain lines and JSONL records, through the real `vecpipe embed`
too), line-end and byte-order-mark variants read like clean input, shapes and determinism of
every quantization, float16's round-trip bound, calibration learned the same over any
batching, and truncation that composes and is undone by a full PCA.
"""
from __future__ import annotations

import io

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from robustness_support import run_in_process
from vecpipe.core.vectors.quantize import PRECISIONS, SCALAR_PRECISIONS, learn_calibration, quantize_batch
from vecpipe.core.vectors.truncate import fit_pca, truncate_batch
from vecpipe.formats.text import read_texts
from vecpipe.formats.vectors import VectorBatch, VectorWriter, read_vectors

# The values of tests/formats/test_vectors.py's round trips; field names also avoid `text` and `title`,
# which text input treats specially.
FIELD_NAMES = st.text(min_size=1, max_size=8).filter(lambda k: k not in ("id", "_id", "text", "title"))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
IDS = st.text(max_size=12) | st.integers(-(2**63), 2**63 - 1)
# A text is one line of anything but line breaks, with something on it besides whitespace.
LINE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1, max_size=30).filter(
    lambda t: t.strip() != "")


def variants(lines: list[bytes]) -> list[bytes]:
    """The same lines as Unix, Windows (BOM, CRLF) and a file without its last newline would hold them."""
    return [b"".join(line + b"\n" for line in lines), b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n", b"\n".join(lines)]


# --- text input -------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.lists(LINE_TEXT, min_size=1, max_size=8))
def test_property_plain_lines_come_back_verbatim_in_every_line_end_style(texts):
    for data in variants([t.encode() for t in texts]):
        records = list(read_texts(io.BytesIO(data), "in.txt", input_format="text"))
        assert [(r.id, r.text, r.fields) for r in records] == [(i, t, {"text": t}) for i, t in enumerate(texts)]


JSONL_RECORDS = st.lists(
    st.tuples(IDS, LINE_TEXT, st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=3)),
    min_size=1, max_size=6,
)


def as_record(record_id, text, fields) -> dict:
    return {"id": record_id, **fields, "text": text}


@settings(max_examples=80, deadline=None)
@given(JSONL_RECORDS)
def test_property_jsonl_records_keep_id_text_and_every_field_in_order(rows):
    lines = [orjson.dumps(as_record(*row)) for row in rows]
    for data in variants(lines):
        records = list(read_texts(io.BytesIO(data), "in.jsonl"))
        assert [r.id for r in records] == [row[0] for row in rows]
        assert [r.text for r in records] == [row[1] for row in rows]
        assert [list(r.fields.items()) for r in records] == [list({**row[2], "text": row[1]}.items()) for row in rows]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=JSONL_RECORDS)
def test_property_embed_passes_ids_and_fields_through_untouched(tiny_model_dir, rows):
    data = b"".join(orjson.dumps(as_record(*row)) + b"\n" for row in rows)
    outcome = run_in_process(["embed", "-m", tiny_model_dir, "-q"], data)
    assert outcome.code == 0, outcome.stderr
    out = [orjson.loads(line) for line in outcome.stdout.splitlines()]
    assert [list(o) for o in out] == [["id", *row[2], "text", "embedding", "vecpipe"] for row in rows]
    assert [{k: o[k] for k in o if k not in ("embedding", "vecpipe")} for o in out] == [as_record(*row) for row in rows]


# --- vector records -----------------------------------------------------------------------------

MATRICES = hnp.arrays(np.float32, st.tuples(st.integers(2, 10), st.integers(1, 20)), elements=st.floats(-4, 4, width=32))
PROVENANCE = {"model": "toy", "normalized": False}


def batch_of(matrix: np.ndarray, first_line: int = 1) -> VectorBatch:
    n = len(matrix)
    return VectorBatch([f"r{first_line + i}" for i in range(n)], [{"n": first_line + i} for i in range(n)], matrix,
                       {**PROVENANCE, "dim": matrix.shape[1]}, list(range(first_line, first_line + n)), "v.jsonl")


def split(matrix: np.ndarray, cuts: list[int]) -> list[VectorBatch]:
    edges = [0, *sorted({c % len(matrix) for c in cuts} - {0}), len(matrix)]
    return [batch_of(matrix[a:b], first_line=a + 1) for a, b in zip(edges, edges[1:])]


@settings(max_examples=60, deadline=None)
@given(MATRICES)
def test_property_vector_records_read_the_same_in_every_line_end_style(matrix):
    out = io.BytesIO()
    VectorWriter(out).write(batch_of(matrix))
    for data in variants(out.getvalue().splitlines()):
        (back,) = read_vectors("-", io.BytesIO(data))
        assert back.ids == [f"r{i + 1}" for i in range(len(matrix))]
        np.testing.assert_array_equal(back.matrix, matrix)


# --- quantize -------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(MATRICES, st.sampled_from(PRECISIONS))
def test_property_every_precision_keeps_rows_ids_and_fields_and_is_deterministic(matrix, precision):
    batch = batch_of(matrix)
    ranges = learn_calibration([batch]) if precision in SCALAR_PRECISIONS else None
    first, again = quantize_batch(batch, precision, ranges), quantize_batch(batch_of(matrix.copy()), precision, ranges)
    width = (matrix.shape[1] + 7) // 8 if precision in ("binary", "ubinary") else matrix.shape[1]
    assert first.matrix.shape == (len(matrix), width)
    assert (first.ids, first.fields, first.lines) == (batch.ids, batch.fields, batch.lines)
    assert first.provenance["dtype"] == precision and first.provenance["dim"] == matrix.shape[1]
    np.testing.assert_array_equal(first.matrix, again.matrix)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=st.floats(-60000, 60000, width=32)))
def test_property_float16_round_trip_is_within_half_a_unit_in_the_last_place(matrix):
    back = quantize_batch(batch_of(matrix), "float16").matrix.astype(np.float32)
    # float16 keeps 11 significant bits; below 2**-14 it is subnormal, with a fixed step of 2**-24.
    bound = np.maximum(np.abs(matrix) * 2.0**-11, 2.0**-25)
    assert (np.abs(back - matrix) <= bound).all()


@settings(max_examples=60, deadline=None)
@given(MATRICES, st.lists(st.integers(0, 50), max_size=4))
def test_property_calibration_is_the_same_over_any_batching(matrix, cuts):
    whole = learn_calibration([batch_of(matrix)])
    streamed = learn_calibration(split(matrix, cuts))
    np.testing.assert_array_equal(streamed.ranges, whole.ranges)
    assert streamed.sha256 == whole.sha256  # so provenance names the same file either way


# --- truncate ---------------------------------------------------------------------------------


# Subnormal values (below 1.2e-38) are left out: re-normalizing a row flushes one to zero, and a
# prefix of zeros then stays zero, where truncating once would have scaled it up to a unit vector.
NORMAL_MATRICES = hnp.arrays(np.float32, st.tuples(st.integers(2, 10), st.integers(1, 20)),
                             elements=st.floats(-4, 4, width=32, allow_subnormal=False))


@settings(max_examples=60, deadline=None)
@given(NORMAL_MATRICES.filter(lambda m: np.abs(m).max(axis=1).min() > 1e-3), st.data())
def test_property_truncating_twice_equals_truncating_once(matrix, data):
    wide = data.draw(st.integers(1, matrix.shape[1]))
    narrow = data.draw(st.integers(1, wide))
    twice = truncate_batch(truncate_batch(batch_of(matrix), wide), narrow)
    once = truncate_batch(batch_of(matrix), narrow)
    np.testing.assert_allclose(twice.matrix, once.matrix, atol=1e-5)
    assert twice.provenance == once.provenance and twice.ids == once.ids


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(12, 30), st.integers(2, 8)), elements=st.floats(-3, 3, width=32)))
def test_property_a_full_pca_rotation_is_undone_by_its_transpose(matrix):
    dim = matrix.shape[1]
    pca = fit_pca([batch_of(matrix)], dim)
    rotated = truncate_batch(batch_of(matrix), dim, renormalize=False, pca=pca).matrix
    restored = rotated @ pca.components + pca.mean
    np.testing.assert_allclose(restored, matrix, atol=1e-3 * max(1.0, float(np.abs(matrix).max())))
    assert fit_pca([batch_of(matrix.copy())], dim).sha256 == pca.sha256  # the same sample, the same file
