"""`vecpipe eval retrieval`: score a run against qrels, or embed, search and score a BEIR data set."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Optional

import typer

from vecpipe.cli.common import STDIN, handles_errors, say
from vecpipe.cli.completion import index_dirs, model_names
from vecpipe.cli.eval.common import (
    CORPUS_HELP,
    INDEX_PARAMS_HELP,
    JSON_HELP,
    MODEL_HELP,
    NO_CACHE_HELP,
    QUERIES_HELP,
    QUIET_HELP,
    SPLIT_HELP,
    TASK_HELP,
    TOP_K_HELP,
    default_task_and_split,
    embedding_progress,
    embedding_summary,
    emit_result,
    load_dataset,
    open_embedder,
    parse_int_list,
    read_input,
    say_once,
)

DEFAULT_K = "1,3,5,10,100,1000"
METRIC_LABELS = {
    "ndcg": "nDCG",
    "map": "MAP",
    "recall": "Recall",
    "precision": "P",
    "mrr": "MRR",
    "hit_rate": "HitRate",
}


def register(app: typer.Typer) -> None:
    app.command("retrieval")(retrieval)


def load_run(path: str):
    """The run in `path` (or stdin) as RunData, and its provenance record."""
    from vecpipe.formats.trec import read_run

    data, record = read_input(path, read_run)
    if data.duplicates:
        say(f"{record['path']}: {data.duplicates} documents listed twice for a query; each counts once, at its best score")
    return data, record


def load_qrels(path: str):
    """The qrels in `path` (or stdin) as QrelsData, and their provenance record."""
    from vecpipe.formats.trec import read_qrels

    data, record = read_input(path, read_qrels)
    if not data.qrels:
        from vecpipe.core.errors import DataError

        raise DataError("no judgments found", record["path"])
    if data.duplicates:
        say(f"{record['path']}: {data.duplicates} judgments listed twice; the last one counts")
    return data, record


def warn_about_queries(evaluation, complete: bool) -> None:
    """Say which queries were skipped or scored 0, and why."""
    missing = len(evaluation.missing_from_run)
    if missing:
        fate = "they score 0 (--complete)" if complete else "they are left out of the averages (--complete scores them 0)"
        say(f"{missing} judged queries have no results in the run; {fate}")
    if evaluation.not_in_qrels:
        say(f"{len(evaluation.not_in_qrels)} queries of the run are not in the qrels; they are ignored")
    if evaluation.without_relevant:
        say(f"{len(evaluation.without_relevant)} judged queries have no relevant document; they score 0")


def retrieval_table(task_name: str, split: str, evaluation) -> tuple[str, list[str], list[list]]:
    """Metrics as rows, cutoffs as columns."""
    from vecpipe.core.eval.metrics import metric_key

    title = f"{task_name} ({split}): nDCG@10 {evaluation.main_score:.5f} over {len(evaluation.per_query)} queries"
    columns = ["metric"] + [f"@{k}" for k in evaluation.k_values]
    rows = [
        [label] + [f"{evaluation.averages[metric_key(metric, k)]:.5f}" for k in evaluation.k_values]
        for metric, label in METRIC_LABELS.items()
    ]
    return title, columns, rows


@dataclass
class Scoring:
    """How a run is scored: cutoffs (nDCG@10, the main score, always among them), averaging and MTEB's options."""

    k_values: list[int]
    complete: bool = False
    ignore_identical_ids: bool = False
    score_precision: str = "float64"

    def parameters(self) -> dict:
        return {"ignore_identical_ids": self.ignore_identical_ids, "score_precision": self.score_precision}

    def score(self, run: dict, qrels: dict, source: str | None = None):
        from vecpipe.core.eval.metrics import MAIN_K, at_score_precision, evaluate_retrieval, without_identical_ids

        if self.ignore_identical_ids:
            run, dropped = without_identical_ids(run)
            if dropped:
                say(f"{dropped} hits whose document id is their query's id were dropped (--ignore-identical-ids)")
        run = at_score_precision(run, self.score_precision)
        return evaluate_retrieval(run, qrels, sorted({*self.k_values, MAIN_K}), complete=self.complete, source=source)


def report_retrieval(
    evaluation,
    *,
    complete: bool,
    task_name: str,
    split: str,
    started: float,
    provenance: dict,
    as_json: bool,
    output_dir: Optional[str],
) -> dict:
    """Warn about skipped queries and emit the MTEB-shaped result of a scored run."""
    from vecpipe.core.eval.results import mteb_result, retrieval_provenance

    warn_about_queries(evaluation, complete)
    provenance = retrieval_provenance(provenance, evaluation, complete)
    result = mteb_result(task_name, split, evaluation.averages, evaluation.main_score, started, provenance)
    emit_result(result, retrieval_table(task_name, split, evaluation), as_json, output_dir)
    return result


def _check_run_source(run_path: str, qrels_path: str) -> None:
    from vecpipe.core.errors import UsageError

    if run_path == STDIN and qrels_path == STDIN:
        raise UsageError("the run and the qrels cannot both come from stdin")
    if run_path == STDIN and sys.stdin.isatty():
        raise UsageError("no run given: pipe one in (vecpipe search ... |) or pass --run FILE")


def _search_config(dim, quantize, rescore, exact: bool, index_params: Optional[str]):
    from vecpipe.core.errors import UsageError
    from vecpipe.core.eval.evaluation import SearchConfig, parse_index_params

    if exact and index_params:
        raise UsageError("--exact and --index-params exclude each other")
    config = SearchConfig(dim, quantize or "float32", rescore, parse_index_params(index_params) if index_params else None)
    config.check()
    return config


def _score_run_file(run: str, qrels: str, scoring: Scoring, options: dict) -> None:
    _check_run_source(run, qrels)
    qrels_data, qrels_record = load_qrels(qrels)
    run_data, run_record = load_run(run)
    evaluation = scoring.score(run_data.run, qrels_data.qrels, run_record["path"])
    provenance = {"command": "eval retrieval", "inputs": {"run": run_record, "qrels": qrels_record}, "parameters": scoring.parameters()}
    report_retrieval(evaluation, complete=scoring.complete, provenance=provenance, **options)


@dataclass
class Retriever:
    """What makes the run end to end: the model, how its vectors are stored and searched, and the mode."""

    model: Optional[str]
    config: object  # SearchConfig
    top_k: int
    mode: str | None = "dense"  # None with --index: the index's default
    fusion: object = None  # retrieval.modes.Fusion, for hybrid
    lexical: dict | None = None  # LexicalSettings fields, for lexical and hybrid

    def parameters(self, dim: int | None) -> dict:
        parameters = {"mode": self.mode, "top_k": self.top_k}
        if self.mode != "lexical":
            parameters.update(self.config.describe(dim))
        if self.mode != "dense":
            from vecpipe.core.index.api import LexicalSettings

            parameters["lexical"] = LexicalSettings(**(self.lexical or {})).describe()
        if self.mode == "hybrid":
            parameters.update(self.fusion.describe())
        return parameters


def _embed_and_score(data, retriever: Retriever, scoring: Scoring, no_cache: bool, quiet: bool, options: dict) -> None:
    from vecpipe.core.eval.evaluation import embed_retrieval_data, evaluate_config
    from vecpipe.core.eval.results import model_record

    embedder = docs = queries = None
    if retriever.mode != "lexical":  # BM25 alone embeds nothing
        with embedding_progress(quiet) as progress:
            embedder = open_embedder(retriever.model, no_cache, progress)
            docs, queries = embed_retrieval_data(embedder, data)
    outcome = evaluate_config(data, docs, queries, retriever.config, top_k=retriever.top_k, k_values=scoring.k_values,
                              complete=scoring.complete, ignore_identical_ids=scoring.ignore_identical_ids,
                              score_precision=scoring.score_precision, mode=retriever.mode, fusion=retriever.fusion,
                              lexical=retriever.lexical)
    say_once(outcome.search.notices, set())
    provenance = {
        "command": "eval retrieval",
        "inputs": data.inputs,
        "parameters": {**retriever.parameters(embedder.model.dim if embedder else None), **scoring.parameters()},
        "search": {"seconds": outcome.search.seconds, "qps": outcome.qps(), "bytes_per_vector": outcome.bytes_per_vector},
    }
    if embedder is not None:
        provenance.update(model=model_record(embedder), embeddings=embedding_summary(embedder, quiet))
    report_retrieval(outcome.evaluation, complete=scoring.complete, provenance=provenance, **options)


def _score_index(index: str, queries: Optional[str], qrels: str, retriever: Retriever, scoring: Scoring, options: dict) -> None:
    from vecpipe.core.errors import UsageError
    from vecpipe.core.eval.evaluation import file_record
    from vecpipe.core.eval.index_run import search_index
    from vecpipe.core.retrieval.modes import ModeRequest

    if not queries:
        raise UsageError("--index needs --queries: BEIR queries.jsonl (embedded with the index's model), or query vector records")
    qrels_data, qrels_record = load_qrels(qrels)
    depth = retriever.top_k + 1 if scoring.ignore_identical_ids else retriever.top_k
    request = ModeRequest(retriever.mode, depth, fusion=retriever.fusion)
    searched = search_index(index, queries, request, model=retriever.model, notify=say)
    say_once(searched.notices, set())
    run = searched.run
    if scoring.ignore_identical_ids:  # one more hit was fetched so that each query keeps top_k others
        from vecpipe.core.eval.metrics import without_identical_ids

        run, _ = without_identical_ids(run, keep=retriever.top_k)
    evaluation = scoring.score(run, qrels_data.qrels, queries)
    parameters = {"mode": searched.mode, "top_k": retriever.top_k, **scoring.parameters()}
    if searched.mode == "hybrid":
        parameters.update(retriever.fusion.describe())
    provenance = {
        "command": "eval retrieval",
        "index": searched.index,
        "inputs": {"queries": file_record(queries), "qrels": qrels_record},
        "parameters": parameters,
        "search": {"seconds": searched.seconds, "qps": searched.queries / searched.seconds if searched.seconds else None,
                   "bytes_per_vector": searched.index.get("bytes_per_vector")},
    }
    report_retrieval(evaluation, complete=scoring.complete, provenance=provenance, **options)


@handles_errors
def retrieval(
    qrels: str = typer.Option(..., "--qrels", metavar="FILE", help="Relevance judgments: BEIR TSV (query-id corpus-id score) or TREC qrels (qid 0 docid rel)."),
    run: Optional[str] = typer.Option(None, "--run", metavar="FILE", help="The run to score: vecpipe search JSONL or TREC (qid Q0 docid rank score tag); `-` or none is stdin."),
    corpus: Optional[str] = typer.Option(None, "--corpus", metavar="FILE", help=CORPUS_HELP),
    index: Optional[str] = typer.Option(None, "--index", metavar="DIR", autocompletion=index_dirs, help="Score an index built by `vecpipe index build`: search it with --queries (text, embedded with the index's model and query prompt, or vector records) in --mode (default: the index's), as `vecpipe search` would."),
    queries: Optional[str] = typer.Option(None, "--queries", metavar="FILE", help=QUERIES_HELP),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help=MODEL_HELP + " With --index: where to find the index's own model, for text queries."),
    dim: Optional[int] = typer.Option(None, "--dim", max=10**6, metavar="N", help="Keep the first N dimensions, re-normalized (vecpipe truncate --dim)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="int8|binary", help="Store the corpus quantized, in a flat index scanned exhaustively (vecpipe index build --quantize)."),
    rescore: Optional[int] = typer.Option(None, "--rescore", max=10**4, metavar="R", help="With --quantize: re-rank the top-k x R candidates with float vectors (vecpipe search --rescore)."),
    exact: bool = typer.Option(False, "--exact", help="Exact (brute-force) cosine search: the default for float vectors, as MTEB searches."),
    index_params: Optional[str] = typer.Option(None, "--index-params", metavar="M=16,...", help=INDEX_PARAMS_HELP),
    top_k: int = typer.Option(1000, "--top-k", max=10**7, metavar="N", help=TOP_K_HELP),
    k: str = typer.Option(DEFAULT_K, "--k", metavar="K,K,...", help="Cutoffs, comma-separated. nDCG@10, the main score, is always included."),
    complete: bool = typer.Option(False, "--complete", "-c", help="Average over every judged query, scoring those missing from the run as 0 (trec_eval -c). Default: leave them out, as pytrec_eval and MTEB do."),
    ignore_identical_ids: bool = typer.Option(False, "--ignore-identical-ids", help="Drop a hit whose document id equals its query id, as MTEB does for ArguAna, Quora and the other tasks listed in docs/EVAL.md."),
    mode_given: Optional[str] = typer.Option(None, "--mode", metavar="dense|lexical|hybrid", help="End to end: dense (embed and search vectors; the default), lexical (BM25 with bm25s, nothing embedded) or hybrid (both, fused). With --index: the index's default mode."),
    fusion: str = typer.Option("rrf", "--fusion", metavar="rrf|convex", help="Hybrid: reciprocal-rank fusion, or a convex mix of min-max normalized scores."),
    rrf_k: float = typer.Option(60, "--rrf-k", help="Hybrid RRF: the k in 1 / (k + rank)."),
    alpha: float = typer.Option(0.5, "--alpha", help="Hybrid convex: the dense run's weight (the lexical run gets 1 - alpha)."),
    lexical_language: str = typer.Option("english", "--lexical-language", metavar="LANG", help="Lexical: stemmer and stopword language."),
    no_stem: bool = typer.Option(False, "--no-stem", help="Lexical: no stemming."),
    score_precision: str = typer.Option("float64", "--score-precision", metavar="float64|float32", help="Rank by scores as doubles (trec_eval 10) or rounded to float32 (pytrec_eval, so MTEB, and trec_eval <= 9): equal float32 scores then tie."),
    task_name: Optional[str] = typer.Option(None, "--task-name", metavar="NAME", help=TASK_HELP),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME", help=SPLIT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="DIR", help="Also write DIR/<task_name>.json, as the MTEB results repository does."),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help=QUIET_HELP),
) -> None:
    """Score retrieval: nDCG, MAP, Recall, P, MRR and HitRate at each cutoff.

    With --run (or a run on stdin), score any retriever's output against the qrels. With
    --corpus and --queries, embed a BEIR data set as MTEB does, search it and score it.

    Examples:

      vecpipe search idx -i q.jsonl -k 1000 | vecpipe eval retrieval --qrels qrels/test.tsv

      vecpipe eval retrieval --corpus scifact/corpus.jsonl --queries scifact/queries.jsonl --qrels scifact/qrels/test.tsv

      vecpipe eval retrieval ... --dim 128 --quantize binary --rescore 4
    """
    from vecpipe.core.errors import UsageError

    started = time.monotonic()
    if score_precision not in ("float64", "float32"):
        raise UsageError(f"--score-precision must be float64 or float32, not {score_precision!r}")
    scoring = Scoring(parse_int_list(k, "--k"), complete, ignore_identical_ids, score_precision)
    default_task, default_split = default_task_and_split(qrels)
    options = {"task_name": task_name or default_task, "split": split or default_split, "started": started,
               "as_json": as_json, "output_dir": output}
    if corpus is None and queries is None and index is None:
        _score_run_file(run or STDIN, qrels, scoring, options)
        return
    if run is not None:
        raise UsageError("--run scores a run file; --corpus and --queries (or --index and --queries) make the run: give one or the other")
    if index is not None and (corpus or dim or quantize or rescore or exact or index_params):
        raise UsageError("--index searches the index as it was built; --corpus, --dim, --quantize, --rescore, --exact and --index-params do not apply")
    if top_k < 1:
        raise UsageError("--top-k must be at least 1")
    from vecpipe.core.retrieval.modes import MODES, Fusion

    mode = mode_given or "dense"
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    Fusion(fusion, rrf_k, alpha).check()  # before minutes of embedding, not after
    retriever = Retriever(model, _search_config(dim, quantize, rescore, exact, index_params), top_k, mode, Fusion(fusion, rrf_k, alpha),
                          {"language": lexical_language, "stem": not no_stem})
    if index is not None:
        retriever.mode = None if mode_given is None else mode
        _score_index(index, queries, qrels, retriever, scoring, options)
        return
    data = load_dataset(corpus, queries, qrels)
    _embed_and_score(data, retriever, scoring, no_cache, quiet, options)
