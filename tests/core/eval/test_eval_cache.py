"""The embedding cache: a second evaluation embeds nothing, keys separate what must differ, and a
half-written shard is never read."""
from __future__ import annotations

import numpy as np
import pytest

from vecpipe.core.eval.embedding_cache import KEYS_SUFFIX, EmbeddingCache, cache_key
from vecpipe.core.eval.evaluation import Embedder
from vecpipe.core.models.model import Model

KEY = {"model": "m/odd name", "model_sha256": "ab" * 32, "pooling": "mean", "normalize": True, "prefix": "", "max_tokens": 256}


class CountingEmbedder:
    """A deterministic stand-in for a model: vectors from the text's length, every call recorded."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)


def test_second_lookup_embeds_nothing_and_returns_the_same_vectors(tmp_path):
    texts = ["alpha", "beta", "gamma delta"]
    embed = CountingEmbedder()
    first = EmbeddingCache(KEY, tmp_path).embed(texts, embed)
    again = EmbeddingCache(KEY, tmp_path)
    second = again.embed(texts, embed)
    assert len(embed.calls) == 1
    np.testing.assert_array_equal(first, second)
    assert (again.stats.hits, again.stats.embedded) == (3, 0)


def test_repeated_texts_are_embedded_once_and_returned_in_input_order(tmp_path):
    embed = CountingEmbedder()
    out = EmbeddingCache(KEY, tmp_path).embed(["aa", "b", "aa", "b", "aaa"], embed)
    assert sorted(embed.calls[0]) == ["aa", "aaa", "b"]
    np.testing.assert_array_equal(out[:, 0], [2, 1, 2, 1, 3])


def test_only_new_texts_are_embedded(tmp_path):
    embed = CountingEmbedder()
    EmbeddingCache(KEY, tmp_path).embed(["one", "two"], embed)
    cache = EmbeddingCache(KEY, tmp_path)
    out = cache.embed(["two", "three", "one"], embed)
    assert embed.calls[1] == ["three"]
    np.testing.assert_array_equal(out[:, 0], [3, 5, 3])
    assert (cache.stats.hits, cache.stats.embedded) == (2, 1)


@pytest.mark.parametrize("change", [{"prefix": "query: "}, {"max_tokens": 128}, {"model_sha256": "cd" * 32}, {"normalize": False}])
def test_anything_that_changes_a_vector_changes_the_directory(tmp_path, change):
    assert EmbeddingCache(KEY, tmp_path).dir != EmbeddingCache({**KEY, **change}, tmp_path).dir


def test_directory_name_is_safe_and_says_what_it_holds(tmp_path):
    cache = EmbeddingCache(KEY, tmp_path)
    cache.embed(["x"], CountingEmbedder())
    assert cache.dir.parent == tmp_path and cache.dir.name.startswith("m_odd_name-")
    assert '"prefix": ""' in (cache.dir / "key.json").read_text()


def test_a_shard_without_its_keys_file_is_ignored(tmp_path):
    """A writer killed between the vectors and the keys leaves an orphan .npy: it is never read."""
    embed = CountingEmbedder()
    cache = EmbeddingCache(KEY, tmp_path)
    cache.embed(["kept"], embed)
    (keys_file,) = cache.dir.glob("*" + KEYS_SUFFIX)
    keys_file.unlink()
    EmbeddingCache(KEY, tmp_path).embed(["kept"], embed)
    assert len(embed.calls) == 2


def test_files_are_plain_npy_without_pickles(tmp_path):
    cache = EmbeddingCache(KEY, tmp_path)
    cache.embed(["a", "b"], CountingEmbedder())
    for path in cache.dir.glob("*.npy"):
        np.load(path, allow_pickle=False)  # raises if anything needed unpickling


def test_model_embeddings_through_the_cache_match_direct_ones(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path))
    model = Model(tiny_model_dir)
    texts = ["a first document", "the second one, longer than the first", "a first document"]
    embedder = Embedder(model)
    cached = embedder.vectors(["0", "1", "2"], texts, "query", "test").matrix
    np.testing.assert_allclose(cached, model.embed(texts, prompt="query"), atol=1e-6)
    assert (embedder.embedded, embedder.cached) == (2, 0)
    again = Embedder(model)
    np.testing.assert_array_equal(again.vectors(["0", "1", "2"], texts, "query", "test").matrix, cached)
    assert (again.embedded, again.cached) == (0, 2)
    key = cache_key(model, model.prompt_prefix("query"), model.max_tokens, model.normalize)
    assert EmbeddingCache(key).dir.parent == tmp_path / "embeddings"
