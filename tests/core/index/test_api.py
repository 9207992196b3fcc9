"""The index front door: one index and a sharded one answer the same calls the same way."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_same_ranking
from vecpipe.core.errors import IndexStoreError, UsageError
from vecpipe.core.index import api
from vecpipe.core.vector_batch import VectorBatch

PROVENANCE = {"model": "toy", "dim": 16, "normalized": True}


def batch(start: int, stop: int, seed: int = 0) -> VectorBatch:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(stop, 16)).astype(np.float32)[start:stop]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(start, stop)]
    return VectorBatch(ids, [{"n": i} for i in range(start, stop)], vectors, PROVENANCE, list(range(1, stop - start + 1)), "toy")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    api.build(root / "one", [batch(0, 300)])
    api.build(root / "sharded", [batch(0, 300)], shard_count=3)
    return root


@pytest.mark.parametrize("name", ["one", "sharded"])
def test_every_index_opens_as_the_same_protocol(built, name):
    assert api.exists(built / name) and not api.exists(built / "missing")
    assert api.is_sharded(built / name) == (name == "sharded")
    with api.open_index(built / name) as index:
        assert isinstance(index, api.Index)
        assert (index.count, index.kind, index.keeps_float, index.has_lexical) == (300, "hnsw", False, False)
        assert index.provenance == api.provenance(built / name) == PROVENANCE
    details = api.info(built / name)
    assert details["count"] == 300 and details["kind"] == "hnsw" and ("shards" in details) == (name == "sharded")


def test_one_and_sharded_give_the_same_exact_hits(built):
    queries = batch(0, 5, seed=1).matrix
    found = []
    for name in ("one", "sharded"):
        with api.open_index(built / name) as index:
            hits = index.search(queries, 10, exact=True).hits
        found.append([[(h.id, h.score, h.fields["n"]) for h in row] for row in hits])
    for a, b in zip(*found):
        assert_same_ranking(a, b)


@pytest.mark.parametrize("name", ["one", "sharded"])
def test_add_delete_and_build_or_add_go_where_the_index_is(tmp_path, name):
    path = tmp_path / name
    api.build(path, [batch(0, 50)], shard_count=3 if name == "sharded" else 0)
    report = api.add(path, [batch(40, 60)])
    assert (report.added, report.replaced, report.count) == (10, 10, 60)
    report = api.delete(path, ["d1", "d2", "nope"])
    assert (report.deleted, report.missing, report.count) == (2, ["nope"], 58)
    assert api.build_or_add(path, [batch(60, 61)]).count == 59
    assert api.build_or_add(tmp_path / "new", [batch(0, 3)]).count == 3 and not api.is_sharded(tmp_path / "new")


def test_the_engine_and_shard_count_are_checked_before_anything_is_read(tmp_path):
    def never():
        raise AssertionError("read")
        yield

    with pytest.raises(UsageError, match="--engine must be local or ray"):
        api.build(tmp_path / "x", never(), engine="spark")
    with pytest.raises(UsageError, match="--engine ray builds shards"):
        api.build(tmp_path / "x", never(), engine="ray")
    with pytest.raises(IndexStoreError):
        api.open_index(tmp_path / "missing")
