"""Order restoration, token budgets and the over-length policies, on the tiny model."""
from __future__ import annotations

import numpy as np
import pytest

from vecpipe.core.models.batching import EmbedOptions, EmbedStats, embed_records, embed_texts, output_rows
from vecpipe.core.errors import DataError, UsageError
from vecpipe.core.models.model import Model, token_budget_batches
from vecpipe.formats.text import TextRecord


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return Model(tiny_model_dir)


def records(texts):
    return [TextRecord(f"r{i}", t, {"text": t}, i + 1) for i, t in enumerate(texts)]


def test_batches_respect_budget_and_cover_everything():
    lengths = np.array([5, 50, 7, 300, 12, 12, 90])
    groups = list(token_budget_batches(lengths, batch_tokens=400, max_batch=3))
    assert sorted(np.concatenate(groups).tolist()) == list(range(7))
    for g in groups:
        assert len(g) <= 3 and (len(g) == 1 or len(g) * lengths[g].max() <= 400)


def test_output_order_is_input_order_whatever_the_lengths(tiny):
    texts = ["word " * n for n in (30, 1, 12, 3, 25, 2)]
    together = embed_texts(tiny, texts, EmbedOptions(batch_tokens=64))
    one_by_one = np.concatenate([embed_texts(tiny, [t], EmbedOptions()) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_truncate_counts_and_matches_a_pre_cut_text(tiny):
    stats = EmbedStats()
    long = "alpha beta gamma " * 40  # 120 tokens, limit 64
    (window,) = embed_records(tiny, records([long, "short"]), EmbedOptions(), "t", stats)
    assert stats.truncated == 1
    ids = tiny.token_ids([long])[0][:62]
    cut = tiny.tokenizer.decode(ids)
    np.testing.assert_allclose(window.vectors[0], embed_texts(tiny, [cut], EmbedOptions())[0], atol=1e-5)


def test_error_policy_names_the_line(tiny):
    with pytest.raises(DataError, match="t:2: text has .* tokens, more than --max-tokens 64"):
        list(embed_records(tiny, records(["ok", "x " * 100]), EmbedOptions(on_long="error"), "t"))


def test_chunk_policy_gives_one_record_per_window_with_spans(tiny):
    text = " ".join(f"w{i}" for i in range(100))
    opts = EmbedOptions(on_long="chunk", overlap=8, max_tokens=32)
    stats = EmbedStats()
    (window,) = embed_records(tiny, records([text, "tiny text"]), opts, "t", stats)
    ids, fields, _ = output_rows(window)
    parents = [f["parent_id"] for f in fields]
    assert parents.count("r0") > 3 and parents.count("r1") == 1 and stats.chunks == len(ids)
    chunks = [f for f in fields if f["parent_id"] == "r0"]
    for a, b in zip(chunks, chunks[1:]):
        assert a["token_end"] - b["token_start"] == 8  # the overlap
        assert b["char_start"] < a["char_end"]
    assert all(text[c["char_start"] : c["char_end"]] == c["text"] for c in chunks)
    assert ids[0] == "r0#0" and window.vectors.shape == (len(ids), 32)


def test_chunk_mean_aggregate_gives_one_unit_vector_per_text(tiny):
    text = " ".join(f"w{i}" for i in range(100))
    opts = EmbedOptions(on_long="chunk", overlap=4, max_tokens=32, aggregate="mean")
    (window,) = embed_records(tiny, records([text, "small"]), opts, "t")
    assert window.vectors.shape == (2, 32) and window.pieces is None
    assert window.vectors.dtype == np.float32  # was float64 (int64 chunk counts), written as dtype float64 records
    np.testing.assert_allclose(np.linalg.norm(window.vectors, axis=1), 1, atol=1e-5)
    unnormalized = EmbedOptions(on_long="chunk", overlap=4, max_tokens=32, aggregate="mean", normalize=False)
    assert next(iter(embed_records(tiny, records([text]), unnormalized, "t"))).vectors.dtype == np.float32


def test_prompt_prefix_changes_vectors_and_unknown_prompt_is_refused(tiny):
    plain = tiny.embed(["cats"])
    assert not np.allclose(plain, tiny.embed(["cats"], prompt="query"))
    with pytest.raises(UsageError, match="no prompt named 'nope'"):
        tiny.embed(["cats"], prompt="nope")


def test_bad_options_are_usage_errors(tiny):
    for opts in (EmbedOptions(on_long="drop"), EmbedOptions(max_tokens=10_000), EmbedOptions(aggregate="mean")):
        with pytest.raises(UsageError):
            list(embed_records(tiny, records(["x"]), opts, "t"))
