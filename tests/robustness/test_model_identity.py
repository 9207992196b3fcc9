"""Issue 18, class 4: a model is known by the hash of its weights, not only by its name. Two
checkpoints both called `model` (the `checkpoint-500` of two training runs) do not mix in one
index, and `search -m` refuses the other one; the same weights under another path are the same model."""
from __future__ import annotations

import json
import shutil

import numpy as np
from safetensors.numpy import load_file, save_file

from conftest import write_tiny_checkpoint
from robustness_support import assert_one_line_refusal, run_process


def two_runs(tmp_path):
    """run-a/model and run-b/model: one architecture, one name, different weights."""
    first = write_tiny_checkpoint(tmp_path / "run-a" / "model")
    second = shutil.copytree(first, tmp_path / "run-b" / "model")
    weights = load_file(str(second / "model.safetensors"))
    save_file({k: (v * np.float32(1.5)) if v.dtype.kind == "f" else v for k, v in weights.items()}, str(second / "model.safetensors"))
    return first, second


def test_vectors_of_a_same_named_other_checkpoint_are_refused_by_index_add_and_search(tmp_path):
    first, second = two_runs(tmp_path)
    env = {"VECPIPE_HOME": str(tmp_path / "home")}
    docs = b"red apples\ngreen pears\n"
    ours = run_process(["embed", "-q", "-m", first], docs, env=env)
    theirs = run_process(["embed", "-q", "-m", second], docs, env=env)
    assert ours.code == theirs.code == 0, ours.stderr + theirs.stderr
    prov_a, prov_b = (json.loads(o.stdout.splitlines()[0])["vecpipe"] for o in (ours, theirs))
    assert prov_a["model"] == prov_b["model"] == "model" and prov_a["weights_sha256"] != prov_b["weights_sha256"]
    index = tmp_path / "docs.idx"
    assert run_process(["index", "build", "-q", "-o", index], ours.stdout, env=env).code == 0
    added = run_process(["index", "add", "-q", index], theirs.stdout, env=env)
    assert_one_line_refusal(added, "index add", "<stdin>:1", "record weights_sha256", 3)
    searched = run_process(["search", index, "apples", "-m", second], env=env)
    assert_one_line_refusal(searched, "search", None, "query weights_sha256", 5)
    assert run_process(["search", index, "apples", "-m", first], env=env).code == 0


def test_the_same_weights_under_another_path_are_the_same_model(tmp_path):
    first = write_tiny_checkpoint(tmp_path / "a" / "model")
    copy = shutil.copytree(first, tmp_path / "elsewhere" / "model")
    env = {"VECPIPE_HOME": str(tmp_path / "home")}
    vectors = run_process(["embed", "-q", "-m", first], b"red apples\n", env=env)
    index = tmp_path / "docs.idx"
    assert run_process(["index", "build", "-q", "-o", index], vectors.stdout, env=env).code == 0
    shutil.rmtree(tmp_path / "home" / "models")  # converted afresh from the copy: another model_sha256, the same weights
    searched = run_process(["search", index, "apples", "-m", copy], env=env)
    assert searched.code == 0, searched.stderr
