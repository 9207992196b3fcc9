"""Model kinds: a model directory opens as the kind its manifest names, and a command that needs
another kind refuses it in one line."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import FIXTURES
from vecpipe.core.errors import ModelError
from vecpipe.core.models.convert import convert
from vecpipe.core.models.kinds import kind_of, open_model
from vecpipe.core.models.model import Model
from vecpipe.core.models.static import StaticModel


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("static")
    convert(FIXTURES / "families" / "static-st", out, "static-st")
    return out


def test_each_kind_opens_as_its_own_class(static_dir, tiny_model_dir):
    assert isinstance(open_model(static_dir), StaticModel) and isinstance(open_model(tiny_model_dir), Model)
    assert kind_of(json.loads((static_dir / "vecpipe.json").read_text())) == "static"
    assert kind_of(json.loads((tiny_model_dir / "vecpipe.json").read_text())) == "dense"  # written before kinds: read by architecture


def test_a_model_of_another_kind_than_asked_for_is_refused(static_dir):
    with pytest.raises(ModelError, match=r"model static-st is a static embedder; this needs a dense embedder"):
        open_model(static_dir, expect=("dense",))


def test_a_kind_this_vecpipe_does_not_know_is_refused_when_read(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    manifest = json.loads((copy / "vecpipe.json").read_text())
    (copy / "vecpipe.json").write_text(json.dumps({**manifest, "kind": "hologram"}))
    with pytest.raises(ModelError, match=r"manifest's kind 'hologram' is not one of dense, static"):
        open_model(copy)
