"""Hybrid retrieval (issue 15): quality on SciFact, lexical build speed, and search latency, side by side.

1. SciFact nDCG@10: bm25s run directly (English stopwords, PyStemmer English, k1 1.5, b 0.75,
   lucene) beside vecpipe's lexical mode with the same settings; dense (all-MiniLM-L6-v2);
   hybrid RRF (k 60) and convex mixes. Dense vectors come from the embedding cache.
2. Lexical build: vecpipe's lexical part (tokenize, index, save, labels) against bm25s's own
   tokenize + index on the same texts (the ~41k texts of bench/index.py's corpus), alternating
   rounds; bytes per document.
3. Latency, one query at a time on bench/index.py's ~41k-vector index built with --lexical:
   dense search (k 10) against hybrid search (dense and BM25 top 100 each, RRF, top 10), each
   also with the query's embedding, which a real search pays in both modes; then whole one-off
   `vecpipe search DIR "text"` processes in each mode, with scipy importable (it is in the dev
   venv, and bm25s imports scipy.sparse whenever it can) and without it (a runtime install of
   vecpipe, whose dependencies do not include scipy).

    .venv/bin/python bench/hybrid.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sections import cpu_line, publish, timed_together

REPO = Path(__file__).resolve().parent.parent
SCIFACT = REPO.parent / "shared" / "data" / "scifact"
SECTION = ("<!-- bench/hybrid.py: begin -->", "<!-- bench/hybrid.py: end -->")
INDEX_CACHE = Path.home() / ".cache" / "vecpipe-bench" / "index"  # bench/index.py's embeddings


def quality() -> list[str]:
    import bm25s
    import Stemmer

    from vecpipe.core.eval import evaluation as ev
    from vecpipe.core.eval.metrics import evaluate_retrieval
    from vecpipe.core.models.kinds import load_model
    from vecpipe.core.retrieval.modes import Fusion

    data = ev.load_retrieval_data(str(SCIFACT / "corpus.jsonl"), str(SCIFACT / "queries.jsonl"), str(SCIFACT / "qrels" / "test.tsv"))
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    retriever.index(bm25s.tokenize(data.doc_texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    found, scores = retriever.retrieve(bm25s.tokenize(data.query_texts, stopwords="en", stemmer=stemmer, show_progress=False),
                                       k=1000, show_progress=False)
    direct = {qid: {data.doc_ids[d]: float(s) for d, s in zip(row, score_row) if s > 0}
              for qid, row, score_row in zip(data.query_ids, found, scores)}
    docs, queries = ev.embed_retrieval_data(ev.Embedder(load_model()), data)
    rows = [("bm25s, run directly", evaluate_retrieval(direct, data.qrels, [10]).main_score)]
    plan = [("vecpipe lexical (same settings)", "lexical", None), ("vecpipe dense (all-MiniLM-L6-v2)", "dense", None),
            ("vecpipe hybrid, RRF k=60", "hybrid", Fusion("rrf"))]
    plan += [(f"vecpipe hybrid, convex alpha={a}", "hybrid", Fusion("convex", alpha=a)) for a in (0.3, 0.5, 0.7)]
    for label, mode, fusion in plan:
        rows.append((label, ev.evaluate_config(data, docs, queries, ev.SearchConfig(), mode=mode, fusion=fusion).main_score))
    return ["| SciFact (5183 documents, 300 queries) | nDCG@10 |", "|---|---|"] + [f"| {label} | {score:.5f} |" for label, score in rows]


def build_speed(texts: list[str]) -> list[str]:
    import bm25s
    import Stemmer

    from vecpipe.core.index.lexical import LexicalSettings, build

    stemmer = Stemmer.Stemmer("english")
    rows = [(n, {"text": t}) for n, t in enumerate(texts)]
    entries = []

    def bm25s_own():
        bm25s.BM25().index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)

    def vecpipe_lexical():
        with tempfile.TemporaryDirectory() as tmp:
            entries.append(build(Path(tmp), rows, LexicalSettings()))

    own, ours = timed_together(bm25s_own, vecpipe_lexical, rounds=3)
    entry = entries[-1]
    return [
        f"Lexical build on {len(texts)} texts (best of 3 alternating rounds): bm25s tokenize + index {own:.2f} s; "
        f"vecpipe's lexical part (the same, plus saving and the label map) {ours:.2f} s: **{own / ours:.2f}x** bm25s's speed. "
        f"On disk: {entry['bytes'] / 1e6:.1f} MB, **{entry['bytes_per_document']:.0f} bytes per document**.",
    ]


def one_off(path: Path, runs: int = 8) -> list[str]:
    import os
    import statistics
    import subprocess
    import sys

    from sections import compile_bytecode

    compile_bytecode()
    lines = ["", "| one-off `vecpipe search DIR \"compress a directory\"`, median of 8 | dense | hybrid | ratio |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as blocker:
        (Path(blocker) / "scipy").mkdir()
        (Path(blocker) / "scipy" / "__init__.py").write_text("raise ImportError('not installed')\n")
        for label, extra in (("scipy importable", None), ("without scipy (a runtime install)", blocker)):
            env = dict(os.environ)
            if extra:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra, env.get("PYTHONPATH")]))
            times = {"dense": [], "hybrid": []}
            for _ in range(runs):
                for mode in times:
                    started = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "vecpipe", "search", str(path), "compress a directory", "--mode", mode, "--json"],
                                   env=env, check=True, capture_output=True)
                    times[mode].append(time.perf_counter() - started)
            dense, hybrid = statistics.median(times["dense"]), statistics.median(times["hybrid"])
            lines.append(f"| {label} | {dense:.3f} s | {hybrid:.3f} s | {hybrid / dense:.2f}x |")
    return lines


def latency(repeat: int) -> list[str]:
    import index as index_bench  # bench/index.py: the same corpus and query embeddings

    from vecpipe.core.index.lexical import LexicalSettings
    from vecpipe.core.index.vector_index import BuildOptions, VectorIndex, build_index
    from vecpipe.core.models.kinds import load_model
    from vecpipe.core.retrieval.modes import ModeRequest, search

    corpus, texts, query_vectors, provenance = index_bench.embedded(INDEX_CACHE, None)
    query_texts = index_bench.query_texts(set(texts), len(query_vectors))[:repeat]
    query_vectors = query_vectors[:repeat]
    model = load_model()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "idx"
        started = time.perf_counter()
        build_index(path, index_bench.batches(corpus, texts, provenance), BuildOptions(lexical=LexicalSettings()))
        build_seconds = time.perf_counter() - started
        with VectorIndex.open(path) as idx:
            dense_request, hybrid_request = ModeRequest("dense", k=10), ModeRequest("hybrid", k=10)
            search(idx, hybrid_request, query_texts[:2], query_vectors[:2], provenance)  # load the lexical part once

            def one_by_one(request, embed: bool):
                def run():
                    for n, text in enumerate(query_texts):
                        vector = model.embed([text], prompt=model.query_prompt()) if embed else query_vectors[n : n + 1]
                        search(idx, request, [text], vector, provenance)
                return run

            dense_s, hybrid_s, dense_e, hybrid_e = timed_together(
                one_by_one(dense_request, False), one_by_one(hybrid_request, False),
                one_by_one(dense_request, True), one_by_one(hybrid_request, True), rounds=3)
        whole = one_off(path)
    per = lambda s: 1000 * s / len(query_texts)  # noqa: E731
    return [
        f"Latency on {len(corpus)} vectors + BM25 (bench/index.py's corpus; `build_index(..., lexical=...)` took {build_seconds:.1f} s), "
        f"{len(query_texts)} queries one at a time, best of 3 alternating rounds:",
        "",
        "| per query | dense (k 10) | hybrid (RRF of dense and BM25 top 100 each) | ratio |",
        "|---|---|---|---|",
        f"| search only | {per(dense_s):.2f} ms | {per(hybrid_s):.2f} ms | {hybrid_s / dense_s:.2f}x |",
        f"| embedding the query + search | {per(dense_e):.2f} ms | {per(hybrid_e):.2f} ms | **{hybrid_e / dense_e:.2f}x** |",
    ] + whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200, help="Queries timed one at a time.")
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    import index as index_bench

    lines = ["## Hybrid retrieval (bench/hybrid.py)", "",
             "Command: `.venv/bin/python bench/hybrid.py --write bench/RESULTS.md`. " + cpu_line() + ".", ""]
    lines += quality() + [""]
    lines += build_speed(index_bench.corpus_texts()) + [""]
    lines += latency(args.queries)
    lines += ["", f"1-minute load average at the end: {os.getloadavg()[0]:.2f}."]
    publish("\n".join(lines) + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
