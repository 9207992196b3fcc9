"""What a model is: the kinds of model vecpipe runs, and which class opens a model directory of each.

    dense    a transformer embedder run by onnxruntime: text -> one vector (model.py: Model)
    static   a static embedder, a table of token rows averaged (static.py: StaticModel)

A model directory's manifest names its kind (`kind`); manifests written before kinds existed are
read as `static` when their architecture is the static table, else `dense`. Every kind opens
through `open_model(model_dir, ...)` (or `load_model(-m NAME)`), and a command that needs one kind asks for it with
`expect=` and gets a one-line refusal naming both kinds otherwise. A kind to come (a cross-encoder
scoring pairs, a sparse or a multi-vector encoder) is one entry here and one class with that
contract; a family module (families/) lists in KINDS the kinds it can build.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vecpipe.core.errors import ModelError
from vecpipe.core.models import registry
from vecpipe.core.models.manifest import MANIFEST, read_manifest

if TYPE_CHECKING:
    from vecpipe.core.models.base import EmbeddingModel

EMBEDDERS = ("dense", "static")  # kinds that turn one text into one vector: embed, index, search


@dataclass(frozen=True)
class ModelKind:
    name: str
    description: str
    opener: Callable[[], type]  # the class, imported on first use


def _onnx_model() -> type:
    from vecpipe.core.models.model import Model

    return Model


def _static_model() -> type:
    from vecpipe.core.models.static import StaticModel

    return StaticModel


KINDS: dict[str, ModelKind] = {
    "dense": ModelKind("dense", "dense embedder", _onnx_model),
    "static": ModelKind("static", "static embedder", _static_model),
}


def kind_of(manifest: dict) -> str:
    """The kind a model manifest describes (checked by read_manifest)."""
    return manifest.get("kind") or ("static" if manifest.get("architecture") == "static" else "dense")


def open_model(model_dir: Path, threads: int | None = None, pooling: str | None = None, expect: tuple[str, ...] = EMBEDDERS) -> "EmbeddingModel":
    """The model in a verified model directory, as the kind its manifest names; refused in one
    line when that kind is not one of `expect`."""
    manifest = read_manifest(Path(model_dir))
    kind = kind_of(manifest)
    if kind not in expect:
        wanted = " or ".join(KINDS[k].description for k in expect)
        raise ModelError(f"model {manifest['name']} is a {KINDS[kind].description}; this needs a {wanted}", str(model_dir))
    return KINDS[kind].opener()(model_dir, threads=threads, pooling=pooling)


def load_model(name: str | None = None, *, layers: int | None = None, threads: int | None = None, pooling: str | None = None,
               notify: Callable[[str], None] | None = None, expect: tuple[str, ...] = EMBEDDERS) -> "EmbeddingModel":
    """The model `-m NAME` names (registry.resolve: a directory, a cached name, a checkpoint, hf:),
    converted on first use, verified, and opened as its kind."""
    model_dir = registry.resolve(name, layers=layers, notify=notify or (lambda _: None))
    return open_model(model_dir, threads=threads, pooling=pooling, expect=expect)


def find_manifest(name: str | None) -> dict | None:
    """The manifest of an already available model, without converting anything (for warnings)."""
    try:
        path = Path(name or "").expanduser()
        if (path / MANIFEST).exists():
            return read_manifest(path)
        cached = registry.cache_path(registry.ALIASES.get(name or registry.DEFAULT_MODEL, name or registry.DEFAULT_MODEL))
        return read_manifest(cached) if (cached / MANIFEST).exists() else None
    except ModelError:
        return None
