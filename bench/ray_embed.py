"""Ray's overhead (issue 16): `vecpipe embed --engine ray --workers 2` against a local `vecpipe embed`
using both cores, on every SICK-R sentence (19,854 short texts), whole processes.

Two Ray runs: joining a cluster already running on this machine (`ray start --head`, as on a real
cluster, where the cluster outlives the job), and with no --address, where the run starts and stops
its own local cluster. The runs alternate; the vectors of each Ray run are compared with the local
run's (minimum cosine).

    .venv/bin/python bench/ray_embed.py [--rounds N] [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sections import compile_bytecode, cpu_line, publish

REPO = Path(__file__).resolve().parent.parent
SICKR = REPO.parent / "shared" / "data" / "sickr" / "test.jsonl"
SECTION = ("<!-- bench/ray_embed.py: begin -->", "<!-- bench/ray_embed.py: end -->")
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_embed(texts: Path, out: Path, *extra: str) -> float:
    started = time.perf_counter()
    with open(out, "wb") as f:
        subprocess.run([sys.executable, "-m", "vecpipe", "embed", "-q", *extra, str(texts)], stdout=f, check=True)
    return time.perf_counter() - started


def vectors(path: Path) -> np.ndarray:
    return np.array([json.loads(line)["embedding"] for line in open(path)], dtype=np.float32)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    compile_bytecode()
    port = free_port()
    subprocess.run([str(RAY), "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard", "false",
                    "--disable-usage-stats"], check=True, capture_output=True)
    times: dict[str, list[float]] = {"local": [], "joined": [], "own": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            texts = tmp / "sick.txt"
            with open(texts, "w", encoding="utf-8") as f:
                for line in open(SICKR, encoding="utf-8"):
                    row = json.loads(line)
                    f.write(row["sentence1"] + "\n" + row["sentence2"] + "\n")
            for _ in range(args.rounds):
                times["local"].append(timed_embed(texts, tmp / "local.jsonl"))
                times["joined"].append(timed_embed(texts, tmp / "joined.jsonl", "--engine", "ray", "--workers", "2", "--address", f"127.0.0.1:{port}"))
                times["own"].append(timed_embed(texts, tmp / "own.jsonl", "--engine", "ray", "--workers", "2"))
            local = vectors(tmp / "local.jsonl")
            cosines = {name: min_cosine(vectors(tmp / f"{name}.jsonl"), local) for name in ("joined", "own")}
            count = len(local)
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True)
    best = {name: min(values) for name, values in times.items()}
    lines = ["## Ray embed overhead (bench/ray_embed.py)", "",
             f"Command: `.venv/bin/python bench/ray_embed.py --write bench/RESULTS.md`. {cpu_line()}; 1-minute load {os.getloadavg()[0]:.2f} "
             f"at the end. Every SICK-R sentence ({count:,} short texts), default model, whole processes, best of {args.rounds}, alternating. "
             "A ratio is local seconds / Ray seconds (issue 16's target: >= 0.85x).", "",
             "| run | seconds | vs local | min cosine to local |", "|---|---|---|---|",
             f"| local `vecpipe embed` (2 onnxruntime threads) | {best['local']:.2f} | 1.00x | - |",
             f"| `--engine ray --workers 2 --address` (joins a running `ray start --head`) | {best['joined']:.2f} | "
             f"**{best['local'] / best['joined']:.2f}x** | {cosines['joined']:.6f} |",
             f"| `--engine ray --workers 2` (starts and stops its own cluster) | {best['own']:.2f} | "
             f"{best['local'] / best['own']:.2f}x | {cosines['own']:.6f} |"]
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
