"""Small .npz side files (quantization ranges, PCA rotations) that provenance names by sha256.

The bytes are a pure function of the arrays (fixed member order and zip timestamps), so the
sha256 of a calibration learned in memory equals that of the file `--save-calibration` writes,
and saving the same calibration twice gives the same file. Files are never unpickled.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from vecpipe.core.atomic import write_bytes_atomic
from vecpipe.core.errors import DataError
from vecpipe.core.hashing import sha256_bytes

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date zip can store

# The provenance keys that say which vector space a file was learned in. Prompts and prefixes
# are left out: queries are meant to use the ranges or rotation learned from documents.
SPACE_KEYS = ("model", "model_sha256", "layer", "pooling", "variant", "dim", "truncate_dim", "pca_sha256")


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.array(array, order="C"), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), member.getvalue())
    return buffer.getvalue()


def artifact_bytes(kind: str, arrays: dict[str, np.ndarray], count: int, provenance: dict) -> bytes:
    """A vecpipe side file: `arrays`, plus what it is, how many vectors made it, and their space."""
    return npz_bytes({
        "format": np.array(kind),
        **arrays,
        "count": np.array(count, dtype=np.int64),
        "provenance": provenance_array(space_of(provenance)),
    })


class SavedArrays:
    """For the dataclasses that hold a side file's exact bytes (a `file_bytes` field)."""

    file_bytes: bytes

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.file_bytes)

    def save(self, path: str) -> None:
        write_bytes_atomic(path, self.file_bytes)


def load_npz(path: str, required: tuple[str, ...], what: str) -> tuple[dict[str, np.ndarray], bytes]:
    """The arrays of an .npz file and its bytes (hashed for provenance), refusing pickles."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DataError(exc.strerror or "cannot open", path) from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"not a readable {what} .npz file ({exc})", path) from None
    missing = [name for name in required if name not in arrays]
    if missing:
        raise DataError(f"not a {what} file: no {', '.join(missing)} array in it", path)
    return arrays, data


def count_from(arrays: dict[str, np.ndarray]) -> int:
    """How many vectors a side file was learned from; 0 when it does not say."""
    count = arrays.get("count")
    return int(count) if count is not None and count.shape == () and count.dtype.kind in "iu" else 0


def provenance_array(provenance: dict) -> np.ndarray:
    """Provenance stored as a JSON string (a unicode array, which needs no pickling)."""
    return np.array(json.dumps(provenance, sort_keys=True))


def provenance_from(arrays: dict[str, np.ndarray], path: str) -> dict:
    if "provenance" not in arrays:
        return {}
    try:
        value = json.loads(str(arrays["provenance"]))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise DataError("its provenance is not a JSON object", path)
    return value


def space_of(provenance: dict) -> dict:
    return {key: provenance[key] for key in SPACE_KEYS if key in provenance}


def check_same_space(learned: dict, stream: dict, what: str, path: str, source: str, line: int | None) -> None:
    """Refuse a file learned from vectors of another model, layer, truncation or rotation.

    Keys absent on either side are not compared, so files made from foreign vectors still work.
    """
    for key in SPACE_KEYS:
        if key in learned and key in stream and learned[key] != stream[key]:
            raise DataError(
                f"{what} {path} was learned from vectors with {key} {learned[key]!r}, these have {stream[key]!r}",
                source,
                line,
            )
