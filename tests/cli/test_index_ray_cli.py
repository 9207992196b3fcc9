"""`vecpipe index build --shards N --engine ray` as a user runs it: the same index as a local
sharded build (a local Ray cluster started and stopped by the run), and one-line refusals."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_same_hits

pytest.importorskip("ray")


def vecpipe(*args, stdin: bytes = b""):
    return subprocess.run([sys.executable, "-m", "vecpipe", *map(str, args)], input=stdin, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("ray-cli") / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"doc {i}", "embedding": rng.normal(size=8).round(5).tolist()}) + "\n"
                            for i in range(300)))
    return path


@pytest.mark.slow  # starts a local Ray cluster
def test_a_ray_build_searches_like_a_local_sharded_build(records, tmp_path):
    built = vecpipe("index", "build", "--shards", "3", "--lexical", "--engine", "ray", "--workers", "2", "-o", tmp_path / "ray.idx", records)
    assert built.returncode == 0, built.stderr
    assert built.stderr.decode().splitlines() == [f"vecpipe index build: built {tmp_path / 'ray.idx'}: 300 added; 300 records (3 shards)"]
    assert vecpipe("index", "build", "--shards", "3", "--lexical", "-o", tmp_path / "local.idx", records).returncode == 0
    query = json.dumps({"id": "q", "embedding": [1.0] * 8}).encode() + b"\n"
    found = [vecpipe("search", tmp_path / name, "--exact", "-k", "20", "--mode", "dense", stdin=query).stdout for name in ("ray.idx", "local.idx")]
    assert_same_hits(found[0], found[1])
    assert len(found[0].splitlines()) == 20
    lexical = [vecpipe("search", tmp_path / name, "doc 17", "--mode", "lexical", "-k", "3").stdout for name in ("ray.idx", "local.idx")]
    assert_same_hits(lexical[0], lexical[1])
    assert json.loads(lexical[0].splitlines()[0])["id"] == "d17"


def test_engine_ray_without_shards_is_refused_in_one_line(records, tmp_path):
    done = vecpipe("index", "build", "--engine", "ray", "-o", tmp_path / "x.idx", records)
    assert done.returncode == 2 and done.stdout == b"" and len(done.stderr.splitlines()) == 1
    assert b"--engine ray builds shards: give --shards N" in done.stderr and not (tmp_path / "x.idx").exists()
