"""Issue 18, class 9: a model directory the user names is checked, not trusted. A broken
tokenizer.json (with its hash updated, as a user rewriting files would), a manifest whose dim
does not match the graph, and missing or mistyped manifest keys each give one line and exit 4.
Also: a bug inside a command is one line and exit 1, never a traceback, unless VECPIPE_DEBUG=1."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from robustness_support import assert_one_line_refusal, run_in_process, run_process


@pytest.fixture
def user_model(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "my-model")


def rewrite(model_dir, change) -> None:
    manifest = json.loads((model_dir / "vecpipe.json").read_text())
    change(manifest)
    (model_dir / "vecpipe.json").write_text(json.dumps(manifest))


def rehash(model_dir, name: str) -> None:
    digest = hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
    rewrite(model_dir, lambda m: m["files"].update({name: digest}))


@pytest.mark.parametrize("damage, problem", [
    (lambda d: ((d / "tokenizer.json").write_text('{"broken'), rehash(d, "tokenizer.json")), "not a usable tokenizer"),
    (lambda d: ((d / "tokenizer.json").write_text("[]"), rehash(d, "tokenizer.json")), "not a usable tokenizer"),
    (lambda d: (d / "tokenizer.json").write_text("{}"), "tokenizer.json does not match the sha256"),
    (lambda d: rewrite(d, lambda m: m.update(dim=100)), "the graph gives vectors of 32 dimensions but vecpipe.json says 100"),
    (lambda d: rewrite(d, lambda m: m.pop("dim")), "manifest lacks the key 'dim'"),
    (lambda d: rewrite(d, lambda m: m.update(max_tokens="256")), "manifest key 'max_tokens' should be int"),
    (lambda d: rewrite(d, lambda m: m.update(pooling="median")), "pooling 'median' is not one of"),
    (lambda d: rewrite(d, lambda m: m.update(prompts={"query": 5})), "prompts must map names to strings"),
    (lambda d: (d / "vecpipe.json").write_text("[1, 2]"), "manifest is not a JSON object"),
    (lambda d: (d / "model.onnx.data").write_bytes(b"x" * 10), "model.onnx.data does not match the sha256"),
    (lambda d: rewrite(d, lambda m: m.update(source_sha256="x")), "manifest key 'source_sha256' should be dict"),
    (lambda d: rewrite(d, lambda m: m.update(source_sha256={"model.safetensors": 5})), "source_sha256 must map file names to sha256 digests"),
    (lambda d: rewrite(d, lambda m: m.update(max_position_embeddings=None)), "manifest key 'max_position_embeddings' should be int"),
    (lambda d: rewrite(d, lambda m: m.update(max_position_embeddings=0)), "max_tokens and max_position_embeddings must be positive"),
    (lambda d: rewrite(d, lambda m: m.update(dim=10**12)), "manifest's dim 1000000000000 is beyond any embedder's"),
    (lambda d: rewrite(d, lambda m: m.update(kind="cross-encoder")), "manifest's kind 'cross-encoder' is not one of dense, static"),
])
def test_a_damaged_user_model_directory_is_one_line_exit_4(user_model, damage, problem):
    damage(user_model)
    outcome = run_process(["embed", "-m", user_model, "-q"], b"hello world\n")
    assert_one_line_refusal(outcome, "embed", None, problem, 4)
    assert outcome.stdout == b""


def test_a_bug_inside_a_command_is_one_line_and_exit_1_unless_debugging(monkeypatch):
    from vecpipe.core.vectors import truncate

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(truncate, "truncate_batch", broken)  # truncate imports it when it runs
    vector = b'{"id": 1, "embedding": [0.5, 0.5, 0.5, 0.5]}\n'
    monkeypatch.delenv("VECPIPE_DEBUG", raising=False)
    outcome = run_in_process(["truncate", "--dim", "2"], vector)
    assert_one_line_refusal(outcome, "truncate", None, "internal error (ZeroDivisionError: a bug); this is a bug in vecpipe", 1)
    monkeypatch.setenv("VECPIPE_DEBUG", "1")
    assert isinstance(run_in_process(["truncate", "--dim", "2"], vector).crashed, ZeroDivisionError)


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(static=[1]), "manifest key 'static' should be an object, not list"),
    (lambda m: m["static"].update(median_token_chars="x"), "static median_token_chars should be null or an integer of at least 1, not 'x'"),
    (lambda m: m["static"].update(drop_token_id=-1), "static drop_token_id should be null or an integer of at least 0, not -1"),
])
def test_a_damaged_static_model_manifest_is_one_line_exit_4(tmp_path, change, problem):
    from conftest import FIXTURES
    from vecpipe.core.models.convert import convert

    model_dir = tmp_path / "static"
    model_dir.mkdir()
    convert(FIXTURES / "families" / "static-model2vec", model_dir, "static-model2vec")
    rewrite(model_dir, change)
    outcome = run_process(["embed", "-m", model_dir, "-q"], b"hello world\n")
    assert_one_line_refusal(outcome, "embed", None, problem, 4)
    assert outcome.stdout == b""
