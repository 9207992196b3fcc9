"""`vecpipe eval ann`: an index's recall@k against exact search, and its speed, over a sweep of settings."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from vecpipe.cli.common import handles_errors
from vecpipe.cli.eval.common import JSON_HELP, NO_CACHE_HELP, QUIET_HELP, embedding_progress, emit_result, open_embedder, parse_int_list
from vecpipe.cli.completion import index_dirs, model_names


def register(app: typer.Typer) -> None:
    app.command("ann")(ann)


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


@handles_errors
def ann(
    directory: Path = typer.Argument(..., autocompletion=index_dirs, help="The index directory (vecpipe index build)."),
    queries: str = typer.Option(..., "--queries", metavar="FILE", help="Queries: text lines, JSONL (--field; BEIR queries.jsonl works), or vector records."),
    k: int = typer.Option(10, "-k", min=1, max=10**6, help="Neighbours per query; recall@k is measured against the exact top k."),
    ef: Optional[str] = typer.Option(None, "--ef", metavar="EF,EF,...", help="hnswlib indexes: search widths to sweep (default k, 2k, 4k ... 32k)."),
    rescore: Optional[str] = typer.Option(None, "--rescore", metavar="R,R,...", help="Flat int8/binary indexes built with --keep-float: rescoring multipliers to sweep after the codes alone (default 1,2,4,8)."),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help="Where to find the index's model for text queries (default: the name the index records)."),
    field: str = typer.Option("text", "--field", help="JSONL field holding the query text."),
    repeat: int = typer.Option(3, "--repeat", min=1, max=1000, help="Time each setting this many times and keep the fastest (ann-benchmarks does the same)."),
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
    from vecpipe.core.eval.ann import load_queries, measure_ann
    from vecpipe.core.index.api import info, open_index

    if plot:
        from vecpipe.core.eval.plots import pyplot

        pyplot()  # fail now, not after the measurements, when matplotlib is missing
    started = time.monotonic()
    with open_index(directory) as index, embedding_progress(quiet) as progress:
        values = _ann_values(index.kind, k, ef, rescore)

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
        "vecpipe": {"command": "eval ann", "index": info(directory),
                    "inputs": {"queries": _input_record(queries)}, "parameters": {"repeat": repeat}},
    }
    if plot:
        from vecpipe.core.eval.plots import plot_ann

        plot_ann(report, plot, f"{name}: {report.kind} index, k={k}")
    emit_result(result, ann_table(name, report), as_json, output, ".ann")


def _input_record(path: str) -> dict:
    from vecpipe.core.eval.evaluation import file_record

    return file_record(path)
