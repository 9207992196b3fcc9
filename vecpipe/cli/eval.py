"""`vecpipe eval`: retrieval, STS, index and storage quality, with MTEB's and trec_eval's definitions.

- `eval retrieval --qrels FILE [--run FILE]` scores any retriever's run (vecpipe search JSONL or
  TREC) against BEIR or TREC qrels;
- `eval retrieval --corpus --queries --qrels` embeds a BEIR data set, searches and scores it;
- `eval sts --pairs FILE` correlates cosine similarity with gold scores;
- `eval ann DIR --queries FILE` measures an index's recall and speed against exact search;
- `eval sweep` runs retrieval over dims x dtypes x rescoring and tabulates quality against bytes.

Results are MTEB-shaped JSON, printed when stdout is piped (or with --json), as a table on a
terminal, and written to `--output DIR/<task_name>.json`. The numerics live in
vecpipe.core.metrics, .evaluation and .ann_eval; this module parses options and presents results.
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from pathlib import Path
from typing import IO, Iterator, Optional

import typer

from vecpipe.cli.common import (
    STDIN,
    binary_stdout,
    handles_errors,
    input_name,
    make_progress,
    open_input,
    print_table,
    say,
    stdout_is_terminal,
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

eval_app = typer.Typer(
    name="eval",
    help="Measure retrieval, STS, index and storage quality with MTEB's and trec_eval's definitions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class HashingLines:
    """Iterate a binary stream by lines while computing its sha256."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self._digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self._digest.update(line)
            yield line

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def parse_int_list(text: str, option: str) -> list[int]:
    """`1,3,10` -> [1, 3, 10] (sorted, unique); UsageError on anything else."""
    from vecpipe.core.errors import UsageError

    problem = f"{option} wants comma-separated positive integers, not {text!r}"
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UsageError(problem) from None
    if not values or values[0] < 1:
        raise UsageError(problem)
    return values


def parse_k_values(text: str) -> list[int]:
    return parse_int_list(text, "--k")


def default_task_and_split(qrels_path: str) -> tuple[str, str]:
    """`data/scifact/qrels/test.tsv` -> ("scifact", "test"); `judgments.txt` -> ("judgments", "test")."""
    path = Path(qrels_path)
    if path.parent.name == "qrels" and path.parent.parent.name:
        return path.parent.parent.name, path.stem
    return (path.stem or "retrieval"), "test"


def _read_with_hash(path: str, reader):
    """Parse `path` (or stdin) with `reader(lines, source)`; returns (data, input record)."""
    with open_input(path) as stream:
        lines = HashingLines(stream)
        data = reader(lines, input_name(path))
    record = {"path": input_name(path), "format": data.format, "sha256": lines.hexdigest()}
    return data, record


def load_run(path: str):
    """The run in `path` (or stdin) as RunData, and its provenance record."""
    from vecpipe.formats.trec import read_run

    data, record = _read_with_hash(path, read_run)
    if data.duplicates:
        say(f"{record['path']}: {data.duplicates} documents listed twice for a query; each counts once, at its best score")
    return data, record


def load_qrels(path: str):
    """The qrels in `path` (or stdin) as QrelsData, and their provenance record."""
    from vecpipe.formats.trec import read_qrels

    data, record = _read_with_hash(path, read_qrels)
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


def mteb_result(
    task_name: str,
    split: str,
    scores: dict,
    main_score: float,
    started: float,
    provenance: dict,
    languages: Optional[list[str]] = None,
) -> dict:
    """A result shaped like MTEB's results files, plus vecpipe's parameters and input hashes."""
    from vecpipe import __version__

    entry = {**scores, "main_score": main_score, "hf_subset": "default"}
    if languages:
        entry["languages"] = languages
    return {
        "task_name": task_name,
        "main_score": main_score,
        "scores": {split: [entry]},
        "evaluation_time": round(time.monotonic() - started, 6),
        "vecpipe": {"version": __version__, **provenance},
    }


def write_result_file(result: dict, output_dir: str, suffix: str = "") -> Path:
    """`output_dir/<task_name><suffix>.json`, written atomically, indented like MTEB's files."""
    import orjson

    from vecpipe.core.atomic import write_bytes_atomic

    name = result["task_name"]
    if not name or "/" in name or name.startswith("."):
        from vecpipe.core.errors import UsageError

        raise UsageError(f"task name {name!r} cannot be a file name; pass --task-name")
    target = Path(output_dir) / f"{name}{suffix}.json"
    write_bytes_atomic(target, orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return target


def emit_result(
    result: dict, table: tuple[str, list[str], list[list]], as_json: bool, output_dir: Optional[str], suffix: str = ""
) -> None:
    """Write the result file if asked, then print JSON (piped or --json) or the table."""
    import orjson

    if output_dir is not None:
        write_result_file(result, output_dir, suffix)
    if as_json or not stdout_is_terminal():
        out = binary_stdout()
        out.write(orjson.dumps(result) + b"\n")
        out.flush()
    else:
        print_table(*table)


def retrieval_table(task_name: str, split: str, evaluation) -> tuple[str, list[str], list[list]]:
    """Metrics as rows, cutoffs as columns."""
    from vecpipe.core.metrics import metric_key

    title = f"{task_name} ({split}): nDCG@10 {evaluation.main_score:.5f} over {len(evaluation.per_query)} queries"
    columns = ["metric"] + [f"@{k}" for k in evaluation.k_values]
    rows = [
        [label] + [f"{evaluation.averages[metric_key(metric, k)]:.5f}" for k in evaluation.k_values]
        for metric, label in METRIC_LABELS.items()
    ]
    return title, columns, rows


def score_run(run: dict, qrels: dict, k_values: list[int], complete: bool):
    """Score a run; nDCG@10 is always computed, being the main score."""
    from vecpipe.core.metrics import MAIN_K, evaluate_retrieval

    return evaluate_retrieval(run, qrels, sorted({*k_values, MAIN_K}), complete=complete)


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
    from vecpipe.core.metrics import MAIN_RETRIEVAL_METRIC

    warn_about_queries(evaluation, complete)
    provenance = {
        **provenance,
        "parameters": {**provenance.get("parameters", {}), "k_values": list(evaluation.k_values),
                       "complete": complete, "main_metric": MAIN_RETRIEVAL_METRIC},
        "queries": {
            "evaluated": len(evaluation.per_query),
            "missing_from_run": len(evaluation.missing_from_run),
            "not_in_qrels": len(evaluation.not_in_qrels),
            "without_relevant": len(evaluation.without_relevant),
        },
    }
    result = mteb_result(task_name, split, evaluation.averages, evaluation.main_score, started, provenance)
    emit_result(result, retrieval_table(task_name, split, evaluation), as_json, output_dir)
    return result


MODEL_HELP = "Model: directory, cached name, sentence-transformers checkpoint, or hf:ORG/NAME. Default all-MiniLM-L6-v2."
CORPUS_HELP = "BEIR corpus.jsonl (_id, title, text): embed it and search it instead of reading a run."
QUERIES_HELP = "BEIR queries.jsonl (_id, text); only the queries judged in --qrels are searched."
INDEX_PARAMS_HELP = "Search float vectors with an hnswlib graph built with these parameters (M, ef_construction, ef), e.g. M=16,ef_construction=200,ef=1000. Default: exact search."
TOP_K_HELP = "Documents retrieved per query (MTEB keeps 1000)."
NO_CACHE_HELP = "Neither read nor write the embedding cache ($VECPIPE_HOME/embeddings)."
QUIET_HELP = "No progress bar and no summary on stderr."
TASK_HELP = "Name in the result (default: the folder holding qrels/, else the qrels file name)."
SPLIT_HELP = "Split name in the result (default: the qrels file name under qrels/, else test)."
JSON_HELP = "Print JSON even on a terminal."


@contextlib.contextmanager
def embedding_progress(quiet: bool):
    """A callable counting embedded texts into a progress bar on a terminal, else None."""
    progress = make_progress(quiet)
    if progress is None:
        yield None
        return
    task = progress.add_task("embedding", total=None, rate="")
    started, done = time.monotonic(), 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        progress.update(task, completed=done, rate=f"{done / max(time.monotonic() - started, 1e-9):.0f} texts/s")

    with progress:
        yield advance


def open_embedder(model: Optional[str], no_cache: bool, progress, **load_options):
    from vecpipe.core.evaluation import Embedder
    from vecpipe.core.models import load_model

    return Embedder(load_model(model, notify=say, **load_options), use_cache=not no_cache, progress=progress)


def model_record(embedder) -> dict:
    """The model and how texts were embedded, for the result's provenance."""
    model = embedder.model
    return {"name": model.name, "sha256": model.sha256, "dim": model.dim, "max_tokens": model.max_tokens,
            "normalize": model.normalize, "query_prompt": model.query_prompt(), "document_prompt": embedder.document_prompt()}


def embedding_summary(embedder, quiet: bool) -> dict:
    summary = {"embedded": embedder.embedded, "cached": embedder.cached, "cache": embedder.use_cache}
    if not quiet:
        say(f"{embedder.embedded} texts embedded, {embedder.cached} read from the embedding cache")
    return summary


def _say_once(notices: list[str], shown: set) -> None:
    for notice in notices:
        if notice not in shown:
            shown.add(notice)
            say(notice)


def _check_run_source(run_path: str, qrels_path: str) -> None:
    from vecpipe.core.errors import UsageError

    if run_path == STDIN and qrels_path == STDIN:
        raise UsageError("the run and the qrels cannot both come from stdin")
    if run_path == STDIN and sys.stdin.isatty():
        raise UsageError("no run given: pipe one in (vecpipe search ... |) or pass --run FILE")


def _load_dataset(corpus: Optional[str], queries: Optional[str], qrels: str):
    from vecpipe.core.errors import UsageError
    from vecpipe.core.evaluation import load_retrieval_data

    if not (corpus and queries):
        raise UsageError("--corpus and --queries go together (with --qrels)")
    data = load_retrieval_data(corpus, queries, qrels)
    if data.judged_without_text:
        say(f"{len(data.judged_without_text)} judged queries are not in {queries}; they cannot be searched")
    return data


def _search_config(dim, quantize, rescore, exact: bool, index_params: Optional[str]):
    from vecpipe.core.errors import UsageError
    from vecpipe.core.evaluation import SearchConfig, parse_index_params

    if exact and index_params:
        raise UsageError("--exact and --index-params exclude each other")
    config = SearchConfig(dim, quantize or "float32", rescore, parse_index_params(index_params) if index_params else None)
    config.check()
    return config


def _score_run_file(run: str, qrels: str, k_values: list[int], complete: bool, options: dict) -> None:
    _check_run_source(run, qrels)
    qrels_data, qrels_record = load_qrels(qrels)
    run_data, run_record = load_run(run)
    evaluation = score_run(run_data.run, qrels_data.qrels, k_values, complete)
    provenance = {"command": "eval retrieval", "inputs": {"run": run_record, "qrels": qrels_record}}
    report_retrieval(evaluation, complete=complete, provenance=provenance, **options)


def _embed_and_score(data, config, model, top_k: int, k_values: list[int], complete: bool, no_cache: bool, quiet: bool, options: dict) -> None:
    from vecpipe.core.evaluation import embed_retrieval_data, evaluate_config

    with embedding_progress(quiet) as progress:
        embedder = open_embedder(model, no_cache, progress)
        docs, queries = embed_retrieval_data(embedder, data)
    outcome = evaluate_config(data, docs, queries, config, top_k=top_k, k_values=k_values, complete=complete)
    _say_once(outcome.search.notices, set())
    provenance = {
        "command": "eval retrieval",
        "model": model_record(embedder),
        "inputs": data.inputs,
        "parameters": {**config.describe(embedder.model.dim), "top_k": top_k},
        "embeddings": embedding_summary(embedder, quiet),
        "search": {"seconds": outcome.search.seconds, "qps": outcome.qps(), "bytes_per_vector": outcome.bytes_per_vector},
    }
    report_retrieval(outcome.evaluation, complete=complete, provenance=provenance, **options)


@eval_app.command("retrieval")
@handles_errors
def retrieval(
    qrels: str = typer.Option(..., "--qrels", metavar="FILE", help="Relevance judgments: BEIR TSV (query-id corpus-id score) or TREC qrels (qid 0 docid rel)."),
    run: Optional[str] = typer.Option(None, "--run", metavar="FILE", help="The run to score: vecpipe search JSONL or TREC (qid Q0 docid rank score tag); `-` or none is stdin."),
    corpus: Optional[str] = typer.Option(None, "--corpus", metavar="FILE", help=CORPUS_HELP),
    queries: Optional[str] = typer.Option(None, "--queries", metavar="FILE", help=QUERIES_HELP),
    model: Optional[str] = typer.Option(None, "-m", "--model", help=MODEL_HELP),
    dim: Optional[int] = typer.Option(None, "--dim", metavar="N", help="Keep the first N dimensions, re-normalized (vecpipe truncate --dim)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="int8|binary", help="Store the corpus quantized, in a flat index scanned exhaustively (vecpipe index build --quantize)."),
    rescore: Optional[int] = typer.Option(None, "--rescore", metavar="R", help="With --quantize: re-rank the top-k x R candidates with float vectors (vecpipe search --rescore)."),
    exact: bool = typer.Option(False, "--exact", help="Exact (brute-force) cosine search: the default for float vectors, as MTEB searches."),
    index_params: Optional[str] = typer.Option(None, "--index-params", metavar="M=16,...", help=INDEX_PARAMS_HELP),
    top_k: int = typer.Option(1000, "--top-k", metavar="N", help=TOP_K_HELP),
    k: str = typer.Option(DEFAULT_K, "--k", metavar="K,K,...", help="Cutoffs, comma-separated. nDCG@10, the main score, is always included."),
    complete: bool = typer.Option(False, "--complete", "-c", help="Average over every judged query, scoring those missing from the run as 0 (trec_eval -c). Default: leave them out, as pytrec_eval and MTEB do."),
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
    k_values = parse_k_values(k)
    default_task, default_split = default_task_and_split(qrels)
    options = {"task_name": task_name or default_task, "split": split or default_split, "started": started,
               "as_json": as_json, "output_dir": output}
    if corpus is None and queries is None:
        _score_run_file(run or STDIN, qrels, k_values, complete, options)
        return
    if run is not None:
        raise UsageError("--run scores a run file; --corpus and --queries make the run: give one or the other")
    if top_k < 1:
        raise UsageError("--top-k must be at least 1")
    config = _search_config(dim, quantize, rescore, exact, index_params)
    data = _load_dataset(corpus, queries, qrels)
    _embed_and_score(data, config, model, top_k, k_values, complete, no_cache, quiet, options)


# --- STS -------------------------------------------------------------------------------------

STS_SIMILARITIES = ("cosine", "manhattan", "euclidean")


def default_pairs_task(path: str) -> tuple[str, str]:
    """`data/sickr/test.jsonl` -> ("sickr", "test")."""
    pairs = Path(path)
    return (pairs.parent.name or pairs.stem), pairs.stem


def sts_table(task_name: str, split: str, scores: dict, count: int) -> tuple[str, list[str], list[list]]:
    title = f"{task_name} ({split}): cosine Spearman {scores['cosine_spearman']:.5f} over {count} pairs"
    rows = [[name, f"{scores[name + '_pearson']:.5f}", f"{scores[name + '_spearman']:.5f}"] for name in STS_SIMILARITIES]
    return title, ["similarity", "Pearson", "Spearman"], rows


@eval_app.command("sts")
@handles_errors
def sts(
    pairs: str = typer.Option(..., "--pairs", metavar="FILE", help="JSONL pairs: sentence1, sentence2 and a numeric score per line."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help=MODEL_HELP),
    task_name: Optional[str] = typer.Option(None, "--task-name", metavar="NAME", help="Name in the result (default: the folder holding the pairs file)."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME", help="Split name in the result (default: the pairs file name)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="DIR", help="Also write DIR/<task_name>.json."),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help=QUIET_HELP),
) -> None:
    """Semantic textual similarity: how well cosine similarity ranks sentence pairs like the gold scores.

    The main score is the Spearman correlation of cosine similarity with the gold score, as MTEB
    reports it; Pearson's r and the correlations of Manhattan and Euclidean distances come too.

    Example: vecpipe eval sts --pairs sickr/test.jsonl
    """
    from vecpipe.core.evaluation import evaluate_sts, read_sts_pairs

    started = time.monotonic()
    default_task, default_split = default_pairs_task(pairs)
    data = read_sts_pairs(pairs)
    with embedding_progress(quiet) as progress:
        embedder = open_embedder(model, no_cache, progress)
        scores = evaluate_sts(embedder, data)
    provenance = {"command": "eval sts", "model": model_record(embedder), "inputs": data.inputs,
                  "parameters": {"main_metric": "cosine_spearman"}, "pairs": len(data.gold),
                  "embeddings": embedding_summary(embedder, quiet)}
    task, split_name = task_name or default_task, split or default_split
    result = mteb_result(task, split_name, scores, scores["cosine_spearman"], started, provenance)
    emit_result(result, sts_table(task, split_name, scores, len(data.gold)), as_json, output)


# --- index quality ---------------------------------------------------------------------------


def _ann_values(kind: str, k: int, ef: Optional[str], rescore: Optional[str]) -> list[int]:
    """The swept setting: hnswlib's ef (default k, 2k, ... 32k), or a flat index's rescoring multipliers."""
    from vecpipe.core.errors import UsageError

    if kind == "hnsw":
        if rescore is not None:
            raise UsageError("--rescore applies to flat (quantized) indexes; this one is an hnswlib graph: sweep --ef")
        return parse_int_list(ef, "--ef") if ef else [k * 2**step for step in range(6)]
    if ef is not None:
        raise UsageError("--ef applies to hnswlib indexes; this one is flat (quantized): sweep --rescore")
    return parse_int_list(rescore, "--rescore") if rescore else [1, 2, 4, 8]


def ann_table(name: str, report) -> tuple[str, list[str], list[list]]:
    title = f"{name}: recall@{report.k} against exact search ({report.exact_qps:.0f} QPS) over {report.queries} queries"
    rows = [[p.parameter, "codes only" if p.value is None else p.value, f"{p.recall:.4f}", f"{p.qps:.0f}", "*" if p.pareto else ""]
            for p in report.points]
    return title, ["setting", "value", f"recall@{report.k}", "QPS", "Pareto"], rows


@eval_app.command("ann")
@handles_errors
def ann(
    directory: Path = typer.Argument(..., help="The index directory (vecpipe index build)."),
    queries: str = typer.Option(..., "--queries", metavar="FILE", help="Queries: text lines, JSONL (--field; BEIR queries.jsonl works), or vector records."),
    k: int = typer.Option(10, "-k", help="Neighbours per query; recall@k is measured against the exact top k."),
    ef: Optional[str] = typer.Option(None, "--ef", metavar="EF,EF,...", help="hnswlib indexes: search widths to sweep (default k, 2k, 4k ... 32k)."),
    rescore: Optional[str] = typer.Option(None, "--rescore", metavar="R,R,...", help="Flat int8/binary indexes built with --keep-float: rescoring multipliers to sweep after the codes alone (default 1,2,4,8)."),
    model: Optional[str] = typer.Option(None, "-m", "--model", help="Where to find the index's model for text queries (default: the name the index records)."),
    field: str = typer.Option("text", "--field", help="JSONL field holding the query text."),
    repeat: int = typer.Option(3, "--repeat", help="Time each setting this many times and keep the fastest (ann-benchmarks does the same)."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="PNG", help="Draw recall against QPS with the Pareto frontier (needs vecpipe[plot])."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="DIR", help="Also write DIR/<index name>.ann.json."),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help=QUIET_HELP),
) -> None:
    """Index quality: recall@k against exact search and queries per second, over a sweep of settings.

    For an hnswlib index the search width ef is swept; for a flat int8/binary index with float
    vectors kept, the rescoring multiplier. The settings nothing else beats on both recall and
    QPS are marked as the Pareto frontier.

    Example: vecpipe eval ann docs.idx --queries queries.jsonl -k 10 --ef 10,20,40,80,160 --plot ann.png
    """
    from vecpipe.core.ann_eval import load_queries, measure_ann
    from vecpipe.core.index import VectorIndex, index_info

    if plot:
        from vecpipe.core.plots import pyplot

        pyplot()  # fail now, not after the measurements, when matplotlib is missing
    started = time.monotonic()
    with VectorIndex.open(directory) as index, embedding_progress(quiet) as progress:
        values = _ann_values(index.manifest["kind"], k, ef, rescore)

        def embedder_for(provenance: dict):
            return open_embedder(model or provenance["model"], no_cache, progress,
                                 layers=provenance.get("layer"), pooling=provenance.get("pooling"))

        query_vectors = load_queries(queries, index, embedder_for, field)
        report = measure_ann(index, query_vectors, k, values, repeat)
    name = directory.resolve().name
    result = {
        "task_name": name,
        "k": report.k,
        "queries": report.queries,
        "exact_qps": report.exact_qps,
        "points": [p.as_dict() for p in report.points],
        "pareto": [p.as_dict() for p in report.points if p.pareto],
        "evaluation_time": round(time.monotonic() - started, 6),
        "vecpipe": {"command": "eval ann", "index": index_info(directory),
                    "inputs": {"queries": _input_record(queries)}, "parameters": {"repeat": repeat}},
    }
    if plot:
        from vecpipe.core.plots import plot_ann

        plot_ann(report, plot, f"{name}: {report.kind} index, k={k}")
    emit_result(result, ann_table(name, report), as_json, output, ".ann")


def _input_record(path: str) -> dict:
    from vecpipe.core.evaluation import file_record

    return file_record(path)


# --- sweeps ----------------------------------------------------------------------------------


def sweep_row(outcome, baseline: float, full_dim: int, is_baseline: bool) -> dict:
    row = outcome.config.describe(full_dim)
    row.update(
        main_score=outcome.main_score,
        relative=outcome.main_score / baseline if baseline else None,
        bytes_per_vector=outcome.bytes_per_vector,
        qps=outcome.qps(),
        search_seconds=outcome.search.seconds,
        baseline=is_baseline,
        scores=outcome.evaluation.averages,
    )
    return row


def sweep_table(task_name: str, rows: list[dict]) -> tuple[str, list[str], list[list]]:
    title = f"{task_name}: nDCG@10 by dimensions, dtype and rescoring (relative to float32 at full dimension)"
    columns = ["dim", "dtype", "rescore", "search", "nDCG@10", "relative", "bytes/vector", "QPS"]
    table = [[r["dim"], r["dtype"], r["rescore"] or "", r["search"], f"{r['main_score']:.5f}",
              f"{r['relative']:.4f}" if r["relative"] is not None else "", r["bytes_per_vector"], f"{r['qps']:.0f}"]
             for r in rows]
    return title, columns, table


def _sweep_grid(dims: str, dtypes: str, rescore: str, index_params: Optional[str], full_dim: int):
    from vecpipe.core.errors import UsageError
    from vecpipe.core.evaluation import parse_index_params, sweep_configs

    dim_list = sorted(parse_int_list(dims, "--dims") if dims else [full_dim], reverse=True)
    if dim_list[0] > full_dim:
        raise UsageError(f"--dims {dim_list[0]} is more than the model's {full_dim} dimensions")
    dtype_list = [d.strip() for d in dtypes.split(",") if d.strip()]
    rescores = parse_int_list(rescore, "--rescore") if rescore.strip() else []
    hnsw = parse_index_params(index_params) if index_params else None
    return sweep_configs(dim_list, dtype_list, rescores, hnsw), hnsw


def _run_sweep(data, docs, queries, configs, baseline_config, top_k: int, quiet: bool) -> list:
    from vecpipe.core.evaluation import evaluate_config

    shown: set = set()
    outcomes = []
    plan = ([] if baseline_config in configs else [baseline_config]) + configs
    for number, config in enumerate(plan, start=1):
        outcome = evaluate_config(data, docs, queries, config, top_k=top_k)
        _say_once(outcome.search.notices, shown)
        if not quiet:
            say(f"[{number}/{len(plan)}] dim {config.dim} {config.dtype} rescore {config.rescore or '-'}: "
                f"nDCG@10 {outcome.main_score:.5f}, {outcome.qps():.0f} QPS")
        outcomes.append(outcome)
    return outcomes


@eval_app.command("sweep")
@handles_errors
def sweep(
    qrels: str = typer.Option(..., "--qrels", metavar="FILE", help="Relevance judgments (BEIR TSV or TREC qrels)."),
    corpus: str = typer.Option(..., "--corpus", metavar="FILE", help="BEIR corpus.jsonl (_id, title, text)."),
    queries: str = typer.Option(..., "--queries", metavar="FILE", help=QUERIES_HELP),
    model: Optional[str] = typer.Option(None, "-m", "--model", help=MODEL_HELP),
    dims: str = typer.Option("", "--dims", metavar="D,D,...", help="Dimensions to keep (prefix truncation, re-normalized); default: the model's."),
    dtypes: str = typer.Option("float32,int8,binary", "--dtypes", metavar="T,T,...", help="Storage types: float32, int8, binary."),
    rescore: str = typer.Option("1,4", "--rescore", metavar="R,R,...", help="Rescoring multipliers for int8/binary rows, each besides the codes alone; empty for none."),
    index_params: Optional[str] = typer.Option(None, "--index-params", metavar="M=16,...", help=INDEX_PARAMS_HELP),
    top_k: int = typer.Option(1000, "--top-k", metavar="N", help=TOP_K_HELP),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="PNG", help="Draw nDCG@10 against bytes per vector (needs vecpipe[plot])."),
    task_name: Optional[str] = typer.Option(None, "--task-name", metavar="NAME", help=TASK_HELP),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME", help=SPLIT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="DIR", help="Also write DIR/<task_name>.sweep.json."),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help=QUIET_HELP),
) -> None:
    """Retrieval quality against storage: every combination of dimensions, dtype and rescoring.

    The corpus and queries are embedded once (and cached); each row truncates, quantizes, indexes,
    searches and scores them. One table: nDCG@10, relative to float32 at full dimension, bytes per
    stored vector, and search QPS.

    Example: vecpipe eval sweep --corpus c.jsonl --queries q.jsonl --qrels qrels/test.tsv --dims 384,256,128,64 --dtypes float32,int8,binary --rescore 1,4
    """
    from vecpipe.core.errors import UsageError
    from vecpipe.core.evaluation import baseline_config, embed_retrieval_data

    if plot:
        from vecpipe.core.plots import pyplot

        pyplot()  # fail now, not after an hour of embedding, when matplotlib is missing
    if top_k < 1:
        raise UsageError("--top-k must be at least 1")
    started = time.monotonic()
    default_task, default_split = default_task_and_split(qrels)
    data = _load_dataset(corpus, queries, qrels)
    with embedding_progress(quiet) as progress:
        embedder = open_embedder(model, no_cache, progress)
        full_dim = embedder.model.dim
        configs, hnsw = _sweep_grid(dims, dtypes, rescore, index_params, full_dim)
        docs, query_vectors = embed_retrieval_data(embedder, data)
    baseline = baseline_config(configs, full_dim, hnsw)
    outcomes = _run_sweep(data, docs, query_vectors, configs, baseline, top_k, quiet)
    baseline_score = outcomes[0].main_score if baseline not in configs else outcomes[configs.index(baseline)].main_score
    rows = [sweep_row(o, baseline_score, full_dim, o.config == baseline) for o in outcomes]
    task = task_name or default_task
    result = {
        "task_name": task,
        "split": split or default_split,
        "main_metric": "ndcg_at_10",
        "rows": rows,
        "evaluation_time": round(time.monotonic() - started, 6),
        "vecpipe": {"command": "eval sweep", "model": model_record(embedder), "inputs": data.inputs,
                    "parameters": {"top_k": top_k, "index_params": dict(hnsw) if hnsw else None},
                    "embeddings": embedding_summary(embedder, quiet)},
    }
    if plot:
        from vecpipe.core.plots import plot_sweep

        plot_sweep(rows, plot, f"{task}: quality against storage", "nDCG@10")
    emit_result(result, sweep_table(task, rows), as_json, output, ".sweep")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
