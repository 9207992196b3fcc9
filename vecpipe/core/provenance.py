"""Provenance: how a stream's vectors were made, as the `vecpipe` object of every vector record,
sidecar line and index manifest carries it.

The object travels as JSON and is written back as it was read (its keys in their order, and keys
of other tools untouched), so streams stay byte-stable. Every place that takes it from a file or
a stream reads it once through `load_provenance`, which checks each key vecpipe knows and returns
a typed `Provenance`: a wrong type is one line naming the file, line and key, with the exit status
of the file's kind (3 for input data, 5 for an index), decided here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vecpipe.core.errors import DataError, VecpipeError
from vecpipe.core.vector_batch import STORAGE

_TEXT = (str,)
_COUNT = (int,)


@dataclass(frozen=True)
class Provenance:
    model: str | None = None  # the model's name
    model_sha256: str | None = None  # sha256 of the model's vecpipe.json
    weights_sha256: str | None = None  # sha256 of the weights it was converted from
    dim: int | None = None  # float dimensions (also for bit-packed vectors)
    dtype: str = "float32"  # float32, float16, int8, uint8, binary, ubinary
    normalized: bool = False
    prompt: str | None = None  # the named prompt embedded with
    prefix: str | None = None  # a literal prefix embedded with (no named prompt)
    pooling: str | None = None  # set when it differs from the model's own
    layer: int | None = None  # a 2D-Matryoshka layer cut
    variant: str | None = None  # an optimized variant (int8)
    truncate_dim: int | None = None
    pca_sha256: str | None = None
    calibration_sha256: str | None = None


# key -> accepted JSON types (bool is never a count); null counts as absent.
_TYPES: dict[str, tuple[type, ...]] = {
    "model": _TEXT, "model_sha256": _TEXT, "weights_sha256": _TEXT, "dim": _COUNT, "dtype": _TEXT, "normalized": (bool,),
    "prompt": _TEXT, "prefix": _TEXT, "pooling": _TEXT, "layer": _COUNT, "variant": _TEXT, "truncate_dim": _COUNT,
    "pca_sha256": _TEXT, "calibration_sha256": _TEXT,
}


def load_provenance(raw, source: str | None = None, line: int | None = None,
                    error: Callable[[str, str | None, int | None], VecpipeError] = DataError) -> Provenance:
    """The typed provenance of `raw` (a record's `vecpipe` object), refused in one line by `error`
    (DataError for input data; an index passes its own) when a known key has the wrong type or value."""
    if not isinstance(raw, dict):
        raise error(f"provenance must be an object, not {_json_type(raw)}", source, line)
    values = {}
    for key, types in _TYPES.items():
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = {"str": "a string", "int": "an integer", "bool": "true or false"}[types[0].__name__]
            raise error(f"provenance key {key!r} must be {wanted}, not {_json_type(value)}", source, line)
        if types is _COUNT and value < 1:
            raise error(f"provenance key {key!r} must be at least 1, not {value}", source, line)
        values[key] = value
    if values.get("dtype", "float32") not in STORAGE:
        raise error(f"unknown dtype {values['dtype']!r} in provenance (expected one of {', '.join(STORAGE)})", source, line)
    return Provenance(**values)


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
