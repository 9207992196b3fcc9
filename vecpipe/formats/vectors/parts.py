"""A directory of .npy parts (`part-NNNNN.npy` + sidecars + manifest.json): one vector stream
for files too large to hold, write or copy as one."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import orjson

from vecpipe.core.atomic import fsync_dir, make_temp_dir_beside, signals_held, write_bytes_atomic
from vecpipe.core.errors import DataError, StorageError, storage_error
from vecpipe.core.vector_batch import VectorBatch
from vecpipe.formats.vectors.npy import NpyOutput


PARTS_MANIFEST = "manifest.json"


PARTS_FORMAT = "vecpipe vector parts"


PART_BYTES = 1 << 30  # a part's matrix stays near 1 GiB: small enough to copy, mmap or load whole


def writes_parts(npy_path: str) -> bool:
    """`--format npy -o NAME` writes one matrix for a NAME ending in .npy, a directory of parts for any other."""
    return not npy_path.endswith(".npy")


def part_name(number: int) -> str:
    return f"part-{number:05d}.npy"


class PartsOutput:
    """`DIR/part-NNNNN.npy` + sidecars and `DIR/manifest.json`, written in a temp directory beside
    DIR that replaces it at commit. An existing DIR is replaced only if it holds vector parts."""

    def __init__(self, path: str, part_rows: int | None):
        self.path = path
        self.target = Path(os.path.realpath(path))  # through a symlink: replace what it points at, keep the link
        self.part_rows = part_rows
        _check_replaceable(self.target)
        with signals_held():  # a Ctrl-C now would leave a temp directory nobody knows of
            try:
                self._tmp = make_temp_dir_beside(self.target)
            except OSError as exc:
                raise storage_error(exc, path) from None
        self._part: NpyOutput | None = None
        self._parts: list[dict] = []
        self._shape: dict | None = None

    def write(self, batch: VectorBatch, provenance: dict) -> None:
        with self._named_as_target():
            self._write(batch, provenance)

    @contextlib.contextmanager
    def _named_as_target(self) -> Iterator[None]:
        """A refused write names the directory asked for, not the part inside its temp directory."""
        try:
            yield
        except StorageError as exc:
            raise StorageError(exc.message, self.path) from exc

    def _write(self, batch: VectorBatch, provenance: dict) -> None:
        if self._shape is None:
            self._shape = {"dtype": batch.dtype, "width": int(batch.matrix.shape[1]), "provenance": provenance}
            self.part_rows = self.part_rows or max(1, PART_BYTES // max(batch.matrix[:1].nbytes, 1))
        start = 0
        while start < len(batch):
            if self._part is None or self._parts[-1]["rows"] == self.part_rows:
                self._next_part()
            end = start + min(len(batch) - start, self.part_rows - self._parts[-1]["rows"])
            self._part.write(batch.take(slice(start, end)), provenance)
            self._parts[-1]["rows"] += end - start
            start = end

    def _next_part(self) -> None:
        if self._part is not None:
            self._part.commit()
        name = part_name(len(self._parts))
        self._part = NpyOutput(str(self._tmp / name))
        self._parts.append({"matrix": name, "rows": 0})

    def commit(self) -> None:
        if self._part is not None:
            with self._named_as_target():
                self._part.commit()
            self._part = None
        manifest = {"format": PARTS_FORMAT, "version": 1, "rows": sum(p["rows"] for p in self._parts), **(self._shape or {}), "parts": self._parts}
        try:
            write_bytes_atomic(self._tmp / PARTS_MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
            with signals_held():
                _replace_dir(self._tmp, self.target)
        except OSError as exc:
            raise storage_error(exc, self.path) from exc

    def discard(self) -> None:
        if self._part is not None:
            self._part.discard()
            self._part = None
        shutil.rmtree(self._tmp, ignore_errors=True)


def _check_replaceable(target: Path) -> None:
    """Refuse to put parts where a file, or a directory of something else, already is."""
    if target.is_dir():
        if any(target.iterdir()) and not (target / PARTS_MANIFEST).is_file():
            raise StorageError(f"is a directory that holds no vector parts ({PARTS_MANIFEST}); refusing to replace it", str(target))
    elif target.exists() or target.is_symlink():
        raise StorageError("exists and is not a directory: name a .npy file for one matrix, or a directory for parts", str(target))


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`, moving an old `target` aside first and deleting it after."""
    old = None
    if target.is_dir():
        old = target.with_name(f".{target.name}.old.{os.getpid()}.tmp")
        os.rename(target, old)
    os.rename(new, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_parts_manifest(manifest_path: str) -> list[dict]:
    """The parts listed in a parts directory's manifest, each a plain file name in the directory."""
    directory = os.path.dirname(manifest_path)
    try:
        with open(manifest_path, "rb") as fh:
            manifest = orjson.loads(fh.read())
    except FileNotFoundError:
        raise DataError(f"is a directory without {PARTS_MANIFEST}: not a set of vector parts written by `--format npy -o DIR`", directory) from None
    except OSError as exc:
        raise DataError(exc.strerror or "cannot read", manifest_path) from None
    except orjson.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", manifest_path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != PARTS_FORMAT or not isinstance(manifest.get("parts"), list):
        raise DataError(f"not a vector parts manifest (expected \"format\": \"{PARTS_FORMAT}\" and a \"parts\" list)", manifest_path)
    for number, part in enumerate(manifest["parts"]):
        name = part.get("matrix") if isinstance(part, dict) else None
        rows = part.get("rows") if isinstance(part, dict) else None
        if not isinstance(name, str) or not name.endswith(".npy") or os.path.basename(name) != name or name.startswith("."):
            raise DataError(f"part {number} must name a .npy file inside the directory, not {name!r}", manifest_path)
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise DataError(f"part {number} ({name}) needs a row count, not {rows!r}", manifest_path)
    return manifest["parts"]
