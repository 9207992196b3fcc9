"""Shared by the benchmarks. bench/RESULTS.md is shared too: each benchmark owns the part
between its own begin/end markers."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def compile_bytecode() -> None:
    """Byte-compile vecpipe's sources before timing whole processes, as `pip install` does for an
    installed package: an editable checkout under PYTHONDONTWRITEBYTECODE=1 (this sandbox sets it)
    would otherwise recompile every module on every run (~45 ms of a one-off search)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "vecpipe")], check=True)


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_line() -> str:
    """The CPU model, its core count and which SIMD extensions it has, for every benchmark figure."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    import os

    have = [f for f in SIMD_FLAGS if f in flags] or ["none of " + ", ".join(SIMD_FLAGS)]
    return f"CPU: {model}, {os.cpu_count()} cores; SIMD: {' '.join(have)}"


def write_section(path: Path, text: str, markers: tuple[str, str]) -> None:
    """Replace the part of `path` between `markers` (or append it), keeping what others wrote."""
    from vecpipe.core.atomic import write_bytes_atomic

    begin, end = markers
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{begin}\n{text}{end}\n"
    if begin in old:
        before, rest = old.split(begin, 1)
        new = before + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    write_bytes_atomic(path, new.encode())


def publish(text: str, path: Path | None, markers: tuple[str, str]) -> None:
    """Print a benchmark's report, and put it in `path` (bench/RESULTS.md) when one is given."""
    print(text)
    if path is not None:
        write_section(path, text, markers)


def timed_together(*fns, rounds: int = 5) -> list[float]:
    """Best seconds of each function over `rounds` rounds that run them in turn, so that a slow
    spell of this shared machine falls on every one of them rather than on one."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def best_process_seconds(command: list[str], rounds: int, env: dict | None = None, stdin_path: Path | None = None) -> float:
    """Best wall time of `rounds` runs of `command` as a whole process (stdout discarded)."""
    best = float("inf")
    for _ in range(rounds):
        with open(stdin_path or os.devnull, "rb") as stdin:
            started = time.perf_counter()
            subprocess.run(command, stdin=stdin, stdout=subprocess.DEVNULL, check=True, env=env)
            best = min(best, time.perf_counter() - started)
    return best


# sentence-transformers timed around `encode` (batch size 32, warmed up), in the peers venv:
# argv = checkpoint, texts.jsonl, threads; prints the seconds.
ST_ENCODE_SCRIPT = """
import json, sys, time, torch
from sentence_transformers import SentenceTransformer
torch.set_num_threads(int(sys.argv[3]))
texts = [json.loads(line)["text"] for line in open(sys.argv[2])]
model = SentenceTransformer(sys.argv[1], device="cpu")
model.encode(texts[:8], batch_size=32)
started = time.perf_counter()
model.encode(texts, batch_size=32)
print(time.perf_counter() - started)
"""
