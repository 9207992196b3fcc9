"""Fault injection: a full disk, simulated in real processes with RLIMIT_FSIZE.

With SIGXFSZ ignored, a write past the limit fails with EFBIG as it would with ENOSPC. Every
writer must stop with one line and exit status 6, and leave what was there before (the index,
the earlier output, the model cache) exactly as it was, with no temp files.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from robustness_support import Outcome, assert_one_line_refusal, fingerprint, unit_rows, vector_records
from vecpipe.core.index.vector_index import build_index
from vecpipe.formats.vectors import read_matrix

PROVENANCE = {"model": "disk-test", "dim": 64, "normalized": True}
LIMIT = 300_000  # bytes per file: more than any existing file below, less than the new ones


def limited_to(limit: int):
    def apply() -> None:  # runs in the child between fork and exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def run_on_a_full_disk(args: list, cwd: Path) -> Outcome:
    proc = subprocess.run([sys.executable, "-m", "vecpipe", *map(str, args)], capture_output=True, cwd=cwd,
                          env={**os.environ, "VECPIPE_HOME": str(cwd / "home")}, preexec_fn=limited_to(LIMIT), timeout=300)
    return Outcome(proc.returncode, proc.stdout, proc.stderr.decode())


@pytest.fixture
def workdir(tmp_path) -> Path:
    """Small existing things (an index, an earlier output) and big inputs that will not fit."""
    (tmp_path / "small.jsonl").write_bytes(vector_records(unit_rows(50, 64, seed=1), PROVENANCE))
    ids = [f"n{i}" for i in range(3000)]
    (tmp_path / "big.jsonl").write_bytes(vector_records(unit_rows(3000, 64, seed=2), PROVENANCE, ids))
    fat = [{"text": "x" * 2000} for _ in ids]  # small vectors, big fields: the SQLite store fills the disk
    (tmp_path / "fat.jsonl").write_bytes(vector_records(unit_rows(3000, 4, seed=3), {**PROVENANCE, "dim": 4}, ids, fat))
    build_index(tmp_path / "idx", [read_matrix(str(tmp_path / "small.jsonl"))])
    build_index(tmp_path / "idx4", [_first(tmp_path / "fat.jsonl", 5)])
    (tmp_path / "out.npy").write_bytes(b"an earlier result")
    (tmp_path / "out.jsonl").write_bytes(b"an earlier result\n")
    (tmp_path / "text.txt").write_text("".join(f"line {i} of a long input\n" for i in range(20000)))
    (tmp_path / "home" / "models").mkdir(parents=True)
    return tmp_path


def _first(path: Path, n: int):
    batch = read_matrix(str(path))
    return type(batch)(batch.ids[:n], batch.fields[:n], batch.matrix[:n], batch.provenance, batch.lines[:n], batch.source)


CASES = {
    "index add: the graph": (["index", "add", "-q", "idx", "big.jsonl"], "index add", "idx", "the graph file was cut short (is the disk full?)"),
    "index add: the SQLite store": (["index", "add", "-q", "idx4", "fat.jsonl"], "index add", "idx4", "the metadata store could not be written"),
    "index build --overwrite": (["index", "build", "-q", "--overwrite", "-o", "idx", "big.jsonl"], "index build", "idx", "the graph file was cut short"),
    "index build --quantize": (["index", "build", "-q", "-o", "new.idx", "--quantize", "binary", "--keep-float", "big.jsonl"], "index build", "new.idx", "no space left to write (File too large)"),
    "quantize --format npy": (["quantize", "--to", "float16", "--format", "npy", "-o", "out.npy", "big.jsonl"], "quantize", "out.npy", "no space left to write (File too large)"),
    "truncate -o": (["truncate", "--dim", "32", "-o", "out.jsonl", "big.jsonl"], "truncate", "out.jsonl", "no space left to write (File too large)"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_full_disk_is_one_line_exit_6_and_the_previous_state_intact(name, workdir):
    args, command, where, problem = CASES[name]
    before = fingerprint(workdir)
    outcome = run_on_a_full_disk(args, workdir)
    assert_one_line_refusal(outcome, command, where, problem, 6)
    assert fingerprint(workdir) == before  # old index and output untouched, no temp files


def test_a_full_disk_while_writing_npy_parts_keeps_the_earlier_parts(workdir):
    from vecpipe.formats.vectors import VectorWriter

    with VectorWriter(None, "npy", npy_path=str(workdir / "parts")) as writer:
        writer.write(read_matrix(str(workdir / "small.jsonl")))
    before = fingerprint(workdir)
    outcome = run_on_a_full_disk(["quantize", "--to", "float16", "--format", "npy", "-o", "parts", "big.jsonl"], workdir)
    assert_one_line_refusal(outcome, "quantize", "parts", "no space left to write (File too large)", 6)
    assert fingerprint(workdir) == before  # the earlier parts untouched, no temp directory left


def test_a_full_disk_during_embed_keeps_the_earlier_output(workdir, tiny_model_dir):
    before = fingerprint(workdir)
    outcome = run_on_a_full_disk(["embed", "-q", "-m", tiny_model_dir, "-o", "out.jsonl", "text.txt"], workdir)
    assert_one_line_refusal(outcome, "embed", "out.jsonl", "no space left to write (File too large)", 6)
    assert fingerprint(workdir) == before


def test_a_full_disk_during_first_use_conversion_leaves_no_cache_entry(workdir, tiny_checkpoint):
    before = fingerprint(workdir)
    outcome = run_on_a_full_disk(["models", "path", tiny_checkpoint], workdir)
    notice, *refusal = outcome.stderr.splitlines(keepends=True)
    assert notice.endswith("(first use only)\n")
    outcome.stderr = "".join(refusal)
    assert_one_line_refusal(outcome, "models path", str(workdir / "home" / "models" / "tiny-bert"), "no space left to write", 6)
    assert fingerprint(workdir) == before
