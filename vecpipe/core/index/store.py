"""An index directory as a series of immutable generations, switched atomically.

Layout:

    DIR/CURRENT          one line naming the live generation, e.g. `g000042`
    DIR/g000042/         manifest.json, meta.sqlite and the vectors (graph.bin or vectors.npy ...)
    DIR/g000041/         the previous generation, kept so a reader that read CURRENT just
                         before a switch can still open it; removed by the next writer

A writer holds `DirLock(DIR)`, stages a complete new generation in a hidden temp directory,
fsyncs it, renames it into place and then replaces CURRENT (write-temp-fsync-rename). A
kill -9 at any point therefore leaves CURRENT naming the old generation or the new one, and
what it leaves behind (a hidden temp directory) is removed by the next writer. A brand-new
index is staged whole beside DIR and renamed onto it, so a killed first build leaves no DIR.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import orjson

from vecpipe.core.atomic import DirLock, fsync_dir, make_temp_dir_beside, signals_held, write_bytes_atomic
from vecpipe.core.errors import IndexStoreError, StorageError, VecpipeError, storage_error
from vecpipe.core.hashing import sha256_file
from vecpipe.core.index.kinds import KINDS
from vecpipe.core.provenance import Provenance, load_provenance
from vecpipe.core.vector_batch import STORAGE
from vecpipe.core.stamps import remember_sha256, stamped_sha256

FORMAT_VERSION = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
_GENERATION = re.compile(r"^g(\d{6,})$")
_OPEN_ATTEMPTS = 5  # a reader retries when writers replaced its generation while it opened


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def generation_name(number: int) -> str:
    return f"g{number:06d}"


def is_index_dir(root: Path) -> bool:
    return (root / CURRENT).is_file()


def current_generation(root: Path) -> Path:
    """The live generation directory named by DIR/CURRENT."""
    try:
        name = (root / CURRENT).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        what = "does not exist" if not root.exists() else "is not a vecpipe index (no CURRENT file)"
        raise IndexStoreError(what, str(root)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexStoreError(f"cannot read CURRENT ({exc})", str(root)) from None
    if not _GENERATION.match(name):
        raise IndexStoreError(f"CURRENT names {name!r}, not a generation: the index is corrupt", str(root))
    return root / name


def read_manifest(generation: Path) -> dict:
    """The manifest of one generation, checked against the schema below; refuses ones written by a newer vecpipe."""
    path = generation / MANIFEST
    try:
        manifest = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise IndexStoreError(f"manifest is not valid JSON ({exc})", str(path)) from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise IndexStoreError("manifest has no format_version: not a vecpipe index", str(path))
    if version > FORMAT_VERSION:
        raise IndexStoreError(
            f"index format version {version} is newer than this vecpipe understands ({FORMAT_VERSION}); "
            "upgrade vecpipe to read it",
            str(path),
        )
    _check_schema(manifest, path)
    return manifest


_OPTIONAL_TEXT = (str, type(None))
# key -> (accepted types, required); ints exclude bools (JSON true is not a count).
_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "kind": ((str,), True),
    "dim": ((int,), True),
    "count": ((int,), True),
    "next_label": ((int,), True),
    "dtype": ((str,), True),
    "input_dtype": ((str,), True),
    "metric": ((str,), True),
    "provenance": ((dict,), True),
    "normalized": ((bool,), False),
    "model": (_OPTIONAL_TEXT, False),
    "model_sha256": (_OPTIONAL_TEXT, False),
    "calibration_sha256": (_OPTIONAL_TEXT, False),
    "hnsw": ((dict,), False),
    "slots": ((int,), False),
    "flat": ((dict,), False),
    "lexical": ((dict, type(None)), False),
    "files": ((dict,), False),
}


def _check_schema(manifest: dict, path: Path) -> None:
    """One line naming the key for anything a reader would otherwise trip over later."""
    def bad(problem: str) -> IndexStoreError:
        return IndexStoreError(f"manifest {problem}: the index is corrupt", str(path))

    for key, (types, required) in _SCHEMA.items():
        if key not in manifest:
            if required:
                raise bad(f"lacks the key {key!r}")
            continue
        value = manifest[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise bad(f"key {key!r} has the wrong type ({type(value).__name__})")
    if manifest["kind"] not in KINDS:
        raise bad(f"kind {manifest['kind']!r} is not one of {', '.join(KINDS)}")
    missing = [key for key in KINDS[manifest["kind"]].manifest_keys if key not in manifest]
    if missing:
        raise bad(f"lacks the key {missing[0]!r} of a {manifest['kind']} index")
    if manifest["dim"] < 1 or manifest["count"] < 0 or (manifest["kind"] == "hnsw" and manifest["next_label"] < manifest["count"]):
        raise bad("has an impossible dim, count or next_label")
    if manifest["kind"] == "hnsw" and manifest["slots"] < manifest["count"]:
        raise bad("counts more records than its graph has slots")
    problem = KINDS[manifest["kind"]].backend().manifest_problem(manifest)
    if problem:
        raise bad(problem)
    if manifest["input_dtype"] not in STORAGE:
        raise bad(f"input_dtype {manifest['input_dtype']!r} is not one of {', '.join(STORAGE)}")
    load_provenance(manifest["provenance"], error=lambda problem, *_: bad(f"key 'provenance': {problem}"))
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest.get("files", {}).items()):
        raise bad("key 'files' must map file names to sha256 digests")


def file_digests(generation: Path) -> dict[str, str]:
    """The sha256 of every file of a staged generation but its manifest, by path inside it."""
    return {
        path.relative_to(generation).as_posix(): sha256_file(path)
        for path in sorted(generation.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def verify_files(generation: Path, manifest: dict) -> None:
    """Refuse a generation whose files are not the ones its manifest recorded: a graph.bin copied
    from another index, a hand-edited meta.sqlite. Hashed in full once, then trusted while the
    file-system stamp is unchanged (core/stamps.py)."""
    for name, digest in manifest.get("files", {}).items():
        path = generation / name
        if not path.is_file():
            raise FileNotFoundError(path)  # a writer may have pruned this generation: the reader retries
        if stamped_sha256(path) != digest:
            raise IndexStoreError(f"{name} does not match the sha256 in {MANIFEST} (replaced or corrupt)", str(generation))


@dataclass(frozen=True)
class IndexManifest:
    """What a reader asks of one generation's manifest, typed; built by `typed_manifest` from a
    manifest `read_manifest` checked. `raw` is the manifest as written, for the kind's backend
    (which reads its own fields) and for a writer making the next generation's."""

    raw: dict
    kind: str
    dim: int
    count: int
    dtype: str
    input_dtype: str
    metric: str
    normalized: bool | None
    model: str | None
    model_sha256: str | None
    calibration_sha256: str | None
    provenance: Provenance
    keeps_float: bool  # a flat index that also holds float vectors
    lexical: dict | None  # the BM25 part's settings and sizes (lexical.py)
    format_version: int
    created: str | None
    updated: str | None


def typed_manifest(manifest: dict) -> IndexManifest:
    return IndexManifest(
        raw=manifest, kind=manifest["kind"], dim=manifest["dim"], count=manifest["count"], dtype=manifest["dtype"],
        input_dtype=manifest["input_dtype"], metric=manifest["metric"], normalized=manifest.get("normalized"),
        model=manifest.get("model"), model_sha256=manifest.get("model_sha256"), calibration_sha256=manifest.get("calibration_sha256"),
        provenance=load_provenance(manifest["provenance"]), keeps_float=bool(manifest.get("flat", {}).get("keep_float")),
        lexical=manifest.get("lexical") or None, format_version=manifest["format_version"], created=manifest.get("created"),
        updated=manifest.get("updated"),
    )


def write_manifest(generation: Path, manifest: dict) -> None:
    (generation / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")


def open_with_retry(root: Path, opener):
    """Call `opener(generation_dir, manifest)`, retrying if a writer pruned the generation meanwhile."""
    for attempt in range(_OPEN_ATTEMPTS):
        generation = current_generation(root)
        try:
            manifest = read_manifest(generation)
            verify_files(generation, manifest)
            return opener(generation, manifest)
        except FileNotFoundError:
            if attempt == _OPEN_ATTEMPTS - 1:
                raise IndexStoreError("index files are missing: the index is corrupt", str(generation)) from None


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(directory)


@dataclass
class StagedGeneration:
    """A new generation being written; `dir` is where its files go until `publish`."""

    root: Path
    number: int
    dir: Path
    fresh_root: Path | None  # the whole new index staged beside `root`, for a first build

    def publish(self) -> None:
        try:
            _fsync_tree(self.dir)
            if self.fresh_root is not None:
                self._publish_fresh()
            else:
                self._publish_next()
        except OSError as exc:
            raise storage_error(exc, self.root) from exc
        self._remember_file_hashes()

    def _remember_file_hashes(self) -> None:
        """The writer hashed every file for the manifest; record those digests under the published
        paths, so the first reader does not hash a large graph again."""
        published = self.root / generation_name(self.number)
        for name, digest in read_manifest(published).get("files", {}).items():
            remember_sha256(published / name, digest)

    def _publish_fresh(self) -> None:
        write_bytes_atomic(self.fresh_root / CURRENT, f"{self.dir.name}\n".encode())
        fsync_dir(self.fresh_root)
        os.rename(self.fresh_root, self.root)  # also replaces an empty directory the user made
        fsync_dir(self.root.parent)

    def _publish_next(self) -> None:
        final = self.root / generation_name(self.number)
        os.rename(self.dir, final)
        fsync_dir(self.root)
        write_bytes_atomic(self.root / CURRENT, f"{final.name}\n".encode())
        fsync_dir(self.root)
        self.dir = final
        prune_generations(self.root, keep={final.name, generation_name(self.number - 1)})

    def discard(self) -> None:
        shutil.rmtree(self.fresh_root or self.dir, ignore_errors=True)


def prune_generations(root: Path, keep: set[str]) -> None:
    for path in root.iterdir():
        if _GENERATION.match(path.name) and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def _remove_stale_temps(root: Path) -> None:
    """Leftovers of writers killed mid-way; only called under the lock."""
    for path in root.parent.glob(f".{root.name}.*.tmp"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    if root.is_dir():
        for path in root.glob(".g*.tmp"):
            shutil.rmtree(path, ignore_errors=True)
        for path in root.glob(f".{CURRENT}.*.tmp"):
            path.unlink(missing_ok=True)
    if is_index_dir(root):
        # A writer killed between renaming its generation into place and switching CURRENT left
        # a generation newer than the live one: no reader can see it, and it would block this
        # writer's rename of the same number.
        live = current_generation(root).name
        prune_generations(root, keep={live, generation_name(int(_GENERATION.match(live).group(1)) - 1)})


def stage_generation(root: Path) -> StagedGeneration:
    """A directory for the next generation of `root` (which may not exist yet)."""
    if is_index_dir(root):
        number = int(_GENERATION.match(current_generation(root).name).group(1)) + 1
        staging = make_temp_dir_beside(root / generation_name(number))
        return StagedGeneration(root, number, staging, None)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise IndexStoreError("exists and is not a vecpipe index; choose another directory", str(root))
    fresh = make_temp_dir_beside(root)
    staging = fresh / generation_name(1)
    staging.mkdir()
    return StagedGeneration(root, 1, staging, fresh)


@contextlib.contextmanager
def writing(root: Path) -> Iterator[StagedGeneration]:
    """Lock `root`, stage its next generation, and publish it if the body succeeds."""
    with DirLock(root):
        _remove_stale_temps(root)
        staged = None
        try:
            with signals_held():  # the staged directory is known to the cleanup below before a Ctrl-C lands
                staged = stage_generation(root)
            yield staged
            staged.publish()
        except OSError as exc:  # disk full, permissions: exit 6, not a traceback
            _discard(staged)
            raise storage_error(exc, root) from exc
        except sqlite3.DatabaseError as exc:
            _discard(staged)
            raise _metadata_error(exc, root) from None
        except StorageError as exc:  # named after the index: the staged file it names is gone
            _discard(staged)
            raise StorageError(exc.message, str(root)) from None
        except BaseException:
            _discard(staged)
            raise


def _discard(staged: "StagedGeneration | None") -> None:
    if staged is not None:
        staged.discard()


def _metadata_error(exc: sqlite3.DatabaseError, root: Path) -> VecpipeError:
    """SQLite's failures as one line: a write the disk refused (exit 6), or a corrupt store (exit 5)."""
    if isinstance(exc, sqlite3.OperationalError) and ("disk" in str(exc) or "full" in str(exc)):
        return StorageError(f"the metadata store could not be written ({exc}; is the disk full?)", str(root))
    return IndexStoreError(f"metadata store is unreadable ({exc})", str(root))


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
