"""A model opened light (no weight prepacking, as a one-off search opens it) gives the vectors
a normally opened one gives."""
from __future__ import annotations

import numpy as np
import pytest

from vecpipe.core.models.model import Model

TEXTS = ["how do I copy files to another machine", "a man is playing a guitar", "x"]


def test_a_model_opened_without_prepacking_gives_the_same_vectors(default_model_dir):
    packed, light = Model(default_model_dir), Model(default_model_dir)
    light.prepack_weights = False
    a, b = packed.embed(TEXTS), light.embed(TEXTS)
    assert light.session.get_session_options().get_session_config_entry("session.disable_prepacking") == "1"
    with pytest.raises(RuntimeError):  # never set: onnxruntime prepacks
        packed.session.get_session_options().get_session_config_entry("session.disable_prepacking")
    assert np.allclose(a, b, atol=1e-5) and ((a * b).sum(1) > 0.99999).all()
