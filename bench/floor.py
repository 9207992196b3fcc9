"""Batch search against an equal-work floor (issue 17): raw hnswlib plus the same per-hit work vecpipe does.

Raw `knn_query` returns label arrays while `vecpipe search` returns ids and fields, so the
yardstick is a minimal script doing the same work: read the query vectors (JSONL, orjson), load
the index's own graph.bin with hnswlib, `knn_query` all queries at once, fetch each hit's id and
fields from the index's own meta.sqlite (floor "sqlite") or from a Python list ("list"), and write
the hit records as JSONL with orjson. vecpipe runs `vecpipe search IDX --ef E -k 10 < queries`
with the same vector queries (no model). All three are whole processes, best of --rounds, the
runs alternating; the 40,954 x 384 vectors and 1,000 queries are bench/index.py's cache.

    .venv/bin/python bench/floor.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson

from sections import best_process_seconds, compile_bytecode, cpu_line, publish, timed_together

CACHE = Path.home() / ".cache" / "vecpipe-bench" / "index" / "all"
SECTION = ("<!-- bench/floor.py: begin -->", "<!-- bench/floor.py: end -->")
K = 10
FLOOR = r"""
import sqlite3, sys, hnswlib, numpy as np, orjson
graph, meta, queries_path, ef, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
rows = [orjson.loads(line) for line in open(queries_path, "rb")]
queries = np.array([r["embedding"] for r in rows], dtype=np.float32)
index = hnswlib.Index(space="cosine", dim=queries.shape[1])
index.load_index(graph)
index.set_ef(ef)
labels, distances = index.knn_query(queries, k=%d)
db = sqlite3.connect(meta)
if mode == "list":
    table = dict(((label, (key, fields)) for label, key, fields in db.execute("SELECT label, id, fields FROM items")))
    stored = lambda wanted: {label: table[label] for label in wanted}
else:
    def stored(wanted):
        marks = ",".join("?" * len(wanted))
        return {label: (key, fields) for label, key, fields in db.execute(f"SELECT label, id, fields FROM items WHERE label IN ({marks})", wanted)}
found = stored(sorted(set(labels.ravel().tolist())))
out = sys.stdout.buffer
for q, (row, dist) in enumerate(zip(labels.tolist(), distances.tolist())):
    for rank, (label, d) in enumerate(zip(row, dist), start=1):
        key, fields = found[label]
        record = {"query_id": rows[q]["id"], "rank": rank, "id": orjson.loads(key), "score": 1.0 - d, **orjson.loads(fields)}
        out.write(orjson.dumps(record) + b"\n")
""" % K


def labels_in_process(index: Path, generation: Path, queries: np.ndarray, ef: int, rounds: int) -> tuple[float, float]:
    """Best seconds of raw `knn_query` and of vecpipe's `search_labels` (labels and scores, no records)
    for all queries in one call, in one process, timed in turn (issue 17: the library >= 0.95x raw)."""
    import hnswlib

    from vecpipe.core.index.vector_index import VectorIndex

    raw = hnswlib.Index(space="cosine", dim=queries.shape[1])
    raw.load_index(str(generation / "graph.bin"))
    raw.set_ef(ef)
    with VectorIndex.open(index) as ours:
        return tuple(timed_together(lambda: raw.knn_query(queries, k=K), lambda: ours.search_labels(queries, K, ef=ef), rounds=rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    compile_bytecode()
    corpus = np.load(CACHE / "corpus.npy").astype(np.float32)
    queries = np.load(CACHE / "queries.npy")[:1000].astype(np.float32)
    texts = json.load(open(CACHE / "corpus.json"))
    rows = ["| ef | floor, SQLite fields (s) | floor, Python list (s) | vecpipe search (s) | vecpipe / floor SQLite | vecpipe / floor list "
            "| in process: raw knn_query (ms) | library search_labels (ms) | library / raw |", "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        docs, query_file = tmp / "docs.jsonl", tmp / "queries.jsonl"
        with open(docs, "wb") as f:
            for i, (text, vector) in enumerate(zip(texts, corpus)):
                f.write(orjson.dumps({"id": i, "text": text, "embedding": vector}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        with open(query_file, "wb") as f:
            for i, vector in enumerate(queries):
                f.write(orjson.dumps({"id": i, "embedding": vector}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        index = tmp / "idx"
        subprocess.run([sys.executable, "-m", "vecpipe", "index", "build", "-q", "-o", str(index), str(docs)], check=True)
        generation = next(index.glob("g0*"))
        for ef in (10, 20, 40, 80, 160, 320):
            floor = [sys.executable, "-c", FLOOR, str(generation / "graph.bin"), str(generation / "meta.sqlite"), str(query_file), str(ef)]
            sqlite_s = best_process_seconds(floor + ["sqlite"], args.rounds)
            list_s = best_process_seconds(floor + ["list"], args.rounds)
            ours = best_process_seconds([sys.executable, "-m", "vecpipe", "search", str(index), "--ef", str(ef), "-k", str(K)], args.rounds, stdin_path=query_file)
            raw_s, labels_s = labels_in_process(index, generation, queries, ef, args.rounds)
            rows.append(f"| {ef} | {sqlite_s:.3f} | {list_s:.3f} | {ours:.3f} | **{sqlite_s / ours:.2f}x** | {list_s / ours:.2f}x | "
                        f"{raw_s * 1000:.1f} | {labels_s * 1000:.1f} | **{raw_s / labels_s:.2f}x** |")
    lines = ["## Batch search against the equal-work floor (bench/floor.py)", "",
             f"Command: `.venv/bin/python bench/floor.py --rounds {args.rounds} --write bench/RESULTS.md`. {cpu_line()}; 1-minute load {os.getloadavg()[0]:.2f} at the start. "
             f"{len(corpus):,} x {corpus.shape[1]} vectors with their texts as the stored field, {len(queries)} vector queries in one "
             f"process, k {K}; whole processes, best of {args.rounds}. A ratio above 1 means vecpipe is faster than the floor (issue 17's target: >= 0.9x). "
             "The last three columns time the same 1,000 queries in one process, in turn (target: library / raw >= 0.95x).",
             "", *rows]
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
