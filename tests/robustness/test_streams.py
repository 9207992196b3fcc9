"""Issue 18, class 7: stream semantics. Integers beyond 64 bits pass through every command exactly;
`true` is refused as a number in any embedding, also behind a duplicate key; an input read twice
(int8 ranges learned from the input) works from a named pipe. Real `vecpipe` processes."""
from __future__ import annotations

import json
import os
import threading

import pytest

from robustness_support import assert_one_line_refusal, run_process

BIG = "123456789012345678901234567890"
NEGATIVE = "-99999999999999999999"
U64_MAX = "18446744073709551615"  # still a 64-bit integer (unsigned): orjson's own path


def big_record(embedding: str = "[0.5, -0.25, 0.125, 1.0]") -> bytes:
    return (f'{{"id": {BIG}, "n": {NEGATIVE}, "u": {U64_MAX}, "nested": {{"deep": [{BIG}]}}, "s": "{BIG}", '
            f'"text": "alpha beta", "embedding": {embedding}}}\n').encode()


def assert_exact(line: bytes) -> None:
    text = line.decode()
    assert f'"id":{BIG}' in text and f'"n":{NEGATIVE}' in text and f'"u":{U64_MAX}' in text
    assert f'"nested":{{"deep":[{BIG}]}}' in text and f'"s":"{BIG}"' in text
    assert "e+" not in text.split('"embedding"')[0]  # no integer became a float


@pytest.mark.parametrize("args", [["truncate", "--dim", "2"], ["quantize", "--to", "binary"], ["quantize", "--to", "float16"]])
def test_big_integers_pass_through_vector_commands_exactly(args):
    outcome = run_process(args, big_record())
    assert outcome.code == 0, outcome.stderr
    assert_exact(outcome.stdout)


def test_big_integers_pass_through_embed_the_npy_sidecar_and_an_index(tmp_path, tiny_model_dir):
    embedded = run_process(["embed", "-m", tiny_model_dir, "-q"], big_record().replace(b', "embedding": [0.5, -0.25, 0.125, 1.0]', b""))
    assert embedded.code == 0, embedded.stderr
    assert_exact(embedded.stdout)
    npy = run_process(["truncate", "--dim", "8", "--format", "npy", "-o", tmp_path / "v.npy"], embedded.stdout)
    assert npy.code == 0, npy.stderr
    assert_exact((tmp_path / "v.meta.jsonl").read_bytes())
    built = run_process(["index", "build", "-q", "-o", tmp_path / "big.idx"], embedded.stdout)
    assert built.code == 0, built.stderr
    hit = run_process(["search", tmp_path / "big.idx", "alpha beta", "-k", "1", "-m", tiny_model_dir])
    assert hit.code == 0, hit.stderr
    assert_exact(hit.stdout)
    deleted = run_process(["index", "delete", tmp_path / "big.idx", "-q", "--id", BIG])
    assert deleted.code == 0, deleted.stderr
    assert json.loads(run_process(["index", "info", tmp_path / "big.idx"]).stdout)["count"] == 0  # the same id, found by its digits


@pytest.mark.parametrize("line", [
    b'{"id": 1, "embedding": [true, 0.5]}',
    b'{"id": 1, "embedding": [0.5, false]}',
    b'{"id": 1, "embedding": [0.1, 0.2], "embedding": [true, 1]}',  # the last duplicate is the one read
    b'{"id": 1, "flag": true, "embedding": [1, true]}',
])
def test_a_boolean_in_an_embedding_is_refused_wherever_it_hides(line):
    outcome = run_process(["truncate", "--dim", "1"], line + b"\n")
    assert_one_line_refusal(outcome, "truncate", "<stdin>:1", "'embedding' holds a boolean, not a number", 3)


@pytest.mark.parametrize("line, problem", [
    (b'{"id": 1, "embedding": [[0.1], [true]]}', "holds [0.1], not a number"),
    (b'{"id": 1, "embedding": {"a": true}}', "must be a list of numbers, not dict"),
])
def test_nested_embeddings_are_refused(line, problem):
    outcome = run_process(["truncate", "--dim", "1"], line + b"\n")
    assert_one_line_refusal(outcome, "truncate", "<stdin>:1", problem, 3)


def test_a_true_field_beside_a_good_embedding_is_accepted():
    outcome = run_process(["truncate", "--dim", "1"], b'{"id": 1, "flag": true, "embedding": [0.5, 0.5]}\n')
    assert outcome.code == 0 and b'"flag":true' in outcome.stdout, outcome.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_int8_ranges_are_learned_from_a_named_pipe_read_once(tmp_path):
    """quantize reads its input twice (learn the ranges, then quantize); a FIFO can be read once,
    so it is copied to a temp file on the first pass, like stdin. Before, the second open waited for ever."""
    fifo = tmp_path / "vectors.fifo"
    os.mkfifo(fifo)
    records = b"".join(json.dumps({"id": i, "embedding": [i / 10, 1 - i / 20, 0.3]}).encode() + b"\n" for i in range(20))

    def feed():
        with open(fifo, "wb") as writer:
            writer.write(records)

    threading.Thread(target=feed, daemon=True).start()
    outcome = run_process(["quantize", "--to", "int8", fifo], timeout=60)
    assert outcome.code == 0, outcome.stderr
    rows = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(range(20)) and all(r["vecpipe"]["dtype"] == "int8" for r in rows)
