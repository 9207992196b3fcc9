"""Flat quantized search kernels (issue 17): vecpipe's binary and int8 scans against faiss and float brute force.

Data: the 40,954 x 384 MiniLM embeddings and the queries bench/index.py cached (run it first).
k = 10, one query at a time (medians over 200 queries) and in batches of 200. Rounds alternate
the runs, so a slow spell of the shared machine falls on all of them.
- binary: `vecpipe` is the flat index's own scorer (flat._HammingScorer, on faiss since this
  issue) called as search does; `faiss` is a bare IndexBinaryFlat on the same codes;
- int8: `vecpipe` is flat._DequantizedScorer (float query against the stored codes' bucket
  centres, on faiss's 8-bit scalar quantizer); the baseline is numpy float brute force (matmul
  + argpartition) on the float vectors;
- the candidates that were not chosen, numkong and simsimd, are timed when installed
  (`pip install numkong simsimd` in the venv to reproduce the choice; they are not dependencies).
Threads: everything on one thread (faiss.omp_set_num_threads(1), OMP/BLAS limits set below).

    .venv/bin/python bench/kernels.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from sections import cpu_line, publish, timed_together  # noqa: E402

CACHE = Path.home() / ".cache" / "vecpipe-bench" / "index" / "all"
SECTION = ("<!-- bench/kernels.py: begin -->", "<!-- bench/kernels.py: end -->")
K, QUERIES = 10, 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    import faiss

    from vecpipe.core.index.flat import _DequantizedScorer, _HammingScorer
    from vecpipe.core.vectors.quantize import learn_calibration, quantize
    from vecpipe.formats.vectors import VectorBatch

    faiss.omp_set_num_threads(1)
    corpus = np.load(CACHE / "corpus.npy").astype(np.float32)
    queries = np.load(CACHE / "queries.npy")[:QUERIES].astype(np.float32)
    dim = corpus.shape[1]
    bits, query_bits = quantize(corpus, "binary", None), quantize(queries, "binary", None)
    calibration = learn_calibration([VectorBatch(list(range(len(corpus))), [{}] * len(corpus), corpus, {}, list(range(1, len(corpus) + 1)), "corpus")])
    int8 = quantize(corpus, "int8", calibration.ranges)
    hamming, dequantized = _HammingScorer(bits, dim), _DequantizedScorer(int8, "int8", calibration.ranges)
    bare = faiss.IndexBinaryFlat(bits.shape[1] * 8)
    bare.add(np.ascontiguousarray(bits.view(np.uint8)))

    def one_by_one(search, rows):
        return lambda: [search(rows[i : i + 1]) for i in range(len(rows))]

    def float_brute(rows):
        scores = rows @ corpus.T
        return np.argpartition(-scores, K, axis=1)[:, :K]

    runs = {
        "binary: faiss IndexBinaryFlat": (one_by_one(lambda q: bare.search(q.view(np.uint8), K), query_bits), lambda: bare.search(query_bits.view(np.uint8), K)),
        "binary: vecpipe": (one_by_one(lambda q: hamming.top(q, K), query_bits), lambda: hamming.top(query_bits, K)),
        "int8: vecpipe (float query, stored codes)": (one_by_one(lambda q: dequantized.top(q, K), queries), lambda: dequantized.top(queries, K)),
        "float brute force (numpy)": (one_by_one(float_brute, queries), lambda: float_brute(queries)),
    }
    runs.update(_candidates(bits, query_bits, int8, queries))
    singles = dict(zip(runs, timed_together(*(pair[0] for pair in runs.values()), rounds=args.rounds)))
    batches = dict(zip(runs, timed_together(*(pair[1] for pair in runs.values()), rounds=args.rounds)))
    per_query = {name: seconds / QUERIES * 1000 for name, seconds in singles.items()}
    batch_ms = {name: seconds * 1000 for name, seconds in batches.items()}
    lines = ["## Flat quantized search kernels (bench/kernels.py)", "",
             f"Command: `.venv/bin/python bench/kernels.py --write bench/RESULTS.md`. {cpu_line()}; one thread; "
             f"1-minute load {os.getloadavg()[0]:.2f} at the start. {len(corpus):,} x {dim} MiniLM vectors (SciFact corpus and more, "
             f"bench/index.py's cache), k = {K}, best of {args.rounds} rounds.", "",
             "| kernel | one query (ms, mean of 200) | batch of 200 (ms) |", "|---|---|---|"]
    lines += [f"| {name} | {per_query[name]:.3f} | {batch_ms[name]:.1f} |" for name in runs]
    faiss_name, ours, int8_name, float_name = "binary: faiss IndexBinaryFlat", "binary: vecpipe", "int8: vecpipe (float query, stored codes)", "float brute force (numpy)"
    lines += ["", f"Ratios: binary vecpipe vs faiss **{per_query[faiss_name] / per_query[ours]:.2f}x** one query, "
              f"**{batch_ms[faiss_name] / batch_ms[ours]:.2f}x** in batches (target >= 0.8x); int8 vecpipe vs float brute force "
              f"**{per_query[float_name] / per_query[int8_name]:.2f}x** one query (target >= 2x), "
              f"{batch_ms[float_name] / batch_ms[int8_name]:.2f}x in batches (BLAS's matrix product wins there)."]
    publish("\n".join(lines) + "\n", args.write, SECTION)


def _candidates(bits, query_bits, int8, queries) -> dict:
    """numkong and simsimd, the SIMD libraries not chosen, when they are installed."""
    runs = {}
    int8_queries = np.clip(np.round(queries / np.abs(queries).max() * 127), -127, 127).astype(np.int8)
    if importlib.util.find_spec("numkong"):
        import numkong

        packed = numkong.hammings_pack(bits.view(np.uint8), dtype="uint1")
        runs["binary: numkong hammings_packed"] = (
            lambda: [np.argpartition(np.asarray(numkong.hammings_packed(query_bits[i : i + 1].view(np.uint8), packed))[0], K)[:K] for i in range(QUERIES)],
            lambda: np.argpartition(np.asarray(numkong.hammings_packed(query_bits.view(np.uint8), packed)), K, axis=1)[:, :K])
        runs["int8: numkong dot (int8 query)"] = (
            lambda: [np.argpartition(-np.asarray(numkong.cdist(int8_queries[i : i + 1], int8, metric="dot", out_dtype="float32"))[0], K)[:K] for i in range(QUERIES)],
            lambda: np.argpartition(-np.asarray(numkong.cdist(int8_queries, int8, metric="dot", out_dtype="float32")), K, axis=1)[:, :K])
    if importlib.util.find_spec("simsimd"):
        import simsimd

        runs["binary: simsimd cdist hamming"] = (
            lambda: [np.argpartition(np.asarray(simsimd.cdist(query_bits[i : i + 1].view(np.uint8), bits.view(np.uint8), metric="hamming", dtype="bin8"))[0], K)[:K] for i in range(QUERIES)],
            lambda: np.argpartition(np.asarray(simsimd.cdist(query_bits.view(np.uint8), bits.view(np.uint8), metric="hamming", dtype="bin8")), K, axis=1)[:, :K])
        runs["int8: simsimd dot (int8 query)"] = (
            lambda: [np.argpartition(-np.asarray(simsimd.cdist(int8_queries[i : i + 1], int8, metric="dot"))[0], K)[:K] for i in range(QUERIES)],
            lambda: np.argpartition(-np.asarray(simsimd.cdist(int8_queries, int8, metric="dot")), K, axis=1)[:, :K])
    return runs


if __name__ == "__main__":
    main()
