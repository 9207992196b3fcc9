"""Provenance read from files and streams goes through one typed loader: every known key with a
wrong JSON type or value is one line naming the source, line and key, in every place vecpipe reads
it (a vector record, an .npy sidecar, an index manifest), and nothing is written."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vecpipe.core.errors import DataError, IndexStoreError
from vecpipe.core.provenance import Provenance, load_provenance

WRONG = [  # (key, a wrong value, what the message says)
    ("model", 5, "'model' must be a string, not a number"),
    ("model_sha256", ["ab"], "'model_sha256' must be a string, not a list"),
    ("weights_sha256", {"a": 1}, "'weights_sha256' must be a string, not an object"),
    ("dim", "3", "'dim' must be an integer, not a string"),
    ("dim", True, "'dim' must be an integer, not a boolean"),
    ("dim", 0, "'dim' must be at least 1, not 0"),
    ("dim", 2.5, "'dim' must be an integer, not a number"),
    ("dtype", ["int8"], "'dtype' must be a string, not a list"),
    ("dtype", "int4", "unknown dtype 'int4'"),
    ("normalized", "yes", "'normalized' must be true or false, not a string"),
    ("prompt", [1], "'prompt' must be a string, not a list"),
    ("prefix", 1, "'prefix' must be a string, not a number"),
    ("pooling", {}, "'pooling' must be a string, not an object"),
    ("layer", -1, "'layer' must be at least 1, not -1"),
    ("variant", False, "'variant' must be a string, not a boolean"),
    ("truncate_dim", True, "'truncate_dim' must be an integer, not a boolean"),
    ("pca_sha256", 7, "'pca_sha256' must be a string, not a number"),
    ("calibration_sha256", [], "'calibration_sha256' must be a string, not a list"),
]


def test_the_loader_checks_every_field_of_provenance():
    from dataclasses import fields

    from vecpipe.core import provenance

    assert set(provenance._TYPES) == {f.name for f in fields(Provenance)}  # a new field is checked the day it is added


def test_a_good_provenance_is_typed_and_unknown_keys_pass():
    typed = load_provenance({"model": "m", "dim": 3, "normalized": True, "dtype": "int8", "layer": 2, "other_tool": [1]})
    assert typed == Provenance(model="m", dim=3, normalized=True, dtype="int8", layer=2)
    assert load_provenance({}) == Provenance() and load_provenance({"prompt": None}).prompt is None  # null is absent


@pytest.mark.parametrize("key, value, message", WRONG)
def test_each_wrong_type_is_one_line_naming_the_key(key, value, message):
    with pytest.raises(DataError, match=message) as caught:
        load_provenance({"model": "m", "dim": 3, key: value}, "docs.jsonl", 7)
    assert str(caught.value).startswith("docs.jsonl:7: ") and "\n" not in str(caught.value)
    with pytest.raises(IndexStoreError):
        load_provenance({key: value}, error=IndexStoreError)


def vecpipe(*args, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecpipe", *map(str, args)], input=stdin, capture_output=True, timeout=120)


def records(provenance: dict) -> bytes:
    return b"".join(json.dumps({"id": i, "embedding": [1.0, float(i), 0.0], "vecpipe": provenance}).encode() + b"\n" for i in range(3))


@pytest.mark.parametrize("key, value, message", [WRONG[0], WRONG[7], WRONG[9]])
def test_a_record_stream_with_a_mistyped_key_builds_no_index(tmp_path, key, value, message):
    done = vecpipe("index", "build", "-q", "-o", tmp_path / "x.idx", stdin=records({"model": "m", "dim": 3, key: value}))
    assert done.returncode == 3 and done.stdout == b"" and not (tmp_path / "x.idx").exists()
    assert done.stderr.decode() == f"vecpipe index build: <stdin>:1: provenance key {message}\n"


def test_a_sidecar_with_a_mistyped_key_is_named_with_its_line(tmp_path):
    np.save(tmp_path / "v.npy", np.eye(3, dtype=np.float32))
    (tmp_path / "v.meta.jsonl").write_text("".join(json.dumps({"id": i, "vecpipe": {"dim": 3, "normalized": "no"}}) + "\n" for i in range(3)))
    done = vecpipe("truncate", "--dim", "2", tmp_path / "v.npy")
    assert done.returncode == 3 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [f"vecpipe truncate: {tmp_path / 'v.meta.jsonl'}:1: provenance key 'normalized' must be true or false, not a string"]


def test_an_index_manifest_with_a_mistyped_provenance_key_is_refused_as_corrupt(tmp_path):
    assert vecpipe("index", "build", "-q", "-o", tmp_path / "x.idx", stdin=records({"model": "m", "dim": 3})).returncode == 0
    manifest_path = next((tmp_path / "x.idx").glob("g0*")) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["provenance"]["dim"] = [3]
    manifest_path.write_text(json.dumps(manifest))
    done = vecpipe("search", tmp_path / "x.idx", "--exact", stdin=records({"model": "m", "dim": 3}).splitlines(keepends=True)[0])
    assert done.returncode == 5 and done.stdout == b""
    assert "manifest key 'provenance': provenance key 'dim' must be an integer, not a list: the index is corrupt" in done.stderr.decode()
    assert len(done.stderr.splitlines()) == 1
