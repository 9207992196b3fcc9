"""`index build --shards N --engine ray`: shards built by Ray tasks from spilled rows equal the
local sharded build (same routing, same exact hits, same stored fields); the spill keeps every
row's input file and line; a shard that no record reaches still builds."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vecpipe.core.index.ray_build import _spill, _spilled_batches, build_sharded_on_ray
from vecpipe.core.index.shards import ShardedIndex, build_sharded, sharded_info
from vecpipe.formats.vectors import VectorBatch

PROVENANCE = {"dim": 8, "normalized": False}


def batch(ids, source, first_line, seed=0):
    rng = np.random.default_rng(seed)
    lines = list(range(first_line, first_line + len(ids)))
    return VectorBatch(list(ids), [{"n": i, "note": f"from {source}"} for i in ids], rng.normal(size=(len(ids), 8)).astype(np.float32),
                       PROVENANCE, lines, source)


def test_the_spill_gives_back_every_row_with_its_input_file_and_line(tmp_path):
    inputs = [batch(range(0, 5), "a.jsonl", 1), batch(range(5, 8), "a.jsonl", 6, seed=1), batch(range(8, 12), "b.jsonl", 1, seed=2)]
    spill = _spill(tmp_path / "spill", iter(inputs))
    back = list(_spilled_batches(spill))
    assert [(b.source, b.lines) for b in back] == [("a.jsonl", [1, 2, 3, 4, 5, 6, 7, 8]), ("b.jsonl", [1, 2, 3, 4])]
    assert [i for b in back for i in b.ids] == list(range(12))
    assert [f for b in back for f in b.fields] == [f for b in inputs for f in b.fields]
    assert np.array_equal(np.concatenate([b.matrix for b in back]), np.concatenate([b.matrix for b in inputs]))


ray = pytest.importorskip("ray")


@pytest.mark.slow  # starts a local Ray cluster
def test_shards_built_on_ray_equal_the_local_sharded_build(tmp_path):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(600, 8)).astype(np.float32)

    def batches():
        for start in range(0, 600, 100):
            ids = [f"doc-{i}" for i in range(start, start + 100)]
            yield VectorBatch(ids, [{"n": i} for i in range(start, start + 100)], vectors[start : start + 100], PROVENANCE,
                              list(range(start + 1, start + 101)), "docs.jsonl")

    on_ray = build_sharded_on_ray(tmp_path / "ray.idx", batches(), 4, workers=2)
    local = build_sharded(tmp_path / "local.idx", batches(), 4)
    assert on_ray.count == local.count == 600
    assert sharded_info(tmp_path / "ray.idx")["shard_counts"] == sharded_info(tmp_path / "local.idx")["shard_counts"]
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    with ShardedIndex.open(tmp_path / "ray.idx") as a, ShardedIndex.open(tmp_path / "local.idx") as b:
        hits_a, hits_b = a.search(queries, 10, exact=True).hits, b.search(queries, 10, exact=True).hits
    assert [[(h.id, h.fields) for h in row] for row in hits_a] == [[(h.id, h.fields) for h in row] for row in hits_b]
    assert not [p for p in tmp_path.iterdir() if p.name not in ("ray.idx", "local.idx")]  # no staging or spill left behind


@pytest.mark.slow
def test_a_shard_no_record_reaches_still_builds(tmp_path):
    built = build_sharded_on_ray(tmp_path / "few.idx", iter([batch(["only-one"], "one.jsonl", 1)]), 3, workers=1)
    info = sharded_info(tmp_path / "few.idx")
    assert built.count == 1 and sorted(info["shard_counts"]) == [0, 0, 1]
    with ShardedIndex.open(tmp_path / "few.idx") as index:
        assert [h.id for h in index.search(np.ones((1, 8), np.float32), 5).hits[0]] == ["only-one"]
    assert json.loads((tmp_path / "few.idx" / "SHARDS.json").read_text())["shards"] == 3
