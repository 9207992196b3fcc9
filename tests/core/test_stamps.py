"""Hash once, trust the stamp: re-hash exactly when the file may have changed."""
from __future__ import annotations

import os

import pytest

from vecpipe.core import stamps
from vecpipe.core.hashing import sha256_file


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def counted_hashes(monkeypatch):
    calls = []

    def counting(path):
        calls.append(path)
        return sha256_file(path)

    monkeypatch.setattr(stamps, "sha256_file", counting)
    return calls


def test_second_look_uses_the_recorded_digest(home, tmp_path, counted_hashes):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"weights" * 1000)
    assert stamps.stamped_sha256(f) == stamps.stamped_sha256(f) == sha256_file(f)
    assert len(counted_hashes) == 1


def test_same_size_rewrite_with_old_mtime_is_hashed_again(home, tmp_path, counted_hashes):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"a" * 100)
    first = stamps.stamped_sha256(f)
    before = os.stat(f)
    with open(f, "r+b") as fh:  # same size, same inode
        fh.write(b"b")
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back; ctime cannot be
    assert stamps.stamped_sha256(f) != first
    assert len(counted_hashes) == 2


def test_full_always_hashes(home, tmp_path, counted_hashes):
    f = tmp_path / "x"
    f.write_bytes(b"x")
    stamps.stamped_sha256(f)
    stamps.stamped_sha256(f, full=True)
    assert len(counted_hashes) == 2


def test_unwritable_home_still_verifies(tmp_path, monkeypatch, counted_hashes):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("VECPIPE_HOME", str(blocker / "home"))
    f = tmp_path / "x"
    f.write_bytes(b"x")
    assert stamps.stamped_sha256(f) == stamps.stamped_sha256(f) == sha256_file(f)
    assert len(counted_hashes) == 2  # nothing recorded, so each look hashes


def test_a_stamp_record_for_another_path_is_not_trusted(home, tmp_path, counted_hashes):
    f, g = tmp_path / "f", tmp_path / "g"
    f.write_bytes(b"f")
    g.write_bytes(b"g")
    stamps.stamped_sha256(f)
    stamps._record_path(g).write_text(stamps._record_path(f).read_text())
    assert stamps.stamped_sha256(g) == sha256_file(g)
