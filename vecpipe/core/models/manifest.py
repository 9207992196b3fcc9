"""A model directory's files and its manifest, `vecpipe.json`, read through one validating loader.

Every reader of a model directory (the registry, a loaded Model, the int8 optimizer) goes
through `read_manifest`, so a hand-edited or truncated manifest is one ModelError (exit 4)
naming the file, never a KeyError traceback or a silently wrong vector.
"""
from __future__ import annotations

import json
from pathlib import Path

from vecpipe.core.errors import ModelError
from vecpipe.core.hashing import sha256_file

MANIFEST = "vecpipe.json"
MANIFEST_VERSION = 1
GRAPH_FILE = "model.onnx"
# The weights live beside the graph: onnxruntime maps this file instead of parsing 90 MB of
# protobuf, which took a session 150 ms to open rather than 55 ms (every process start pays it).
WEIGHTS_FILE = "model.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
MODEL_DIR_FILES = (GRAPH_FILE, WEIGHTS_FILE, TOKENIZER_FILE)
POOLINGS = ("mean", "cls", "max", "last")

# key -> (accepted types, required). bool is excluded from the int checks below.
_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "dim": ((int,), True),
    "pooling": ((str,), True),
    "max_tokens": ((int,), True),
    "normalize": ((bool,), False),
    "prompts": ((dict,), False),
    "default_prompt": ((str, type(None)), False),
    "matryoshka_dims": ((list, type(None)), False),
    "num_layers": ((int,), False),
    "layers": ((int,), False),
    "variant": ((str,), False),
    "files": ((dict,), False),
    "dense": ((list,), False),
    "kind": ((str,), False),
    "source_sha256": ((dict,), False),
    "max_position_embeddings": ((int,), False),
}
MAX_DIM = 1 << 20  # far above any embedder's width; a larger one is a damaged manifest, not a model
MODEL_KINDS = ("dense", "static")  # kinds.py opens each


def read_manifest(model_dir: Path) -> dict:
    """The manifest of `model_dir`, checked against the schema above."""
    path = model_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"not a vecpipe model directory (no {MANIFEST})", str(model_dir)) from None
    except (ValueError, UnicodeDecodeError):
        raise ModelError("manifest is not valid JSON", str(path)) from None
    except OSError as exc:
        raise ModelError(f"cannot read the manifest ({exc.strerror})", str(path)) from None
    if not isinstance(manifest, dict):
        raise ModelError("manifest is not a JSON object", str(path))
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ModelError("manifest is from a newer vecpipe; upgrade vecpipe to use it", str(path))
    _check_schema(manifest, path)
    return manifest


def _check_schema(manifest: dict, path: Path) -> None:
    for key, (types, required) in _SCHEMA.items():
        if key not in manifest:
            if required:
                raise ModelError(f"manifest lacks the key {key!r}", str(path))
            continue
        value = manifest[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ModelError(f"manifest key {key!r} should be {wanted}, not {json.dumps(value)[:40]}", str(path))
    if manifest["dim"] < 1 or manifest["max_tokens"] < 1 or manifest.get("max_position_embeddings", 1) < 1:
        raise ModelError("manifest's dim, max_tokens and max_position_embeddings must be positive", str(path))
    if manifest["dim"] > MAX_DIM:
        raise ModelError(f"manifest's dim {manifest['dim']} is beyond any embedder's ({MAX_DIM} at most)", str(path))
    for key in ("files", "source_sha256"):
        if not all(isinstance(name, str) and isinstance(digest, str) for name, digest in manifest.get(key, {}).items()):
            raise ModelError(f"manifest's {key} must map file names to sha256 digests", str(path))
    if manifest["pooling"] not in POOLINGS:
        raise ModelError(f"manifest's pooling {manifest['pooling']!r} is not one of {', '.join(POOLINGS)}", str(path))
    if manifest.get("kind", "dense") not in MODEL_KINDS:
        raise ModelError(f"manifest's kind {manifest['kind']!r} is not one of {', '.join(MODEL_KINDS)} (a newer vecpipe's model?)", str(path))
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest.get("prompts", {}).items()):
        raise ModelError("manifest's prompts must map names to strings", str(path))


def write_manifest(out_dir: Path, manifest: dict) -> None:
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def manifest_sha256(model_dir: Path) -> str:
    return sha256_file(model_dir / MANIFEST)


def file_hashes(out_dir: Path) -> dict[str, str]:
    """The sha256 of each file of a model directory, for its manifest."""
    return {f: sha256_file(out_dir / f) for f in MODEL_DIR_FILES}
