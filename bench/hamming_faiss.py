"""vecpipe's binary search kernel against faiss's IndexBinaryFlat, the field's C++ reference (issue 4).

faiss is not a vecpipe dependency; run this in a bench venv that has it:

    python -m venv .bench-venv && .bench-venv/bin/pip install faiss-cpu numpy orjson
    .bench-venv/bin/python bench/hamming_faiss.py

Uses the embeddings bench/index.py cached (run that first). One query at a time, k=10, faiss on
one thread; numpy float brute force (matmul + argpartition) is the common baseline. Rounds alternate
the three, so a slow spell of a shared machine falls on all of them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # vecpipe without installing it
from sections import timed_together  # noqa: E402  (bench/sections.py, beside this script)
from vecpipe.core.index.flat import _as_words, _HammingScorer  # noqa: E402
from vecpipe.core.vectors.quantize import quantize  # noqa: E402

CACHE = Path.home() / ".cache" / "vecpipe-bench" / "index" / "all"
K, QUERIES = 10, 200


def main() -> None:
    corpus = np.load(CACHE / "corpus.npy").astype(np.float32)
    queries = np.load(CACHE / "queries.npy")[:QUERIES].astype(np.float32)
    codes, query_codes = quantize(corpus, "binary", None), quantize(queries, "binary", None)
    faiss.omp_set_num_threads(1)
    binary_index = faiss.IndexBinaryFlat(corpus.shape[1])
    binary_index.add(np.ascontiguousarray(codes.view(np.uint8)))
    scorer, query_words = _HammingScorer(codes, corpus.shape[1]), _as_words(query_codes.view(np.uint8))
    runs = {
        "numpy float brute force": lambda: [np.argpartition(-(corpus @ q), K)[:K] for q in queries],
        "faiss IndexBinaryFlat": lambda: [binary_index.search(q[None].view(np.uint8), K) for q in query_codes],
        "vecpipe Hamming distances + top-k": lambda: [scorer.top(q[None], K) for q in query_codes],
    }
    best = dict(zip(runs, timed_together(*runs.values())))
    _, faiss_labels = binary_index.search(query_codes.view(np.uint8), K)
    same = np.mean([set(a) == set(b) for a, b in zip(faiss_labels, (scorer.top(q[None], K)[0][0] for q in query_codes))])
    baseline = best["numpy float brute force"]
    print(f"{len(corpus)} x {corpus.shape[1]}-bit codes, {QUERIES} queries one at a time, k={K}, faiss {faiss.__version__}")
    print("| search | ms per query | vs numpy float |\n|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds / QUERIES * 1e3:.3f} | {baseline / seconds:.1f}x |")
    print(f"\nQueries whose top-{K} sets agree between faiss and vecpipe: {same:.3f} (ties at the k-th distance may differ).")


if __name__ == "__main__":
    main()
