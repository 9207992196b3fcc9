"""The lexical (BM25) part of an index: built with the vectors, kept in step by add and delete, validated on load."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vecpipe.core.errors import DataError, IndexStoreError, UsageError
from vecpipe.core.index.lexical import LEXICAL_DIR, LABELS_FILE, LexicalSettings, text_of
from vecpipe.core.index.store import current_generation
from vecpipe.core.index.vector_index import BuildOptions, VectorIndex, add_to_index, build_index, delete_from_index, index_info
from vecpipe.formats.vectors import VectorBatch

DIM = 8
PROVENANCE = {"model": "test-model", "model_sha256": "ab" * 32, "dim": DIM, "normalized": True}
DOCS = {
    "cat": {"title": "Cats", "text": "The cat sat on the mat and purred."},
    "dog": {"text": "Dogs are running in the park.", "lang": "en"},
    "dpkg": {"text": "dpkg -S finds the package that owns a file.", "lang": "en"},
    "tar": {"text": "tar -czf compresses a directory into an archive.", "lang": "de"},
}


def batch(docs: dict, seed: int = 0, source: str = "docs.jsonl") -> VectorBatch:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(len(docs), DIM)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return VectorBatch(list(docs), list(docs.values()), matrix, PROVENANCE, list(range(1, len(docs) + 1)), source)


@pytest.fixture
def index_dir(tmp_path):
    build_index(tmp_path / "idx", [batch(DOCS)], BuildOptions(lexical=LexicalSettings()))
    return tmp_path / "idx"


def lexical_ids(path, query: str, k: int = 10, **kw) -> list:
    with VectorIndex.open(path) as index:
        return [hit.id for hit in index.lexical_search([query], k, **kw).hits[0]]


def test_terms_are_stemmed_stopwords_dropped_and_titles_joined(index_dir):
    assert lexical_ids(index_dir, "run") == ["dog"]  # "running", stemmed
    assert lexical_ids(index_dir, "cats") == ["cat"]  # the title, joined in front of the text
    assert lexical_ids(index_dir, "the and of") == []  # stopwords only: nothing matches
    assert lexical_ids(index_dir, "dpkg -S") == ["dpkg"]  # an exact term that embeddings blur


def test_where_and_min_score_apply_to_lexical_hits(index_dir):
    assert lexical_ids(index_dir, "directory archive package", where=["lang=en"]) == ["dpkg"]
    with VectorIndex.open(index_dir) as index:
        scores = [hit.score for hit in index.lexical_search(["archive directory package"], 5).hits[0]]
        high = index.lexical_search(["archive directory package"], 5, min_score=max(scores)).hits[0]
    assert len(scores) == 2 and [hit.score for hit in high] == [max(scores)]


def test_settings_and_size_are_in_the_manifest_and_info(index_dir):
    info = index_info(index_dir)
    assert info["lexical"]["language"] == "english" and info["lexical"]["k1"] == 1.5 and info["lexical"]["documents"] == 4
    assert info["lexical"]["bytes_per_document"] > 0
    assert info["search_modes"] == ["dense", "lexical", "hybrid"] and info["default_mode"] == "hybrid"


def test_add_and_delete_keep_the_lexical_part_in_step(index_dir):
    add_to_index(index_dir, [batch({"zip": {"text": "zip packs files into an archive"}, "tar": {"text": "tar is replaced"}}, seed=1)])
    assert set(lexical_ids(index_dir, "archive")) == {"zip"}  # tar's old text is gone with its old record
    assert lexical_ids(index_dir, "replaced") == ["tar"]
    delete_from_index(index_dir, ["zip", "dog"])
    assert lexical_ids(index_dir, "archive") == [] and lexical_ids(index_dir, "running") == []
    assert index_info(index_dir)["lexical"]["documents"] == 3


def test_a_record_without_text_is_refused_with_its_line_and_nothing_changes(index_dir):
    before = sorted(p.name for p in index_dir.parent.iterdir())
    bad = batch({"x": {"text": "fine"}, "y": {"title": "no text field"}}, source="new.jsonl")
    with pytest.raises(DataError, match=r"^new.jsonl:2: record has no text in 'text'"):
        add_to_index(index_dir, [bad])
    assert sorted(p.name for p in index_dir.parent.iterdir()) == before
    assert index_info(index_dir)["count"] == 4


def test_lexical_mode_on_an_index_without_a_lexical_part_is_a_usage_error(tmp_path):
    build_index(tmp_path / "plain", [batch(DOCS)])
    with VectorIndex.open(tmp_path / "plain") as index, pytest.raises(UsageError, match="no lexical part"):
        index.lexical_search(["cat"])


@pytest.mark.parametrize("damage", ["truncated labels", "labels of another count", "missing bm25 file"])
def test_a_corrupt_lexical_part_is_an_index_error(index_dir, damage):
    folder = current_generation(index_dir) / LEXICAL_DIR
    if damage == "truncated labels":
        data = (folder / LABELS_FILE).read_bytes()
        (folder / LABELS_FILE).write_bytes(data[: len(data) - 9])
    elif damage == "labels of another count":
        np.save(folder / LABELS_FILE, np.arange(3, dtype=np.int64))
    else:
        next(folder.glob("*.index.json")).unlink()
    # The manifest's sha256 of each file refuses the damage at open; the lexical part's own checks
    # stand behind it for indexes written before files were hashed.
    with pytest.raises(IndexStoreError, match=str(folder.parent)):
        with VectorIndex.open(index_dir) as index:
            index.lexical_search(["cat"])
    manifest_path = folder.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["files"]
    manifest_path.write_text(json.dumps(manifest))
    with VectorIndex.open(index_dir) as index, pytest.raises(IndexStoreError, match=str(folder)):
        index.lexical_search(["cat"])


def test_text_is_chosen_as_embed_chooses_it():
    settings = LexicalSettings()
    assert text_of({"title": "T", "text": "body"}, settings) == "T body"
    assert text_of({"title": "T", "text": "body"}, LexicalSettings(join_title=False)) == "body"
    assert text_of({"summary": "s"}, LexicalSettings(field="summary")) == "s"
    assert text_of({"text": "   "}, settings) is None and text_of({"text": 3}, settings) is None


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError, match="no stemmer for 'klingon'"):
        LexicalSettings(language="klingon").check()
    with pytest.raises(UsageError, match="unknown BM25 method"):
        LexicalSettings(method="tfidf").check()
    LexicalSettings(language="klingon", stem=False).check()  # no stemming, no stopword list: plain terms


def test_manifest_settings_are_validated(index_dir):
    manifest_path = current_generation(index_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["lexical"]["k1"]
    manifest_path.write_text(json.dumps(manifest))
    with VectorIndex.open(index_dir) as index, pytest.raises(IndexStoreError, match="lexical settings are incomplete"):
        index.lexical_search(["cat"])
