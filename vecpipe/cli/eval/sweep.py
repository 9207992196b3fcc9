"""`vecpipe eval sweep`: retrieval quality against storage over dimensions x dtypes x rescoring."""
from __future__ import annotations

import time
from typing import Optional

import typer

from vecpipe.cli.common import handles_errors, say
from vecpipe.cli.completion import model_names
from vecpipe.cli.eval.common import (
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
    say_once,
)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def sweep_table(task_name: str, rows: list[dict]) -> tuple[str, list[str], list[list]]:
    title = f"{task_name}: nDCG@10 by dimensions, dtype and rescoring (relative to float32 at full dimension)"
    columns = ["dim", "dtype", "rescore", "search", "nDCG@10", "relative", "bytes/vector", "QPS"]
    table = [[r["dim"], r["dtype"], r["rescore"] or "", r["search"], f"{r['main_score']:.5f}",
              f"{r['relative']:.4f}" if r["relative"] is not None else "", r["bytes_per_vector"], f"{r['qps']:.0f}"]
             for r in rows]
    if any(r["mode"] != "dense" for r in rows):  # --alpha: say which rows are lexical or hybrid
        columns, table = ["mode"] + columns, [[r["mode"]] + line for r, line in zip(rows, table)]
    return title, columns, table


def _sweep_grid(dims: str, dtypes: str, rescore: str, index_params: Optional[str], full_dim: int):
    from vecpipe.core.errors import UsageError
    from vecpipe.core.eval.evaluation import parse_index_params, sweep_configs

    dim_list = sorted(parse_int_list(dims, "--dims") if dims else [full_dim], reverse=True)
    if dim_list[0] > full_dim:
        raise UsageError(f"--dims {dim_list[0]} is more than the model's {full_dim} dimensions")
    dtype_list = [d.strip() for d in dtypes.split(",") if d.strip()]
    rescores = parse_int_list(rescore, "--rescore") if rescore.strip() else []
    hnsw = parse_index_params(index_params) if index_params else None
    return sweep_configs(dim_list, dtype_list, rescores, hnsw), hnsw


def _parse_alphas(text: Optional[str]) -> list[float]:
    from vecpipe.core.errors import UsageError

    if not text:
        return []
    try:
        alphas = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--alpha wants comma-separated numbers between 0 and 1, not {text!r}") from None
    if not alphas or not all(0 <= a <= 1 for a in alphas):
        raise UsageError(f"--alpha wants comma-separated numbers between 0 and 1, not {text!r}")
    return alphas


def _modes(alphas: list[float]) -> list[tuple[str, object]]:
    """(mode, fusion) rows beside the dense grid: lexical alone, RRF, and a convex mix per alpha."""
    from vecpipe.core.retrieval.modes import Fusion

    if not alphas:
        return []
    return [("lexical", None), ("hybrid", Fusion("rrf"))] + [("hybrid", Fusion("convex", alpha=a)) for a in alphas]


def _mode_label(mode: str, fusion) -> str:
    if fusion is None:
        return mode
    return f"{mode} rrf" if fusion.method == "rrf" else f"{mode} convex a={fusion.alpha:g}"


def _run_sweep(data, docs, queries, configs, baseline_config, top_k: int, alphas: list[float], quiet: bool) -> list:
    from vecpipe.core.eval.evaluation import evaluate_config

    shown: set = set()
    outcomes = []
    plan = [(config, "dense", None) for config in ([] if baseline_config in configs else [baseline_config]) + configs]
    plan += [(baseline_config, mode, fusion) for mode, fusion in _modes(alphas)]
    for number, (config, mode, fusion) in enumerate(plan, start=1):
        outcome = evaluate_config(data, docs, queries, config, top_k=top_k, mode=mode, fusion=fusion)
        say_once(outcome.search.notices, shown)
        if not quiet:
            say(f"[{number}/{len(plan)}] {_mode_label(mode, fusion)} dim {config.dim} {config.dtype} rescore {config.rescore or '-'}: "
                f"nDCG@10 {outcome.main_score:.5f}, {outcome.qps():.0f} QPS")
        outcomes.append((outcome, mode, fusion))
    return outcomes


@handles_errors
def sweep(
    qrels: str = typer.Option(..., "--qrels", metavar="FILE", help="Relevance judgments (BEIR TSV or TREC qrels)."),
    corpus: str = typer.Option(..., "--corpus", metavar="FILE", help="BEIR corpus.jsonl (_id, title, text)."),
    queries: str = typer.Option(..., "--queries", metavar="FILE", help=QUERIES_HELP),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help=MODEL_HELP),
    dims: str = typer.Option("", "--dims", metavar="D,D,...", help="Dimensions to keep (prefix truncation, re-normalized); default: the model's."),
    dtypes: str = typer.Option("float32,int8,binary", "--dtypes", metavar="T,T,...", help="Storage types: float32, int8, binary."),
    rescore: str = typer.Option("1,4", "--rescore", metavar="R,R,...", help="Rescoring multipliers for int8/binary rows, each besides the codes alone; empty for none."),
    index_params: Optional[str] = typer.Option(None, "--index-params", metavar="M=16,...", help=INDEX_PARAMS_HELP),
    alpha: Optional[str] = typer.Option(None, "--alpha", metavar="A,A,...", help="Also rows for lexical search (BM25), hybrid RRF, and a hybrid convex mix at each of these dense weights, on the full-dimension float vectors."),
    top_k: int = typer.Option(1000, "--top-k", max=10**7, metavar="N", help=TOP_K_HELP),
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
    from vecpipe.core.eval.evaluation import baseline_config, embed_retrieval_data
    from vecpipe.core.eval.results import model_record, sweep_row

    if plot:
        from vecpipe.core.eval.plots import pyplot

        pyplot()  # fail now, not after an hour of embedding, when matplotlib is missing
    if top_k < 1:
        raise UsageError("--top-k must be at least 1")
    alphas = _parse_alphas(alpha)
    started = time.monotonic()
    default_task, default_split = default_task_and_split(qrels)
    data = load_dataset(corpus, queries, qrels)
    with embedding_progress(quiet) as progress:
        embedder = open_embedder(model, no_cache, progress)
        full_dim = embedder.model.dim
        configs, hnsw = _sweep_grid(dims, dtypes, rescore, index_params, full_dim)
        docs, query_vectors = embed_retrieval_data(embedder, data)
    baseline = baseline_config(configs, full_dim, hnsw)
    outcomes = _run_sweep(data, docs, query_vectors, configs, baseline, top_k, alphas, quiet)
    dense = [o for o, mode, _ in outcomes if mode == "dense"]
    baseline_score = dense[0].main_score if baseline not in configs else dense[configs.index(baseline)].main_score
    rows = [{**sweep_row(o, baseline_score, full_dim, o.config == baseline and mode == "dense"), "mode": _mode_label(mode, fusion)}
            for o, mode, fusion in outcomes]
    task = task_name or default_task
    result = {
        "task_name": task,
        "split": split or default_split,
        "main_metric": "ndcg_at_10",
        "rows": rows,
        "evaluation_time": round(time.monotonic() - started, 6),
        "vecpipe": {"command": "eval sweep", "model": model_record(embedder), "inputs": data.inputs,
                    "parameters": {"top_k": top_k, "index_params": dict(hnsw) if hnsw else None, "alphas": alphas},
                    "embeddings": embedding_summary(embedder, quiet)},
    }
    if plot:
        from vecpipe.core.eval.plots import plot_sweep

        plot_sweep([r for r in rows if r["mode"] == "dense"], plot, f"{task}: quality against storage", "nDCG@10")
    emit_result(result, sweep_table(task, rows), as_json, output, ".sweep")
