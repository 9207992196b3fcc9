"""End-to-end evaluation: embed a data set (through the embedding cache), search it the way a
deployment would (exact, HNSW, or a quantized flat scan with optional float rescoring), and
score the result with vecpipe.core.eval.metrics.

MTEB's protocol, which this follows so that its published numbers come out:
- documents are embedded as `(title + " " + text).strip()`, queries with the model's query
  prompt (all-MiniLM-L6-v2 has none), both truncated at the model's token limit;
- every query judged in the qrels is searched, by cosine similarity, keeping the top 1000;
- the run is scored with trec_eval's definitions; STS is the Spearman correlation of cosine
  similarity with the gold score.

Searching goes through the library the CLI uses: vecpipe.core.index.scoring for exact search,
vecpipe.core.index.vector_index (hnswlib graph or flat int8/binary matrix) for everything else, and
vecpipe.core.vectors.truncate for `dim`, so an evaluation measures exactly what `vecpipe search` serves.
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from vecpipe.core.errors import DataError, UsageError
from vecpipe.core.hashing import sha256_file
from vecpipe.core.eval.metrics import (
    DEFAULT_K_VALUES,
    MAIN_K,
    RetrievalEvaluation,
    at_score_precision,
    evaluate_retrieval,
    pearson,
    spearman,
    without_identical_ids,
)

MTEB_TOP_K = 1000
SEARCH_DTYPES = ("float32", "int8", "binary")
HNSW_KEYS = ("M", "ef_construction", "ef")
DOCUMENT_PROMPTS = ("document", "passage")  # the names sentence-transformers models give it
Progress = Callable[[int], None]  # told how many more texts were embedded


def file_record(path: str | Path) -> dict:
    """Where an input came from and its sha256, so that a result can be reproduced."""
    try:
        return {"path": str(path), "sha256": sha256_file(path)}
    except OSError as exc:
        raise DataError(exc.strerror or "cannot read", str(path)) from None


def open_lines(path: str | Path):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataError(exc.strerror or "cannot open", str(path)) from None


# --- data --------------------------------------------------------------------------------


@dataclass
class RetrievalData:
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    inputs: dict[str, dict]
    judged_without_text: list[str] = field(default_factory=list)  # judged query ids the queries file lacks


def load_retrieval_data(corpus: str, queries: str, qrels: str) -> RetrievalData:
    """A BEIR corpus, its queries and qrels; only judged queries are kept, as MTEB keeps them."""
    from vecpipe.formats.beir import iter_corpus, read_queries
    from vecpipe.formats.trec import read_qrels

    with open_lines(qrels) as stream:
        judgments = read_qrels(stream, str(qrels)).qrels
    if not judgments:
        raise DataError("no judgments found", str(qrels))
    doc_ids, doc_texts = _read_corpus(corpus, iter_corpus)
    with open_lines(queries) as stream:
        query_texts = read_queries(stream, str(queries), only=set(judgments))
    if not query_texts:
        raise DataError("none of the judged queries is in this file", str(queries))
    return RetrievalData(
        doc_ids=doc_ids,
        doc_texts=doc_texts,
        query_ids=list(query_texts),
        query_texts=list(query_texts.values()),
        qrels=judgments,
        inputs={"corpus": file_record(corpus), "queries": file_record(queries), "qrels": file_record(qrels)},
        judged_without_text=[qid for qid in judgments if qid not in query_texts],
    )


def _read_corpus(corpus: str, iter_corpus) -> tuple[list[str], list[str]]:
    doc_ids, doc_texts, seen = [], [], set()
    with open_lines(corpus) as stream:
        for doc_id, text in iter_corpus(stream, str(corpus)):
            if doc_id in seen:
                raise DataError(f"document id {doc_id!r} appears twice", str(corpus))
            seen.add(doc_id)
            doc_ids.append(doc_id)
            doc_texts.append(text)
    if not doc_ids:
        raise DataError("the corpus is empty", str(corpus))
    return doc_ids, doc_texts


# --- embedding ---------------------------------------------------------------------------


@dataclass
class Vectors:
    """Embedded texts: ids, a float32 matrix and the provenance the index library checks."""

    ids: list[str]
    matrix: np.ndarray
    provenance: dict
    source: str


class Embedder:
    """Embeds texts with one model through the embedding cache (unless `use_cache` is off)."""

    def __init__(self, model, use_cache: bool = True, progress: Progress | None = None):
        self.model = model
        self.use_cache = use_cache
        self.progress = progress
        self.cached = 0
        self.embedded = 0

    def document_prompt(self) -> str | None:
        return next((name for name in DOCUMENT_PROMPTS if name in self.model.prompts), None)

    def vectors(self, ids: list[str], texts: list[str], prompt: str | None, source: str) -> Vectors:
        from vecpipe.core.eval.embedding_cache import EmbeddingCache, cache_key

        prefix = self.model.prompt_prefix(prompt)
        provenance = self.model.provenance(prompt)
        if not self.use_cache:
            self.embedded += len(texts)
            return Vectors(ids, self._embed(texts, prefix), provenance, source)
        cache = EmbeddingCache(cache_key(self.model, prefix, self.model.max_tokens, self.model.normalize))
        matrix = cache.embed(texts, lambda missing: self._embed(missing, prefix))
        self.cached += cache.stats.hits
        self.embedded += cache.stats.embedded
        return Vectors(ids, matrix, provenance, source)

    def _embed(self, texts: list[str], prefix: str) -> np.ndarray:
        from vecpipe.core.models.batching import EmbedOptions
        from vecpipe.core.pipeline.embedding import vector_batches
        from vecpipe.formats.text import TextRecord

        records = [TextRecord(i, text, {}, i + 1) for i, text in enumerate(texts)]
        parts = []
        for batch in vector_batches(self.model, records, EmbedOptions(prefix=prefix), {}, "<texts>"):
            parts.append(batch.matrix)
            if self.progress:
                self.progress(len(batch))
        return np.concatenate(parts).astype(np.float32, copy=False)


def embed_retrieval_data(embedder: Embedder, data: RetrievalData) -> tuple[Vectors, Vectors]:
    """(documents, queries): documents with the model's document prompt, if it has one, queries with its query prompt."""
    model = embedder.model
    docs = embedder.vectors(data.doc_ids, data.doc_texts, embedder.document_prompt(), data.inputs["corpus"]["path"])
    queries = embedder.vectors(data.query_ids, data.query_texts, model.query_prompt(), data.inputs["queries"]["path"])
    return docs, queries


def truncated(vectors: Vectors, dim: int | None) -> Vectors:
    """The first `dim` dimensions, re-normalized (vecpipe truncate's prefix truncation)."""
    from vecpipe.core.vectors.truncate import truncate_prefix, truncated_provenance

    full = vectors.matrix.shape[1]
    if dim is None or dim == full:
        return vectors
    if not 1 <= dim < full:
        raise UsageError(f"--dim must be between 1 and the model's {full} dimensions, not {dim}")
    provenance = truncated_provenance(vectors.provenance, dim, full, True, None)
    return Vectors(vectors.ids, truncate_prefix(vectors.matrix, dim), provenance, vectors.source)


# --- search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchConfig:
    """How the corpus is stored and searched. `hnsw` None means exact search for float32."""

    dim: int | None = None
    dtype: str = "float32"
    rescore: int | None = None
    hnsw: tuple[tuple[str, int], ...] | None = None  # (("M", 16), ...): hashable, for sweeps

    def check(self) -> None:
        if self.dtype not in SEARCH_DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(SEARCH_DTYPES)}")
        if self.dtype != "float32" and self.hnsw is not None:
            raise UsageError("int8 and binary vectors are scanned exhaustively (a flat index); --index-params applies to float32")
        if self.rescore is not None and (self.dtype == "float32" or self.rescore < 1):
            raise UsageError("--rescore needs --quantize int8|binary and a multiplier of at least 1")

    @property
    def search(self) -> str:
        if self.dtype != "float32":
            return "flat"
        return "exact" if self.hnsw is None else "hnsw"

    def describe(self, full_dim: int) -> dict:
        entry = {"dim": self.dim or full_dim, "dtype": self.dtype, "rescore": self.rescore, "search": self.search}
        if self.hnsw is not None:
            entry["index_params"] = dict(self.hnsw)
        return entry


def parse_index_params(text: str) -> tuple[tuple[str, int], ...]:
    """`M=16,ef_construction=200,ef=500` -> (("M", 16), ...); UsageError on unknown keys."""
    params = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in HNSW_KEYS or not value.strip().isdigit() or int(value) < 1:
            raise UsageError(f"--index-params wants {'=N,'.join(HNSW_KEYS)}=N with positive integers, not {part!r}")
        params[key] = int(value)
    return tuple(sorted(params.items()))


def bytes_per_vector(dtype: str, dim: int) -> int:
    """What one stored vector costs: 4 bytes a dimension for float32, 1 for int8, 1/8 for binary."""
    from vecpipe.core.vector_batch import STORAGE, stored_width

    return stored_width(dtype, dim) * STORAGE[dtype].itemsize


@dataclass
class SearchOutcome:
    run: dict[str, dict[str, float]]
    # Searching and turning hits into ids, as `vecpipe search` does: no embedding, no index building.
    seconds: float
    notices: list[str] = field(default_factory=list)

    def qps(self, queries: int) -> float:
        return queries / self.seconds if self.seconds > 0 else math.inf


def search_run(docs: Vectors, queries: Vectors, config: SearchConfig, top_k: int = MTEB_TOP_K) -> SearchOutcome:
    """The top `top_k` documents of every query, as a run (query id -> {doc id: score})."""
    config.check()
    docs, queries = truncated(docs, config.dim), truncated(queries, config.dim)
    if config.search == "exact":
        return _exact_run(docs, queries, top_k)
    with tempfile.TemporaryDirectory(prefix="vecpipe-eval-") as scratch:
        return _index_run(Path(scratch) / "index", docs, queries, config, top_k)


def _exact_run(docs: Vectors, queries: Vectors, top_k: int) -> SearchOutcome:
    from vecpipe.core.index.scoring import exact_float_search, normalize_rows

    # Unit rows make the inner product the cosine, without normalizing the corpus per query block.
    doc_matrix = normalize_rows(docs.matrix)
    started = time.perf_counter()
    labels, scores = exact_float_search("ip", normalize_rows(queries.matrix), doc_matrix, np.arange(len(docs.ids)), top_k)
    run = {
        qid: {docs.ids[label]: score for label, score in zip(row_labels, row_scores)}
        for qid, row_labels, row_scores in zip(queries.ids, labels.tolist(), scores.tolist())
    }
    return SearchOutcome(run, time.perf_counter() - started)


def _index_run(path: Path, docs: Vectors, queries: Vectors, config: SearchConfig, top_k: int) -> SearchOutcome:
    from vecpipe.core.index.api import DEFAULT_EF, BuildOptions, build, open_index
    from vecpipe.core.vector_batch import VectorBatch

    hnsw = dict(config.hnsw or ())
    options = BuildOptions(
        quantize=None if config.dtype == "float32" else config.dtype,
        keep_float=config.rescore is not None,
        **{key: hnsw[key] for key in ("M", "ef_construction") if key in hnsw},
    )
    lines = list(range(1, len(docs.ids) + 1))
    batch = VectorBatch(docs.ids, [{} for _ in docs.ids], docs.matrix, docs.provenance, lines, docs.source)
    build(path, [batch], options)
    with open_index(path) as index:
        started = time.perf_counter()
        result = index.search(
            queries.matrix, top_k, provenance=queries.provenance, ef=hnsw.get("ef", max(DEFAULT_EF, top_k)), rescore=config.rescore
        )
        run = {qid: {hit.id: hit.score for hit in hits} for qid, hits in zip(queries.ids, result.hits)}
        seconds = time.perf_counter() - started
    return SearchOutcome(run, seconds, result.notices)


# --- retrieval ----------------------------------------------------------------------------


@dataclass
class RetrievalOutcome:
    config: SearchConfig
    evaluation: RetrievalEvaluation
    search: SearchOutcome
    queries: int
    bytes_per_vector: int

    @property
    def main_score(self) -> float:
        return self.evaluation.main_score

    def qps(self) -> float:
        return self.search.qps(self.queries)


def evaluate_config(
    data: RetrievalData,
    docs: Vectors | None,
    queries: Vectors | None,
    config: SearchConfig,
    *,
    top_k: int = MTEB_TOP_K,
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    complete: bool = False,
    ignore_identical_ids: bool = False,
    score_precision: str = "float64",
    mode: str = "dense",
    fusion=None,
    lexical: dict | None = None,
) -> RetrievalOutcome:
    """Search with `config` in `mode` (dense, lexical or hybrid) and score the run against the qrels.

    With `ignore_identical_ids`, as MTEB: one more hit is fetched per query and a hit whose id is
    the query's own is dropped, so each query keeps `top_k` other documents. Lexical mode needs no
    vectors (`docs` and `queries` may be None); `lexical` holds LexicalSettings fields."""
    depth = top_k + 1 if ignore_identical_ids else top_k
    outcome = _mode_run(data, docs, queries, config, depth, mode, fusion, lexical)
    if ignore_identical_ids:
        outcome.run, _ = without_identical_ids(outcome.run, keep=top_k)
    run = at_score_precision(outcome.run, score_precision)
    evaluation = evaluate_retrieval(run, data.qrels, sorted({*k_values, MAIN_K}), complete=complete)
    dim = config.dim or (docs.matrix.shape[1] if docs is not None else 0)
    return RetrievalOutcome(config, evaluation, outcome, len(data.query_ids), bytes_per_vector(config.dtype, dim) if docs is not None else 0)


def _mode_run(data, docs, queries, config: SearchConfig, depth: int, mode: str, fusion, lexical: dict | None) -> SearchOutcome:
    from vecpipe.core.retrieval.modes import MODES, Fusion

    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "lexical":
        return lexical_run(data, depth, lexical)
    dense = search_run(docs, queries, config, depth)
    if mode == "dense":
        return dense
    from vecpipe.core.retrieval.fusion import alpha_weights, fuse_runs

    fusion = fusion or Fusion()
    fusion.check()
    lexical_outcome = lexical_run(data, depth, lexical)
    started = time.perf_counter()
    run = fuse_runs({"dense": dense.run, "lexical": lexical_outcome.run}, fusion.method, rrf_k=fusion.rrf_k,
                    weights=alpha_weights(["dense", "lexical"], fusion.alpha), depth=depth)
    seconds = dense.seconds + lexical_outcome.seconds + time.perf_counter() - started
    return SearchOutcome(run, seconds, dense.notices)


def lexical_run(data: RetrievalData, top_k: int, lexical: dict | None = None) -> SearchOutcome:
    """BM25 (bm25s) over the corpus texts, as an index's lexical part searches: the top `top_k` matching documents."""
    from vecpipe.core.index.lexical import LexicalIndex, LexicalSettings, build

    settings = LexicalSettings(**(lexical or {}))
    settings.check()
    with tempfile.TemporaryDirectory(prefix="vecpipe-eval-") as scratch:
        entry = build(Path(scratch), ((n, {settings.field: text}) for n, text in enumerate(data.doc_texts)), settings)
        index = LexicalIndex.load(Path(scratch), entry, len(data.doc_ids))
        started = time.perf_counter()
        labels, scores = index.search(data.query_texts, top_k)
        run = {qid: {data.doc_ids[label]: score for label, score in zip(row_labels.tolist(), row_scores.tolist())}
               for qid, row_labels, row_scores in zip(data.query_ids, labels, scores)}
        return SearchOutcome(run, time.perf_counter() - started)


def sweep_configs(
    dims: Sequence[int], dtypes: Sequence[str], rescores: Sequence[int], hnsw: tuple | None = None
) -> list[SearchConfig]:
    """The grid dims x dtypes; quantized dtypes once without rescoring and once per multiplier."""
    configs = []
    for dim in dims:
        for dtype in dtypes:
            if dtype == "float32":
                configs.append(SearchConfig(dim, dtype, None, hnsw))
                continue
            configs.append(SearchConfig(dim, dtype))
            configs.extend(SearchConfig(dim, dtype, rescore) for rescore in rescores)
    for config in configs:
        config.check()
    return configs


def baseline_config(configs: Sequence[SearchConfig], full_dim: int, hnsw: tuple | None) -> SearchConfig:
    """The grid's full-dimension float32 row, searched like the grid's other float rows."""
    for config in configs:
        if config.dtype == "float32" and (config.dim or full_dim) == full_dim:
            return config
    return SearchConfig(full_dim, "float32", None, hnsw)


# --- STS ---------------------------------------------------------------------------------

STS_FIELDS = ("sentence1", "sentence2", "score")


@dataclass
class StsPairs:
    first: list[str]
    second: list[str]
    gold: np.ndarray
    inputs: dict


def read_sts_pairs(path: str, fields: Sequence[str] = STS_FIELDS) -> StsPairs:
    """JSONL pairs: two sentences and a numeric gold score per line."""
    from vecpipe.formats.text import parse_record
    from vecpipe.formats.trec import numbered_lines

    first, second, gold = [], [], []
    with open_lines(path) as stream:
        for line, raw in numbered_lines(stream, str(path)):
            a, b, score = _sts_row(parse_record(raw, str(path), line), fields, str(path), line)
            first.append(a)
            second.append(b)
            gold.append(score)
    if len(gold) < 2:
        raise DataError(f"an STS evaluation needs at least 2 pairs, found {len(gold)}", str(path))
    return StsPairs(first, second, np.array(gold, dtype=np.float64), {"pairs": file_record(path)})


def _sts_row(record: dict, fields: Sequence[str], source: str, line: int) -> tuple[str, str, float]:
    text_a, text_b, score_field = fields
    for name in (text_a, text_b):
        if not isinstance(record.get(name), str):
            raise DataError(f"missing text field {name!r}", source, line)
    score = record.get(score_field)
    if isinstance(score, str):
        try:
            score = float(score)
        except ValueError:
            pass  # reported below
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise DataError(f"{score_field!r} must be a number", source, line)
    return record[text_a], record[text_b], float(score)


def sts_scores(first: np.ndarray, second: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """MTEB's STS scores: Pearson and Spearman of the gold score with cosine similarity and with
    negative Manhattan and Euclidean distances; `pearson`/`spearman` use the model's similarity
    (cosine for every sentence-transformers model vecpipe converts)."""
    a, b = first.astype(np.float64), second.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(axis=1) / np.where(norms == 0, 1.0, norms)
    similarities = {
        "cosine": cosine,
        "manhattan": -np.abs(a - b).sum(axis=1),
        "euclidean": -np.linalg.norm(a - b, axis=1),
    }
    scores = {}
    for name, values in similarities.items():
        scores[f"{name}_pearson"] = pearson(gold, values)
        scores[f"{name}_spearman"] = spearman(gold, values)
    scores["pearson"] = scores["cosine_pearson"]
    scores["spearman"] = scores["cosine_spearman"]
    return scores


def evaluate_sts(embedder: Embedder, pairs: StsPairs) -> dict[str, float]:
    """Embed each distinct sentence once (STS sets repeat many) and score the pairs."""
    sentences = list(dict.fromkeys(pairs.first + pairs.second))
    row_of = {sentence: row for row, sentence in enumerate(sentences)}
    matrix = embedder.vectors([str(row) for row in range(len(sentences))], sentences, None, pairs.inputs["pairs"]["path"]).matrix
    first = matrix[[row_of[sentence] for sentence in pairs.first]]
    second = matrix[[row_of[sentence] for sentence in pairs.second]]
    return sts_scores(first, second, pairs.gold)
