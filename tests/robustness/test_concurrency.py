"""Concurrency with real processes: a second writer is refused at once, readers never see a
half-written index, and simultaneous first-use conversions leave one good model cache."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robustness_support import REPO, assert_one_line_refusal, fingerprint, run_process, unit_rows, vector_records
from vecpipe.core.index.vector_index import VectorIndex, build_index
from vecpipe.core.models.registry import verify_model_dir
from vecpipe.formats.vectors import read_matrix

DIM = 32
PROVENANCE = {"model": "concurrency-test", "dim": DIM, "normalized": True}
GUARD = 120  # seconds: a guard against a hang, not a measurement


def write_records(path: Path, ids: list[str], seed: int) -> dict:
    vectors = unit_rows(len(ids), DIM, seed)
    path.write_bytes(vector_records(vectors, PROVENANCE, ids))
    return dict(zip(ids, vectors))


def _flock_held(path: Path) -> bool:
    """Whether any process holds a flock on `path`, read from /proc/locks: a probe that tried the lock
    itself could hold it at the very moment the writer asks, and make the writer give up."""
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        return False
    with open("/proc/locks") as locks:
        return any(f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == str(inode) for f in (line.split() for line in locks) if len(f) > 5)


def wait_until_locked(index: Path) -> None:
    """Until some process holds the writer lock of `index`."""
    lock = index.with_name(f".{index.name}.lock")
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        if _flock_held(lock):
            return
        time.sleep(0.01)
    raise AssertionError("the first writer never took the lock")


def published(root: Path) -> dict:
    """The fingerprint of what readers can see: everything but the live writer's staging area."""
    return {path: digest for path, digest in fingerprint(root).items() if ".tmp" not in path}


SECOND_WRITERS = {
    "add": ["index", "add", "-q", "idx", "late.jsonl"],
    "delete": ["index", "delete", "-q", "idx", "--id", "b0"],
    "build --overwrite": ["index", "build", "-q", "--overwrite", "-o", "idx", "late.jsonl"],
}


@pytest.mark.parametrize("second", list(SECOND_WRITERS))
def test_a_second_writer_is_refused_at_once_while_the_first_goes_on(second, tmp_path):
    base = write_records(tmp_path / "base.jsonl", [f"b{i}" for i in range(50)], seed=1)
    build_index(tmp_path / "idx", [read_matrix(str(tmp_path / "base.jsonl"))])
    write_records(tmp_path / "late.jsonl", ["late"], seed=2)
    first_input = vector_records(unit_rows(20, DIM, seed=3), PROVENANCE, [f"f{i}" for i in range(20)]).splitlines(keepends=True)
    # The first writer holds the lock while it waits for the rest of its stdin.
    first = subprocess.Popen([sys.executable, "-m", "vecpipe", "index", "add", "-q", "idx", "-"], cwd=tmp_path,
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first.stdin.write(b"".join(first_input[:10]))
        first.stdin.flush()
        wait_until_locked(tmp_path / "idx")
        before = published(tmp_path)
        # It returns while the first writer still holds the lock: refused at once, not queued.
        outcome = run_process(SECOND_WRITERS[second], cwd=tmp_path, timeout=GUARD)
        assert first.poll() is None
        assert_one_line_refusal(outcome, f"index {SECOND_WRITERS[second][1]}", "idx",
                                "another vecpipe process is writing here; try again when it has finished", 5)
        assert published(tmp_path) == before
        first.stdin.write(b"".join(first_input[10:]))
    finally:
        first.stdin.close()
        assert first.wait(timeout=GUARD) == 0, first.stderr.read().decode()
    with VectorIndex.open(tmp_path / "idx") as index:
        assert index.count == len(base) + 20  # the first writer's update, whole


# --- readers during writes ---------------------------------------------------------------------


class Reader(threading.Thread):
    """Opens and searches the index over and over, recording what it saw and any error."""

    def __init__(self, path: Path, probes: dict, states: list[set]):
        super().__init__(daemon=True)
        self.path, self.probes, self.states = path, probes, states
        self.stop = threading.Event()
        self.seen: list[int] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        queries = np.stack(list(self.probes.values()))
        while not self.stop.is_set():
            try:
                self.seen.append(self.look_once(queries))
            except BaseException as exc:  # handed to the test
                self.errors.append(exc)
                return

    def look_once(self, queries: np.ndarray) -> int:
        with VectorIndex.open(self.path) as index:
            ids = {record_id for record_id, _ in index.meta.fetch(index.meta.all_labels()).values()}
            assert ids in self.states and index.count == len(ids), f"a reader saw {len(ids)} records, no published state"
            hits = index.search(queries, k=1, provenance=PROVENANCE).hits
            assert [row[0].id for row in hits] == list(self.probes)  # the records every state holds
            return index.count


@pytest.mark.slow
def test_readers_see_a_whole_index_throughout_a_writers_updates(tmp_path):
    """A library reader loops (open, check, search) while real `vecpipe index add` and `delete`
    processes update the index, each with a real `vecpipe search` running beside it."""
    base = write_records(tmp_path / "base.jsonl", [f"b{i}" for i in range(300)], seed=1)
    build_index(tmp_path / "idx", [read_matrix(str(tmp_path / "base.jsonl"))])
    batches = [list(write_records(tmp_path / f"batch{k}.jsonl", [f"k{k}-{i}" for i in range(200)], seed=10 + k)) for k in range(3)]
    states = [set(base)] + [set(base) | set(batch) for batch in batches]
    reader = Reader(tmp_path / "idx", {key: base[key] for key in list(base)[:5]}, states)
    reader.start()
    for k, batch in enumerate(batches):
        for args in (["index", "add", "-q", "idx", f"batch{k}.jsonl"], ["index", "delete", "-q", "idx", *[f"--id={i}" for i in batch]]):
            search = subprocess.Popen([sys.executable, "-m", "vecpipe", "search", "idx", "-k", "1", "-i", "base.jsonl"],
                                      cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert run_process(args, cwd=tmp_path, timeout=GUARD).code == 0
            out, err = search.communicate(timeout=GUARD)
            assert search.returncode == 0 and err == b"" and len(out.splitlines()) == len(base)  # a CLI reader too
    reader.stop.set()
    reader.join(timeout=GUARD)
    assert reader.errors == []
    assert reader.seen and set(reader.seen) <= {len(base), len(base) + 200}


# --- the model cache --------------------------------------------------------------------------


def test_simultaneous_first_uses_from_the_cli_leave_one_good_cache(tiny_checkpoint, tmp_path):
    """The library-level race is tests/core/models/test_registry.py::test_two_first_uses_at_once_leave_one_good_cache;
    this is the same through the command users run."""
    env = {**os.environ, "VECPIPE_HOME": str(tmp_path / "home")}
    procs = [subprocess.Popen([sys.executable, "-m", "vecpipe", "models", "path", str(tiny_checkpoint)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [p.communicate(timeout=GUARD) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    entry = Path(outputs[0][0].decode().strip())
    verify_model_dir(entry)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]
