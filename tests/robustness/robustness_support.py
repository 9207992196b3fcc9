"""Shared by the robustness suites: running vecpipe (in process or as a real process), checking
that a refusal is one line with the documented exit code, and fingerprinting directories to
prove that a failed command wrote nothing."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from vecpipe.cli import app
from vecpipe.formats.vectors import VectorBatch, VectorWriter

REPO = Path(__file__).resolve().parents[2]
RUNNER = CliRunner()


@dataclass
class Outcome:
    """What a run of `vecpipe` gave, the same for CliRunner and for a real process."""

    code: int
    stdout: bytes
    stderr: str
    crashed: BaseException | None = None  # an exception that escaped the command (CliRunner only)


def run_in_process(args: list[str], stdin: bytes | None = None) -> Outcome:
    result = RUNNER.invoke(app, [str(a) for a in args], input=stdin)
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stdout_bytes, result.stderr, escaped)


def run_process(args: list[str], stdin: bytes | None = None, env: dict | None = None, cwd: Path = REPO, timeout: float = 120) -> Outcome:
    proc = subprocess.run(
        [sys.executable, "-m", "vecpipe", *[str(a) for a in args]],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,  # a guard against hangs, not a measurement
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def assert_one_line_refusal(outcome: Outcome, command: str, where: str | None, problem: str, code: int) -> None:
    """`vecpipe CMD: SOURCE[:LINE]: problem` and nothing else on stderr, the exit code, no traceback."""
    assert outcome.crashed is None, f"an exception escaped: {outcome.crashed!r}"
    assert "Traceback" not in outcome.stderr, outcome.stderr
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    prefix = f"vecpipe {command}: " + (f"{where}: " if where is not None else "")
    assert lines[0].startswith(prefix), (lines[0], prefix)
    assert problem in lines[0][len(prefix):], (lines[0], problem)
    assert outcome.code == code, (outcome.code, outcome.stderr)


# --- "nothing written half-way" ------------------------------------------------------------


def _ignored(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    # Writer lock files (flock targets beside each index) are expected to stay; the stamp
    # records of already-hashed model files are a cache of hashes, not output.
    return (name.startswith(".") and name.endswith(".lock")) or relative.startswith("home/stamps")


def fingerprint(root: Path) -> dict[str, str]:
    """Every file and directory under `root` (relative path -> sha256 of its bytes, or "dir")."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            relative = path.relative_to(root).as_posix()
            if _ignored(relative):
                continue
            found[relative] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# --- data ---------------------------------------------------------------------------------


def vector_records(matrix: np.ndarray, provenance: dict, ids: list | None = None, fields: list | None = None) -> bytes:
    """Vector records as `vecpipe embed` writes them."""
    ids = list(range(len(matrix))) if ids is None else ids
    fields = [{"text": f"text {i}"} for i in ids] if fields is None else fields
    out = io.BytesIO()
    VectorWriter(out).write(VectorBatch(ids, fields, matrix, provenance, list(range(1, len(ids) + 1))))
    return out.getvalue()


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def nested(depth: int) -> str:
    """A JSON record holding `depth` objects and arrays, the record itself included."""
    return '{"text": "deep", "x": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"

