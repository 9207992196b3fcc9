"""PCA against prefix truncation on SciFact (issue 4): nDCG@10 of exact search at each kept dimension.

The default model was not trained with Matryoshka loss, so its first N dimensions are not its
best N. `vecpipe truncate --pca N --fit SAMPLE` rotates onto the sample's principal axes first.
This runs the library code behind those commands: the corpus and queries are embedded as
`vecpipe eval retrieval` embeds them (through the embedding cache, so a second run is fast), the
PCA is fitted on the first --sample corpus vectors (a user's `--fit` sample; queries never take
part), and both sides are searched exactly, as MTEB does.

    .venv/bin/python bench/pca.py [--write bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sections import publish

from vecpipe.core.eval.evaluation import (
    Embedder,
    SearchConfig,
    Vectors,
    embed_retrieval_data,
    evaluate_config,
    load_retrieval_data,
    truncated,
)
from vecpipe.core.models.kinds import load_model
from vecpipe.core.vectors.truncate import PCAFitter
from vecpipe.formats.vectors import VectorBatch

SCIFACT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact"
SECTION = ("<!-- bench/pca.py: begin -->", "<!-- bench/pca.py: end -->")
DIMS = (384, 256, 128, 64, 32)


def rotated(pca, vectors: Vectors, dim: int) -> Vectors:
    return Vectors(vectors.ids, pca.project(vectors.matrix, dim), vectors.provenance, vectors.source)


def ndcg(data, docs: Vectors, queries: Vectors) -> float:
    return evaluate_config(data, docs, queries, SearchConfig()).main_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=2000, help="Corpus vectors the PCA is fitted on (default 2000).")
    parser.add_argument("--write", type=Path, help="Also put the report in this markdown file (its own section).")
    args = parser.parse_args()
    data = load_retrieval_data(str(SCIFACT / "corpus.jsonl"), str(SCIFACT / "queries.jsonl"), str(SCIFACT / "qrels" / "test.tsv"))
    docs, queries = embed_retrieval_data(Embedder(load_model()), data)
    fitter = PCAFitter()
    sample = docs.matrix[: args.sample]
    fitter.add(VectorBatch(docs.ids[: args.sample], [{}] * len(sample), sample, docs.provenance, list(range(1, len(sample) + 1))))
    pca = fitter.fit(max(DIMS))
    rows = []
    for dim in DIMS:
        prefix = ndcg(data, truncated(docs, dim), truncated(queries, dim))
        rotation = ndcg(data, rotated(pca, docs, dim), rotated(pca, queries, dim))
        rows.append(f"| {dim} | {prefix:.4f} | {rotation:.4f} | {rotation - prefix:+.4f} |")
    text = "\n".join(
        [
            "## PCA against prefix truncation (bench/pca.py)",
            "",
            f"SciFact, all-MiniLM-L6-v2, exact cosine search, nDCG@10. The PCA is fitted on the first {args.sample} corpus vectors "
            "(`vecpipe truncate --pca N --fit SAMPLE`); prefix truncation keeps the first N dimensions and re-normalizes "
            "(`vecpipe truncate --dim N`). Command: `.venv/bin/python bench/pca.py --write bench/RESULTS.md`.",
            "",
            "| dims | prefix | PCA | PCA - prefix |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    publish(text + "\n", args.write, SECTION)


if __name__ == "__main__":
    main()
