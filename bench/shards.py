"""Sharded indexes (issue 16): build time, bytes, search latency and recall against the shard count.

The 40,954 x 384 MiniLM vectors and 1,000 queries bench/index.py cached (run it first), built as
one index and as 2, 4 and 8 shards (hnswlib, M 16, ef_construction 200, all cores), then searched
in process: one query at a time (median latency) and all 1,000 in one call, k 10, ef 100, recall
against exact brute force over the same vectors, then one index and 4 shards at several ef (latency
against recall). Shards build on one thread each, fed by one router; search walks the shards side
by side (one share on the calling thread) and merges by score.

    .venv/bin/python bench/shards.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sections import cpu_line, publish

CACHE = Path.home() / ".cache" / "vecpipe-bench" / "index" / "all"
SECTION = ("<!-- bench/shards.py: begin -->", "<!-- bench/shards.py: end -->")
K = 10
CURVE_EF = {1: (100, 200, 300, 400), 4: (20, 50, 100)}  # ef per graph for the latency-recall table


def batches(vectors: np.ndarray, provenance: dict, size: int = 4096):
    from vecpipe.formats.vectors import VectorBatch

    for start in range(0, len(vectors), size):
        rows = range(start, min(start + size, len(vectors)))
        yield VectorBatch(list(rows), [{}] * len(rows), vectors[start : start + size], provenance, [r + 1 for r in rows], "bench")


def one_at_a_time(index, queries: np.ndarray, exact: np.ndarray, ef: int) -> tuple[float, float]:
    """(median seconds per one-query search, recall@K against `exact`)."""
    latencies, found = [], 0
    for query, truth in zip(queries, exact):
        started = time.perf_counter()
        hits = index.search(query[None, :], K, ef=ef).hits[0]
        latencies.append(time.perf_counter() - started)
        found += len({h.id for h in hits} & set(truth.tolist()))
    return statistics.median(latencies), found / exact.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    from vecpipe.core.index.shards import ShardedIndex, build_sharded
    from vecpipe.core.index.vector_index import VectorIndex, build_index

    corpus = np.load(CACHE / "corpus.npy").astype(np.float32)
    queries = np.load(CACHE / "queries.npy")[:1000].astype(np.float32)
    provenance = {"dim": corpus.shape[1], "normalized": True}
    exact = np.argsort(-(queries @ corpus.T), axis=1)[:, :K]
    curve = ["| index | ef per graph | one query, median (ms) | recall@10 |", "|---|---|---|---|"]
    rows = ["| shards | build (s) | per million vectors (s) | bytes on disk per vector | one query, median (ms) | 1,000 queries in one call (s) | recall@10 |",
            "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for shards in (1, 2, 4, 8):
            path = Path(tmp) / f"idx{shards}"
            started = time.perf_counter()
            if shards == 1:
                build_index(path, batches(corpus, provenance))
            else:
                build_sharded(path, batches(corpus, provenance), shards)
            build = time.perf_counter() - started
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            with (VectorIndex.open(path) if shards == 1 else ShardedIndex.open(path)) as index:
                latencies = []
                for query in queries[:200]:
                    started = time.perf_counter()
                    index.search(query[None, :], K)
                    latencies.append(time.perf_counter() - started)
                started = time.perf_counter()
                hits = index.search(queries, K).hits
                batch = time.perf_counter() - started
                if shards in (1, 4):
                    for ef in CURVE_EF[shards]:
                        latency, recall = one_at_a_time(index, queries[:300], exact[:300], ef)
                        curve.append(f"| {'one index' if shards == 1 else '4 shards'} | {ef} | {latency * 1000:.3f} | {recall:.4f} |")
            found = sum(len({h.id for h in row} & set(truth.tolist())) for row, truth in zip(hits, exact))
            rows.append(f"| {shards} | {build:.2f} | {build / len(corpus) * 1e6:.0f} | {size / len(corpus):.0f} | "
                        f"{statistics.median(latencies) * 1000:.3f} | {batch:.3f} | {found / exact.size:.4f} |")
    lines = ["## Sharded indexes (bench/shards.py)", "",
             f"Command: `.venv/bin/python bench/shards.py --write bench/RESULTS.md`. {cpu_line()}; 1-minute load {os.getloadavg()[0]:.2f} "
             f"at the start. {len(corpus):,} x {corpus.shape[1]} vectors, k {K}, ef 100 (the default).", "", *rows]
    lines += ["", "Latency against recall, one query at a time (300 queries): HNSW's walk costs about ef distance "
              "evaluations whatever the graph's size, so each shard costs nearly what the whole index does at the same ef; "
              "compare the two at equal recall.", "", *curve]
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
