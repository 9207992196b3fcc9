"""Sharded indexes: records routed by a stable hash of their id, search fanned out and merged.
SciFact's corpus and queries, embedded with the tiny random BERT (fast; the vectors' quality does
not matter to these checks): --exact over 4 shards equals the single index's --exact, approximate
search keeps >= 0.99 of exact recall, and add/delete touch only the shards the ids hash to."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import SHARED_DATA, assert_same_ranking
from vecpipe.core.errors import IndexStoreError, UsageError
from vecpipe.core.index.shards import ShardedIndex, add_sharded, build_sharded, delete_sharded, shard_of, sharded_info
from vecpipe.core.index.vector_index import BuildOptions, VectorIndex, build_index
from vecpipe.formats.vectors import VectorBatch

SHARDS = 4


@pytest.fixture(scope="module")
def scifact(tiny_model_dir):
    from vecpipe.core.models.model import Model

    model = Model(tiny_model_dir)
    docs = [json.loads(line) for line in open(SHARED_DATA / "scifact" / "corpus.jsonl", encoding="utf-8")]
    queries = [json.loads(line)["text"] for line in open(SHARED_DATA / "scifact" / "queries.jsonl", encoding="utf-8")][:300]
    texts = [(d["title"] + " " + d["text"]).strip() for d in docs]
    return [d["_id"] for d in docs], model.embed(texts), model.embed(queries), model.provenance()


def batches(ids, vectors, provenance, size=1000):
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        yield VectorBatch(list(chunk), [{"n": i} for i in range(start, start + len(chunk))], vectors[start : start + size], provenance,
                          list(range(start + 1, start + len(chunk) + 1)), "scifact")


@pytest.fixture(scope="module")
def built(scifact, tmp_path_factory):
    ids, vectors, _, provenance = scifact
    root = tmp_path_factory.mktemp("shards")
    build_index(root / "single", batches(ids, vectors, provenance))
    report = build_sharded(root / "sharded", batches(ids, vectors, provenance), SHARDS)
    assert report.count == len(ids) == report.added
    return root


def test_every_record_is_in_exactly_the_shard_its_id_hashes_to(built, scifact):
    ids = scifact[0]
    info = sharded_info(built / "sharded")
    assert info["count"] == len(ids) and info["shards"] == SHARDS
    expected = np.bincount([shard_of(i, SHARDS) for i in ids], minlength=SHARDS).tolist()
    assert info["shard_counts"] == expected and min(expected) > 0
    assert shard_of("doc-7", 4) == shard_of("doc-7", 4) and shard_of(7, 1000) != shard_of("7", 1000)  # stable; 7 and "7" differ


def test_exact_search_over_shards_equals_the_single_index(built, scifact):
    _, _, queries, provenance = scifact
    with VectorIndex.open(built / "single") as single, ShardedIndex.open(built / "sharded") as sharded:
        one = single.search(queries, 10, provenance=provenance, exact=True).hits
        many = sharded.search(queries, 10, provenance=provenance, exact=True).hits
    for a, b in zip(one, many):
        assert [h.id for h in a] == [h.id for h in b]
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
        assert [h.rank for h in b] == list(range(1, 11))


def test_filters_min_score_and_k_beyond_a_shard_merge_like_the_single_index(built, scifact):
    """--where, --min-score and a k larger than any shard (shards pad their lists) give the single
    index's exact hits, with the stored fields of the winners read from their own shards."""
    _, _, queries, provenance = scifact
    with VectorIndex.open(built / "single") as single, ShardedIndex.open(built / "sharded") as sharded:
        k = max(sharded_info(built / "sharded")["shard_counts"]) + 50
        for options in ({"where": ["n<400"]}, {"min_score": 0.5}, {}):
            one = single.search(queries[:20], k, provenance=provenance, exact=True, **options).hits
            many = sharded.search(queries[:20], k, provenance=provenance, exact=True, **options).hits
            for a, b in zip(one, many):  # the same hits in the same order, but for equal scores (duplicate texts)
                assert_same_ranking([(h.id, h.score, h.fields["n"]) for h in a], [(h.id, h.score, h.fields["n"]) for h in b], atol=1e-5)
            assert all([h.rank for h in row] == list(range(1, len(row) + 1)) for row in many)
        assert {len(row) for row in many} == {k} and all(len({h.id for h in row}) == k for row in many)  # unfiltered: k distinct hits


def test_approximate_search_over_shards_keeps_recall(built, scifact):
    _, _, queries, provenance = scifact
    with ShardedIndex.open(built / "sharded") as sharded:
        exact = sharded.search(queries, 10, provenance=provenance, exact=True).hits
        approximate = sharded.search(queries, 10, provenance=provenance).hits
    found = sum(len({h.id for h in a} & {h.id for h in e}) for a, e in zip(approximate, exact))
    assert found / (10 * len(queries)) >= 0.99


def test_add_and_delete_route_ids_to_their_shard(tmp_path, scifact):
    ids, vectors, _, provenance = scifact
    root = tmp_path / "idx"
    build_sharded(root, batches(ids[:200], vectors[:200], provenance), SHARDS)
    before = sharded_info(root)["shard_counts"]
    report = add_sharded(root, batches(ids[150:260], vectors[150:260], provenance))
    assert (report.added, report.replaced, report.count) == (60, 50, 260)
    target = shard_of(ids[5], SHARDS)
    untouched = [d for i, d in enumerate(sorted(root.glob("s0*"))) if i != target]
    generations = {d: (d / "CURRENT").read_text() for d in untouched}
    deleted = delete_sharded(root, [ids[5], "no-such-id"])
    assert deleted.deleted == 1 and deleted.missing == ["no-such-id"] and deleted.count == 259
    assert {d: (d / "CURRENT").read_text() for d in untouched} == generations  # only the id's own shard was rewritten
    after = sharded_info(root)["shard_counts"]
    assert sum(after) == 259 and after != before


def test_sharded_options_that_would_differ_per_shard_are_refused(tmp_path, scifact):
    ids, vectors, _, provenance = scifact
    with pytest.raises(UsageError, match="needs --calibration"):
        build_sharded(tmp_path / "b", batches(ids[:50], vectors[:50], provenance), 2, BuildOptions(quantize="int8"))
    build_sharded(tmp_path / "c", batches(ids[:50], vectors[:50], provenance), 2)
    with pytest.raises(IndexStoreError, match="already exists"):
        build_sharded(tmp_path / "c", batches(ids[:50], vectors[:50], provenance), 2)
    (tmp_path / "c" / "SHARDS.json").write_text('{"shards": "two"}')
    with pytest.raises(IndexStoreError, match="no valid shard count"):
        ShardedIndex.open(tmp_path / "c")


@pytest.mark.parametrize("layout, problem", [
    ({"format_version": "1"}, "format_version '1' is not a version number"),
    ({"format_version": None}, "format_version None is not a version number"),
    ({"format_version": True}, "format_version True is not a version number"),
    ({"format_version": 2}, "from a newer vecpipe"),
    ({"router": "modulo"}, "routes ids by 'modulo', not 'sha256-id-key'"),
    ({"router": ["sha256-id-key"]}, "routes ids by ['sha256-id-key']"),
])
def test_a_shard_layout_with_a_wrong_field_is_refused(tmp_path, scifact, layout, problem):
    ids, vectors, _, provenance = scifact
    build_sharded(tmp_path / "c", batches(ids[:50], vectors[:50], provenance), 2)
    (tmp_path / "c" / "SHARDS.json").write_text(json.dumps({"format_version": 1, "shards": 2, "router": "sha256-id-key", **layout}))
    with pytest.raises(IndexStoreError, match=re.escape(problem)):
        ShardedIndex.open(tmp_path / "c")


# --- lexical parts: one per shard ------------------------------------------------------------


def qrels_and_queries() -> tuple[list[str], list[str], dict]:
    qrels: dict[str, dict[str, int]] = {}
    for line in (SHARED_DATA / "scifact" / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query, doc, relevance = line.split()
        qrels.setdefault(query, {})[doc] = int(relevance)
    queries = {r["_id"]: r["text"] for r in map(json.loads, open(SHARED_DATA / "scifact" / "queries.jsonl", encoding="utf-8"))}
    judged = [q for q in queries if q in qrels]
    return judged, [queries[q] for q in judged], qrels


def ndcg_at_10(ranked: list[list[str]], judged: list[str], qrels: dict) -> float:
    def dcg(gains) -> float:
        return sum(g / np.log2(i + 2) for i, g in enumerate(gains[:10]))

    return float(np.mean([dcg([qrels[q].get(d, 0) for d in docs]) / dcg(sorted(qrels[q].values(), reverse=True))
                          for q, docs in zip(judged, ranked)]))


@pytest.fixture(scope="module")
def lexical_built(scifact, tmp_path_factory):
    """SciFact with its text, as one index and as 4 shards, each with a lexical part."""
    from vecpipe.core.index.lexical import LexicalSettings

    ids, vectors, _, provenance = scifact
    docs = {d["_id"]: d for d in map(json.loads, open(SHARED_DATA / "scifact" / "corpus.jsonl", encoding="utf-8"))}

    def with_text():
        for batch in batches(ids, vectors, provenance):
            yield VectorBatch(batch.ids, [{**f, "title": docs[i]["title"], "text": docs[i]["text"]} for i, f in zip(batch.ids, batch.fields)],
                              batch.matrix, batch.provenance, batch.lines, batch.source)

    root = tmp_path_factory.mktemp("lexical-shards")
    options = BuildOptions(lexical=LexicalSettings())
    build_index(root / "single", with_text(), options)
    build_sharded(root / "sharded", with_text(), SHARDS, options)
    return root


def test_lexical_search_over_shards_merges_each_shards_bm25_and_keeps_scifacts_quality(lexical_built):
    """Each shard scores with its own term statistics (Elasticsearch's default): the merged list is
    every shard's own top k, ordered by score, and SciFact's nDCG@10 stays within 0.01 of one index."""
    judged, texts, qrels = qrels_and_queries()
    with VectorIndex.open(lexical_built / "single") as single, ShardedIndex.open(lexical_built / "sharded") as sharded:
        assert sharded.has_lexical and sharded.lexical_settings == single.lexical_settings
        one = single.lexical_search(texts, 10).hits
        many = sharded.lexical_search(texts, 10).hits
        own = [shard.lexical_search(texts, 10).hits for shard in sharded.shards]
    for row, hits in enumerate(many):
        union = sorted(((h.score, h.id) for shard_hits in own for h in shard_hits[row]), reverse=True)[:10]
        assert [(round(h.score, 5), h.id) for h in hits] == [(round(score, 5), i) for score, i in union]
    single_ndcg = ndcg_at_10([[h.id for h in row] for row in one], judged, qrels)
    sharded_ndcg = ndcg_at_10([[h.id for h in row] for row in many], judged, qrels)
    assert single_ndcg > 0.6 and abs(sharded_ndcg - single_ndcg) <= 0.01, (single_ndcg, sharded_ndcg)
    assert sharded_info(lexical_built / "sharded")["lexical"]["documents"] == 5183


def test_hybrid_search_over_shards_fuses_the_sharded_lists(lexical_built, scifact):
    from vecpipe.core.retrieval.fusion import fuse
    from vecpipe.core.retrieval.modes import FUSION_DEPTH, ModeRequest, search

    _, _, queries, provenance = scifact
    _, texts, _ = qrels_and_queries()
    texts, queries = texts[:30], queries[:30]
    with ShardedIndex.open(lexical_built / "sharded") as sharded:
        hybrid = search(sharded, ModeRequest("hybrid", k=10), texts, queries, provenance).hits
        dense = sharded.search(queries, FUSION_DEPTH, provenance=provenance).hits
        lexical = sharded.lexical_search(texts, FUSION_DEPTH).hits
    for fused, d, l in zip(hybrid, dense, lexical):
        expected = fuse({"dense": [(h.id, h.score) for h in d], "lexical": [(h.id, h.score) for h in l]})[:10]
        assert [(h.id, h.ranks) for h in fused] == [(doc, ranks) for doc, _, ranks in expected]
        assert np.allclose([h.score for h in fused], [score for _, score, _ in expected])


def test_add_and_delete_keep_each_shards_lexical_part_in_step(tmp_path, scifact):
    from vecpipe.core.index.lexical import LexicalSettings

    ids, vectors, _, provenance = scifact
    root = tmp_path / "idx"

    def texts(start, end, word):
        return VectorBatch(ids[start:end], [{"text": f"{word} record {i}"} for i in range(start, end)], vectors[start:end], provenance,
                           list(range(1, end - start + 1)), "docs")

    build_sharded(root, [texts(0, 40, "ordinary")], SHARDS, BuildOptions(lexical=LexicalSettings()))
    add_sharded(root, [texts(40, 45, "zeppelin")])
    delete_sharded(root, [ids[41]])
    with ShardedIndex.open(root) as sharded:
        hits = sharded.lexical_search(["zeppelin"], 10).hits[0]
    assert sorted(h.id for h in hits) == sorted(ids[i] for i in (40, 42, 43, 44))
    assert sharded_info(root)["lexical"]["documents"] == 44


def test_the_cli_builds_searches_adds_and_deletes_a_sharded_index(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from vecpipe.cli import app

    runner = CliRunner()
    texts = "".join(json.dumps({"id": f"d{i}", "text": f"document {i} about {w}"}) + "\n" for i, w in enumerate(["cats", "rivers", "bread", "owls", "salt", "maps"] * 5))
    vectors = runner.invoke(app, ["embed", "-q", "-m", str(tiny_model_dir)], texts).stdout
    index = str(tmp_path / "s.idx")
    assert runner.invoke(app, ["index", "build", "-q", "-o", index, "--shards", "3"], vectors).exit_code == 0
    own_vector = vectors.splitlines()[4]  # d4's record: its own nearest neighbour
    hit = runner.invoke(app, ["search", index, "-k", "1", "--exact"], own_vector)
    assert hit.exit_code == 0, hit.output
    assert json.loads(hit.stdout)["id"] == "d4"
    assert runner.invoke(app, ["search", index, "document 4 about salt", "-k", "2", "-m", str(tiny_model_dir)]).exit_code == 0
    assert runner.invoke(app, ["index", "delete", "-q", index, "--id", "d4"]).exit_code == 0
    again = runner.invoke(app, ["search", index, "-k", "1", "--exact"], own_vector)
    assert json.loads(again.stdout)["id"] != "d4"
    info = json.loads(runner.invoke(app, ["index", "info", index]).stdout)
    assert info["count"] == 29 and info["shards"] == 3
    refused = runner.invoke(app, ["search", index, "salt", "--mode", "hybrid", "-m", str(tiny_model_dir)])
    assert refused.exit_code == 2 and "lexical part" in refused.stderr


def test_a_shard_that_no_record_reaches_builds_empty(tmp_path):
    """Its writer stages only the first, empty batch (hnswlib refused an empty add, and the error,
    raised after the shard's stream had ended, left the router waiting forever)."""
    only = VectorBatch(["only-one"], [{}], np.ones((1, 8), np.float32), {"dim": 8, "normalized": False}, [1], "one.jsonl")
    report = build_sharded(tmp_path / "few.idx", iter([only]), 3)
    assert report.count == 1 and sorted(sharded_info(tmp_path / "few.idx")["shard_counts"]) == [0, 0, 1]
    with ShardedIndex.open(tmp_path / "few.idx") as index:
        assert [h.id for h in index.search(np.ones((1, 8), np.float32), 5).hits[0]] == ["only-one"]
