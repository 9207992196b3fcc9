"""Security: no pickle anywhere, files from others opened without running code, and files
created with the user's umask.

`hf:` names are checked against path traversal in tests/core/models/test_registry.py
(test_hub_names_are_validated_against_path_traversal) and in the bad-input catalogue
(hub_name_climbing_out_of_the_cache).
"""
from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustness_support import REPO, unit_rows, vector_records
from vecpipe.core.index.vector_index import BuildOptions, build_index
from vecpipe.formats.vectors import read_matrix

PACKAGE = REPO / "vecpipe"
# Ways Python runs code hidden in data, or runs strings as code.
FORBIDDEN = re.compile(
    r"\bimport (c?pickle|dill|joblib|marshal|shelve)\b|\bfrom (c?pickle|dill|joblib|marshal|shelve) import"
    r"|\bpickle\.|allow_pickle\s*=\s*True|(?<![\w.])(eval|exec)\(|\btorch\.load\b|\byaml\.load\(|shell\s*=\s*True|\bos\.system\("
)


def package_lines():
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            yield f"{path.relative_to(REPO)}:{number}", line


def test_the_package_never_unpickles_nor_runs_strings_as_code():
    found = [f"{where}: {line.strip()}" for where, line in package_lines() if FORBIDDEN.search(line)]
    assert found == []


def test_every_np_load_refuses_pickles_explicitly():
    # numpy's default is safe today; saying it at each call keeps it safe if the default moves.
    calls = [(where, line) for where, line in package_lines() if "np.load(" in line]
    assert calls and [where for where, line in calls if "allow_pickle=False" not in line] == []


# --- files from others are data, never code ------------------------------------------------------


class Payload:
    """Unpickling this creates the marker file: proof that code from a file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def save_payload_npy(path: Path, marker: Path) -> None:
    np.save(path, np.array([[Payload(marker)]], dtype=object), allow_pickle=True)


def vecpipe(args: list, cwd: Path, env: dict | None = None, umask: int | None = None) -> subprocess.CompletedProcess:
    def set_umask() -> None:
        os.umask(umask)

    return subprocess.run([sys.executable, "-m", "vecpipe", *map(str, args)], cwd=cwd, capture_output=True, timeout=300,
                          env={**os.environ, **(env or {})}, preexec_fn=None if umask is None else set_umask)


@pytest.fixture
def docs(tmp_path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_bytes(vector_records(unit_rows(20, 16, seed=1), {"model": "toy", "dim": 16, "normalized": True}))
    return path


def test_a_poisoned_index_matrix_is_refused_without_running_it(tmp_path, docs):
    build_index(tmp_path / "idx", [read_matrix(str(docs))], BuildOptions(quantize="binary", keep_float=True))
    save_payload_npy(tmp_path / "idx" / "g000001" / "float.npy", tmp_path / "pwned")
    result = vecpipe(["search", "idx", "--rescore", "2", "-i", docs], tmp_path)
    assert result.returncode == 5 and b"float.npy does not match the sha256 in manifest.json" in result.stderr
    manifest = tmp_path / "idx" / "g000001" / "manifest.json"  # as an index from before the hashes: np.load itself refuses
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "files"}))
    result = vecpipe(["search", "idx", "--rescore", "2", "-i", docs], tmp_path)
    assert result.returncode == 5 and b"matrix file is unreadable" in result.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("args", [["quantize", "--to", "int8", "--calibration", "side.npz"], ["truncate", "--pca-file", "side.npz"]])
def test_a_poisoned_calibration_or_pca_file_is_refused_without_running_it(tmp_path, docs, args):
    payload = np.array([Payload(tmp_path / "pwned")], dtype=object)
    np.savez(tmp_path / "side.npz", ranges=payload, mean=payload, components=payload, allow_pickle=True)
    result = vecpipe([*args, docs], tmp_path)
    assert result.returncode == 3 and b"side.npz" in result.stderr
    assert not (tmp_path / "pwned").exists()


def test_poisoned_vectors_are_refused_without_running_them(tmp_path):
    save_payload_npy(tmp_path / "v.npy", tmp_path / "pwned")
    result = vecpipe(["index", "build", "-o", "idx", "v.npy"], tmp_path)
    assert result.returncode == 3 and b".npy holds object values" in result.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "idx").exists()


def test_a_checkpoint_is_read_from_safetensors_and_json_only(tmp_path, tiny_checkpoint):
    """A torch checkpoint is a pickle: one lying beside the safetensors is never opened, and
    without the safetensors the directory is refused rather than unpickled."""
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, checkpoint)
    (checkpoint / "pytorch_model.bin").write_bytes(_pickled(Payload(tmp_path / "pwned")))
    env = {"VECPIPE_HOME": str(tmp_path / "home")}
    assert vecpipe(["models", "path", checkpoint], tmp_path, env).returncode == 0
    (checkpoint / "model.safetensors").unlink()
    shutil.rmtree(tmp_path / "home")
    refused = vecpipe(["models", "path", checkpoint], tmp_path, env)
    assert refused.returncode == 4 and b"it lacks model.safetensors" in refused.stderr
    assert not (tmp_path / "pwned").exists()


def _pickled(value) -> bytes:
    # Built only to prove it is never read; the package itself must not import pickle.
    import pickle

    return pickle.dumps(value)


# --- the user's umask --------------------------------------------------------------------------


def test_everything_vecpipe_creates_respects_the_umask(tmp_path, tiny_checkpoint):
    """With umask 027, files come out 0640 and directories 0750, never wider (a leak) nor the
    0600/0700 of mkstemp and mkdtemp (which would break sharing with a group)."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (inputs / "texts.txt").write_text("first text\nsecond text\nthird text\n")
    pairs = [{"sentence1": "a cat", "sentence2": "a dog", "score": 1}, {"sentence1": "rain", "sentence2": "sun", "score": 3}]
    (inputs / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    env = {"VECPIPE_HOME": str(out / "home")}
    for args in (
        ["models", "path", tiny_checkpoint],  # the model cache
        ["embed", "-m", "tiny-bert", "-o", out / "vectors.jsonl", inputs / "texts.txt"],
        ["embed", "-m", "tiny-bert", "--format", "npy", "-o", out / "vectors.npy", inputs / "texts.txt"],
        ["index", "build", "-o", out / "idx", out / "vectors.jsonl"],
        ["index", "add", out / "idx", out / "vectors.npy"],
        ["index", "build", "-o", out / "flat.idx", "--quantize", "int8", "--keep-float", out / "vectors.jsonl"],
        ["quantize", "--to", "int8", "--save-calibration", out / "cal.npz", "-o", out / "q.jsonl", out / "vectors.jsonl"],
        ["truncate", "--pca", "2", "--fit", out / "vectors.jsonl", "--save", out / "pca.npz", "-o", out / "t.jsonl", out / "vectors.jsonl"],
        ["eval", "sts", "-m", "tiny-bert", "--pairs", inputs / "pairs.jsonl", "-o", out / "results"],  # and the embedding cache
    ):
        result = vecpipe(args, tmp_path, env, umask=0o027)
        assert result.returncode == 0, (args, result.stderr.decode())
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert {"home/models/tiny-bert/model.onnx", "idx/CURRENT", "flat.idx/g000001/float.npy", "vectors.meta.jsonl",
            "cal.npz", "pca.npz", "results/in.json"} <= set(modes)
    assert any(path.startswith("home/embeddings/") for path in modes)
    wrong = {path: oct(mode) for path, mode in modes.items() if mode != (0o750 if (out / path).is_dir() else 0o640)}
    assert wrong == {}
