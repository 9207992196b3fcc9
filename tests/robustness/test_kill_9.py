"""Fault injection: `kill -9` at seeded random moments of real `vecpipe index build`, `index add`,
`index delete` and first-use model conversion processes.

After every kill the index must open, be exactly the old one or exactly the new one, and find
every record it holds; the model cache must hold no entry or a complete, verified one. Kill
times are drawn uniformly over 1.1x an uninterrupted run, measured from the moment the command
starts (after Python's imports, which the driver does first, so that the kills land in the
write rather than in start-up). The time only picks kill points; nothing asserts on it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robustness_support import REPO, unit_rows, vector_records
from vecpipe.core.index.vector_index import VectorIndex, delete_from_index
from vecpipe.core.models.registry import verify_model_dir

SEED = 20260707
DIM = 64
PROVENANCE = {"model": "kill-test", "dim": DIM, "normalized": True}
BASE, ADDED, UPSERTED, DELETED = 600, 3000, 150, 2000

# The real CLI, started once its imports are done; "go" marks the start of the command itself.
DRIVER = """
import sys
import vecpipe.core.index.vector_index, vecpipe.core.models.registry
from vecpipe.cli import main
print("go", flush=True)
sys.argv = ["vecpipe", *sys.argv[1:]]
main()
"""


def run_cli(args: list, env: dict | None = None, kill_after: float | None = None) -> float:
    """Run `vecpipe ARGS`; SIGKILL it `kill_after` seconds after "go". Returns seconds from "go" to exit."""
    child = subprocess.Popen([sys.executable, "-c", DRIVER, *map(str, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=REPO, env={**os.environ, **(env or {})})
    assert child.stdout.readline() == b"go\n"
    started = time.monotonic()
    if kill_after is not None:
        time.sleep(kill_after)
        child.send_signal(signal.SIGKILL)
    _, err = child.communicate(timeout=300)  # a guard against hangs, not a measurement
    if kill_after is None:
        assert child.returncode == 0, err.decode()
    return time.monotonic() - started


def kill_points(duration: float, count: int, stream: int) -> list[float]:
    return list(np.random.default_rng([SEED, stream]).uniform(0, 1.1 * duration, size=count))


# --- what an index must look like ---------------------------------------------------------------


def assert_whole_and_one_of(path: Path, *states: dict) -> dict | None:
    """The index at `path` opens, equals one of `states` (id -> vector; None: no index at all),
    and every record it holds is its own nearest neighbour, exactly and through the graph."""
    if not path.exists():
        assert None in states, f"{path} vanished"
        return None
    with VectorIndex.open(path) as index:
        labels = index.meta.all_labels()
        ids = [record_id for record_id, _ in index.meta.fetch(labels).values()]
        state = next((s for s in states if s is not None and set(s) == set(ids)), None)
        assert state is not None and index.count == len(ids), f"{path}: {len(ids)} records, neither old nor new"
        queries = np.stack([state[i] for i in ids])
        exact = index.search(queries, k=1, exact=True, provenance=PROVENANCE).hits
        assert [row[0].id for row in exact] == ids and min(row[0].score for row in exact) > 0.999
        graph = index.search(queries, k=1, provenance=PROVENANCE).hits
        assert np.mean([row[0].id == i for row, i in zip(graph, ids)]) >= 0.99
    return state


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Input files and the states they lead to: base, base + added, after deletes."""
    root = tmp_path_factory.mktemp("kill-data")
    base = {f"b{i}": v for i, v in enumerate(unit_rows(BASE, DIM, seed=1))}
    added = {f"n{i}": v for i, v in enumerate(unit_rows(ADDED, DIM, seed=2))}
    added.update({f"b{i}": v for i, v in enumerate(unit_rows(UPSERTED, DIM, seed=3))})  # replacing base records
    after_add = {**base, **added}
    doomed = sorted(after_add)[:DELETED]
    for name, records in (("base.jsonl", base), ("add.jsonl", added)):
        (root / name).write_bytes(vector_records(np.stack(list(records.values())), PROVENANCE, list(records)))
    (root / "doomed.txt").write_text("".join(f"{i}\n" for i in doomed))
    after_delete = {k: v for k, v in after_add.items() if k not in set(doomed)}
    return {"root": root, "base": base, "added": added, "after_add": after_add, "after_delete": after_delete}


def build_args(data: dict, target: Path) -> list:
    return ["index", "build", "-q", "--threads", "1", "-o", target, data["root"] / "add.jsonl"]


@pytest.mark.slow
def test_kill_9_during_index_build_leaves_no_index_or_the_whole_one(data, tmp_path):
    new = data["added"]  # a build of add.jsonl holds just its records
    took = run_cli(build_args(data, tmp_path / "timing.idx"))
    assert_whole_and_one_of(tmp_path / "timing.idx", new)
    for n, delay in enumerate(kill_points(took, 8, stream=1)):
        target = tmp_path / f"killed{n}.idx"
        run_cli(build_args(data, target), kill_after=delay)
        assert_whole_and_one_of(target, None, new)
    # The next writer clears what a killed first build left beside the index, and succeeds.
    run_cli(build_args(data, tmp_path / "killed0.idx") + ["--overwrite"])
    assert_whole_and_one_of(tmp_path / "killed0.idx", new)
    assert not [p.name for p in tmp_path.glob(".killed0.idx.*.tmp")]


def _kill_updates(data: dict, tmp_path: Path, setup: list[list], args: list, old: dict, new: dict, kills: int, stream: int) -> None:
    """Run `args` (IDX: the index) against fresh copies of the index `setup` makes, killing it at
    `kills` random moments; after each kill, the index is whole and one of `old` and `new`."""
    pristine = tmp_path / "pristine.idx"
    for command in setup:
        run_cli([a if a != "IDX" else pristine for a in command])
    timing = tmp_path / "timing.idx"
    shutil.copytree(pristine, timing)
    took = run_cli([a if a != "IDX" else timing for a in args])
    assert_whole_and_one_of(timing, new)
    for delay in kill_points(took, kills, stream):
        target = tmp_path / "target.idx"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(pristine, target)
        run_cli([a if a != "IDX" else target for a in args], kill_after=delay)
        assert_whole_and_one_of(target, old, new)
        # The next writer is not blocked by anything the killed one left behind.
        delete_from_index(target, ["b1"])


BUILD_BASE = ["index", "build", "-q", "--threads", "1", "-o", "IDX", "BASE"]


@pytest.mark.slow
def test_kill_9_during_index_add_leaves_the_old_or_the_new_index(data, tmp_path):
    setup = [[data["root"] / "base.jsonl" if a == "BASE" else a for a in BUILD_BASE]]
    args = ["index", "add", "-q", "--threads", "1", "IDX", data["root"] / "add.jsonl"]
    _kill_updates(data, tmp_path, setup, args, data["base"], data["after_add"], kills=8, stream=2)


@pytest.mark.slow
def test_kill_9_during_index_delete_leaves_the_old_or_the_new_index(data, tmp_path):
    setup = [[data["root"] / "base.jsonl" if a == "BASE" else a for a in BUILD_BASE],
             ["index", "add", "-q", "--threads", "1", "IDX", data["root"] / "add.jsonl"]]
    args = ["index", "delete", "-q", "IDX", "--ids", data["root"] / "doomed.txt"]
    _kill_updates(data, tmp_path, setup, args, data["after_add"], data["after_delete"], kills=6, stream=3)


def test_a_writer_killed_between_publishing_its_generation_and_switching_current(data, tmp_path):
    """The narrowest window of a write, made on purpose: the new generation is renamed into place
    but CURRENT still names the old one. Readers see the old index; the next writer must not
    trip over the orphan (it once failed on every later write with `Directory not empty`)."""
    target = tmp_path / "orphan.idx"
    run_cli(["index", "build", "-q", "-o", target, data["root"] / "base.jsonl"])
    shutil.copytree(target / "g000001", target / "g000002")
    (target / "g000002" / "meta.sqlite").write_bytes(b"half a generation")
    assert_whole_and_one_of(target, data["base"])
    run_cli(["index", "add", "-q", target, data["root"] / "add.jsonl"])
    assert_whole_and_one_of(target, data["after_add"])


# --- the model cache ----------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_during_first_use_conversion_leaves_no_entry_or_a_whole_one(tiny_checkpoint, tmp_path):
    env = {"VECPIPE_HOME": str(tmp_path / "home")}
    entry = tmp_path / "home" / "models" / tiny_checkpoint.name
    took = run_cli(["models", "path", tiny_checkpoint], env)
    for delay in kill_points(took, 6, stream=4):
        shutil.rmtree(entry, ignore_errors=True)
        run_cli(["models", "path", tiny_checkpoint], env, kill_after=delay)
        if entry.exists():
            verify_model_dir(entry)
    shutil.rmtree(entry, ignore_errors=True)
    run_cli(["models", "path", tiny_checkpoint], env)
    verify_model_dir(entry)
    # The next conversion removed what killed ones left in the cache (90 MB each for the real model).
    assert [p.name for p in entry.parent.iterdir()] == [tiny_checkpoint.name]
