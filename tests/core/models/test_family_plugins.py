"""A model family from another package, found through the `vecpipe.families` entry-point group:
a toy package (its dist-info and module laid out as pip installs them) adds the model_type
`toy-bert` by reusing BERT's body; a checkpoint of that type converts and embeds like BERT."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_tiny_checkpoint

TOY_MODULE = '''"""A toy model family: BERT's body under another model_type."""
from vecpipe.core.models.families import bert

MODEL_TYPES = ("toy-bert",)
ARCHITECTURES = ("ToyBertModel",)
KINDS = ("dense",)
GRAPH_FORMS = bert.GRAPH_FORMS
INPUTS = bert.INPUTS
position_offset = bert.position_offset
tensor_names = bert.tensor_names
body = bert.body
'''


def install_toy_family(site, module_source: str = TOY_MODULE):
    """The files pip lays down for a package `toy-family` declaring one vecpipe family."""
    (site / "toy_family").mkdir(parents=True)
    (site / "toy_family" / "__init__.py").write_text(module_source)
    info = site / "toy_family-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vecpipe.families]\ntoybert = toy_family\n")
    (info / "RECORD").write_text("")


def embed(checkpoint, site, home, texts: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VECPIPE_HOME": str(home), "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "vecpipe", "embed", "-q", "-m", str(checkpoint)], input=texts, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    bert = write_tiny_checkpoint(root / "tiny-bert")
    toy = root / "tiny-toy"
    shutil.copytree(bert, toy)
    config = json.loads((toy / "config.json").read_text())
    (toy / "config.json").write_text(json.dumps({**config, "model_type": "toy-bert", "architectures": ["ToyBertModel"]}))
    return root, bert, toy


def vectors(stdout: str) -> np.ndarray:
    return np.array([json.loads(line)["embedding"] for line in stdout.splitlines()])


def test_a_family_from_another_package_converts_and_embeds(checkpoints, tmp_path):
    root, bert, toy = checkpoints
    site = tmp_path / "site"
    install_toy_family(site)
    texts = "a toy family\nfound by its entry point\n"
    from_plugin = embed(toy, site, tmp_path / "home", texts)
    assert from_plugin.returncode == 0, from_plugin.stderr
    built_in = embed(bert, tmp_path / "empty", tmp_path / "home", texts)
    assert built_in.returncode == 0, built_in.stderr
    assert np.allclose(vectors(from_plugin.stdout), vectors(built_in.stdout), atol=1e-6)  # the same weights through the same body
    manifest = json.loads(next((tmp_path / "home" / "models").glob("tiny-toy*/vecpipe.json")).read_text())
    assert manifest["architecture"] == "toy-bert"


def test_without_the_package_the_model_type_is_refused_in_one_line(checkpoints, tmp_path):
    _, _, toy = checkpoints
    done = embed(toy, tmp_path / "empty", tmp_path / "home", "x\n")
    assert done.returncode == 4 and done.stdout == ""
    error = done.stderr.splitlines()[-1]  # after the notice that conversion starts
    assert error.startswith("vecpipe embed: ") and "model_type 'toy-bert' is not supported" in error and "Traceback" not in done.stderr


def test_a_broken_plugin_is_named_in_one_line(checkpoints, tmp_path):
    _, _, toy = checkpoints
    site = tmp_path / "site"
    install_toy_family(site, "MODEL_TYPES = ('toy-bert',)\n")
    done = embed(toy, site, tmp_path / "home", "x\n")
    assert done.returncode == 4 and done.stdout == ""
    error = done.stderr.splitlines()[-1]
    assert "model family plugin 'toybert' (toy_family) lacks ARCHITECTURES" in error and "Traceback" not in done.stderr
