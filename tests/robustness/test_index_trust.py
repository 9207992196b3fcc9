"""Issue 18, class 3: index files are not trusted. Each damage an adversarial user (or a bad copy)
can do to an index gives exit 5 and one line naming the index, never plausible wrong hits with
exit 0: another index's graph (same or other width), rows that are not JSON, a label without a
row, and manifests with missing or mistyped keys. Real `vecpipe` processes."""
from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from robustness_support import assert_one_line_refusal, fingerprint, run_process

DIM = 8


def vectors(seed: int, count: int, dim: int = DIM) -> bytes:
    rng = np.random.default_rng(seed)
    return b"".join(json.dumps({"id": f"r{seed}-{i}", "text": f"doc {i}", "embedding": rng.normal(size=dim).round(5).tolist()}).encode() + b"\n"
                    for i in range(count))


def build(tmp_path, name: str, seed: int, count: int = 60, dim: int = DIM, *extra: str):
    outcome = run_process(["index", "build", "-q", "-o", tmp_path / name, *extra], vectors(seed, count, dim))
    assert outcome.code == 0, outcome.stderr
    return tmp_path / name, next((tmp_path / name).glob("g0*"))


def query(dim: int = DIM) -> bytes:
    return json.dumps({"id": "q", "embedding": np.ones(dim).tolist()}).encode() + b"\n"


def edit_manifest(generation, change) -> None:
    manifest = json.loads((generation / "manifest.json").read_text())
    change(manifest)
    (generation / "manifest.json").write_text(json.dumps(manifest))


def refused(tmp_path, root, problem: str, dim: int = DIM) -> None:
    """search, index info and index add all refuse the index with one line, exit 5, and change nothing."""
    before = fingerprint(tmp_path)
    for command, args, stdin in (("search", ["search", root], query(dim)),
                                 ("index add", ["index", "add", root, "-q"], vectors(99, 3, dim))):
        outcome = run_process(args, stdin)
        assert_one_line_refusal(outcome, command, None, problem, 5)
        assert outcome.stdout == b"" and str(root) in outcome.stderr
    assert fingerprint(tmp_path) == before


def test_a_graph_copied_from_another_index_of_the_same_shape_is_refused(tmp_path):
    root, generation = build(tmp_path, "a.idx", seed=1)
    _, other = build(tmp_path, "b.idx", seed=2)
    shutil.copyfile(other / "graph.bin", generation / "graph.bin")
    refused(tmp_path, root, "graph.bin does not match the sha256 in manifest.json")


def test_a_graph_of_another_width_is_refused_even_without_recorded_hashes(tmp_path):
    root, generation = build(tmp_path, "a.idx", seed=1)
    _, other = build(tmp_path, "wide.idx", seed=2, count=60, dim=16)
    shutil.copyfile(other / "graph.bin", generation / "graph.bin")
    edit_manifest(generation, lambda m: m.pop("files"))
    refused(tmp_path, root, "graph holds vectors of 16 dimensions but the manifest says 8")


def test_a_graph_of_another_size_is_refused_even_without_recorded_hashes(tmp_path):
    root, generation = build(tmp_path, "a.idx", seed=1, count=60)
    _, other = build(tmp_path, "big.idx", seed=2, count=90)
    shutil.copyfile(other / "graph.bin", generation / "graph.bin")
    edit_manifest(generation, lambda m: m.pop("files"))
    refused(tmp_path, root, "graph holds 90 vectors but the manifest says 60")


@pytest.mark.parametrize("damage, problem", [
    ("UPDATE items SET fields = 'not json' WHERE label = {label}", "is not valid JSON"),
    ("UPDATE items SET fields = '[1, 2]' WHERE label = {label}", "are not a JSON object"),
    ("UPDATE items SET fields = 17 WHERE label = {label}", "is not valid JSON"),
    ("UPDATE items SET id = '{{broken' WHERE label = {label}", "is not valid JSON"),
    ("DELETE FROM items WHERE label = {label}", "has no row"),
])
def test_a_damaged_row_is_refused_when_search_would_return_it(tmp_path, damage, problem):
    """With the recorded hashes removed (an index from before they existed, or a user who edited
    the manifest too), the rows are still read defensively."""
    root, generation = build(tmp_path, "a.idx", seed=1)
    hit = run_process(["search", root, "-k", "1"], query())
    label_of = {row[0]: row[1] for row in sqlite3.connect(generation / "meta.sqlite").execute("SELECT id, label FROM items")}
    label = label_of[json.dumps(json.loads(hit.stdout)["id"])]
    with sqlite3.connect(generation / "meta.sqlite") as db:
        db.execute(damage.format(label=label))
    refused_search = run_process(["search", root, "-k", "1"], query())
    assert_one_line_refusal(refused_search, "search", None, "meta.sqlite does not match the sha256 in manifest.json", 5)
    edit_manifest(generation, lambda m: m.pop("files"))
    refused_search = run_process(["search", root, "-k", "1"], query())
    assert_one_line_refusal(refused_search, "search", None, problem, 5)
    assert "meta.sqlite" in refused_search.stderr


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(dim="8"), "key 'dim' has the wrong type (str)"),
    (lambda m: m.update(count=True), "key 'count' has the wrong type (bool)"),
    (lambda m: m.pop("provenance"), "lacks the key 'provenance'"),
    (lambda m: m.update(kind="annoy"), "kind 'annoy' is not one of hnsw, flat"),
    (lambda m: m.pop("slots"), "lacks the key 'slots' of a hnsw index"),
    (lambda m: m.update(count=-1), "impossible dim, count or next_label"),
    (lambda m: m.update(count=61, next_label=61), "counts more records than its graph has slots"),
    (lambda m: m.update(files={"graph.bin": 5}), "'files' must map file names to sha256 digests"),
    (lambda m: m.update(files=[]), "key 'files' has the wrong type (list)"),
    (lambda m: m.update(metric="x"), "metric 'x' is not one of cosine, ip, l2"),
    (lambda m: m.update(dtype="int8"), "dtype 'int8' is not float32, which a graph index holds"),
    (lambda m: m["hnsw"].update(M="16"), "hnsw parameter 'M' must be an integer of at least 2, not '16'"),
    (lambda m: m.update(input_dtype="float64"), "input_dtype 'float64' is not one of float32, float16"),
    (lambda m: m["provenance"].update(normalized="yes"), "key 'provenance': provenance key 'normalized' must be true or false, not a string"),
])
def test_a_manifest_with_missing_or_mistyped_keys_is_refused(tmp_path, change, problem):
    root, generation = build(tmp_path, "a.idx", seed=1)
    edit_manifest(generation, change)
    refused(tmp_path, root, problem)
    info = run_process(["index", "info", root])
    assert_one_line_refusal(info, "index info", None, problem, 5)


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(dtype="int4"), "dtype 'int4' is not one of int8, uint8, binary, ubinary"),
    (lambda m: m.update(metric="cosine"), "metric 'cosine' is not 'dot', how a int8 index scores"),
    (lambda m: m.update(flat={"a": 1}), "flat setting 'from_float' must be true or false, not None"),
])
def test_a_flat_manifest_with_wrong_fields_is_refused(tmp_path, change, problem):
    root, generation = build(tmp_path, "q.idx", 1, 60, DIM, "--quantize", "int8")
    edit_manifest(generation, change)
    refused(tmp_path, root, problem)


@pytest.mark.parametrize("setting, value, problem", [
    ("language", None, "lexical setting 'language' has the wrong type (NoneType)"),
    ("language", "klingon", "lexical settings are unusable (no stemmer for 'klingon'"),
    ("token_pattern", "(", "lexical settings are unusable (missing ), unterminated subpattern"),
    ("k1", True, "lexical setting 'k1' has the wrong type (bool)"),
])
def test_wrong_lexical_settings_are_refused_where_they_are_used(tmp_path, setting, value, problem):
    root, generation = build(tmp_path, "l.idx", 1, 60, DIM, "--lexical")
    edit_manifest(generation, lambda m: m["lexical"].update({setting: value}))
    outcome = run_process(["search", root, "doc 3", "--mode", "lexical"])
    assert_one_line_refusal(outcome, "search", None, problem, 5)


def test_a_flat_matrix_of_another_shape_is_refused(tmp_path):
    root, generation = build(tmp_path, "q.idx", 1, 60, DIM, "--quantize", "int8")
    _, other = build(tmp_path, "q2.idx", 2, 40, DIM, "--quantize", "int8")
    shutil.copyfile(other / "vectors.npy", generation / "vectors.npy")
    edit_manifest(generation, lambda m: m.pop("files"))
    refused(tmp_path, root, "vectors.npy has shape (40, 8), the manifest says (60, 8)")


def test_an_undamaged_index_still_searches_after_its_files_were_hashed_once(tmp_path):
    root, _ = build(tmp_path, "a.idx", seed=1)
    for _ in range(2):  # the first search hashes in full, the second trusts the recorded stamps
        outcome = run_process(["search", root, "-k", "3"], query())
        assert outcome.code == 0 and len(outcome.stdout.splitlines()) == 3, outcome.stderr
