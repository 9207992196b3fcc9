"""Hash a large file once, then trust it while its file-system stamp is unchanged.

Loading a model used to sha256 its 90 MB model.onnx on every run (about 0.1-0.2 s of a
one-off `vecpipe search`). After a full hash, the file's stamp (size, mtime_ns, ctime_ns,
inode, device) is recorded with the digest under $VECPIPE_HOME/stamps; later loads re-hash
only when the stamp differs.

What this verifies: that the file is the one that was hashed, as far as the file system
tells. Any write through the file system changes ctime, which user programs cannot set
back, so ordinary corruption, edits, copies and replacements are caught. It does not catch
changes made beneath the file system (raw block-device writes, or bit rot on the disk
itself), nor changes made while the system clock was turned back; `vecpipe models info
--verify` hashes everything in full for those cases.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vecpipe.core.hashing import sha256_file
from vecpipe.core.paths import vecpipe_home

STAMP_FIELDS = ("st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_dev")


def stamps_dir() -> Path:
    return vecpipe_home() / "stamps"


def _stamp(path: Path) -> list[int]:
    stat = os.stat(path)
    return [getattr(stat, name) for name in STAMP_FIELDS]


def _record_path(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return stamps_dir() / f"{key}.json"


def _recorded_sha256(path: Path, stamp: list[int]) -> str | None:
    try:
        record = json.loads(_record_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("path") != str(path.resolve()) or record.get("stamp") != stamp:
        return None
    digest = record.get("sha256")
    return digest if isinstance(digest, str) else None


def _record(path: Path, stamp: list[int], digest: str) -> None:
    from vecpipe.core.atomic import write_bytes_atomic
    from vecpipe.core.errors import StorageError

    record = {"path": str(path.resolve()), "stamp": stamp, "sha256": digest}
    try:
        stamps_dir().mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(_record_path(path), json.dumps(record).encode())
    except (OSError, StorageError):
        pass  # a read-only cache only costs the next run a full hash


def remember_sha256(path: Path | str, digest: str) -> None:
    """Record a digest the caller computed from the bytes it just wrote and will not change (an index
    generation's files, hashed when written), so the first reader trusts the stamp instead of hashing again."""
    path = Path(path)
    _record(path, _stamp(path), digest)


def stamped_sha256(path: Path | str, full: bool = False) -> str:
    """sha256 of `path`: recorded digest while the stamp is unchanged, else (or if `full`) a full hash."""
    path = Path(path)
    before = _stamp(path)
    if not full:
        recorded = _recorded_sha256(path, before)
        if recorded is not None:
            return recorded
    digest = sha256_file(path)
    # A file written while it was being hashed has a new stamp; record nothing then.
    if _stamp(path) == before:
        _record(path, before, digest)
    return digest
