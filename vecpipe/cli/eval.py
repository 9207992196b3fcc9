"""`vecpipe eval`: score retrieval runs the way MTEB and trec_eval do.

`eval retrieval --qrels FILE [--run FILE]` scores any retriever's output (vecpipe search
JSONL or a TREC run) against BEIR or TREC qrels. Results are MTEB-shaped JSON, printed
when stdout is piped (or with --json), as a table on a terminal, and written to
`--output DIR/<task_name>.json`.

Adding a mode: build a run (query id -> {doc id: score}) and call `report_retrieval`;
other tasks build their metric dict and call `mteb_result` and `emit_result`.
"""
from __future__ import annotations

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
    help="Measure retrieval quality with MTEB's and trec_eval's definitions.",
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


def parse_k_values(text: str) -> list[int]:
    """`1,3,10` -> [1, 3, 10]; UsageError on anything else."""
    from vecpipe.core.errors import UsageError

    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UsageError(f"--k wants comma-separated positive integers, not {text!r}") from None
    if not ks or ks[0] < 1:
        raise UsageError(f"--k wants comma-separated positive integers, not {text!r}")
    return ks


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


def write_result_file(result: dict, output_dir: str) -> Path:
    """`output_dir/<task_name>.json`, written atomically, indented like MTEB's files."""
    import orjson

    from vecpipe.core.atomic import write_bytes_atomic

    name = result["task_name"]
    if not name or "/" in name or name.startswith("."):
        from vecpipe.core.errors import UsageError

        raise UsageError(f"task name {name!r} cannot be a file name; pass --task-name")
    target = Path(output_dir) / f"{name}.json"
    write_bytes_atomic(target, orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return target


def emit_result(result: dict, table: tuple[str, list[str], list[list]], as_json: bool, output_dir: Optional[str]) -> None:
    """Write the result file if asked, then print JSON (piped or --json) or the table."""
    import orjson

    if output_dir is not None:
        write_result_file(result, output_dir)
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


def report_retrieval(
    run: dict,
    qrels: dict,
    *,
    k_values: list[int],
    complete: bool,
    task_name: str,
    split: str,
    started: float,
    provenance: dict,
    as_json: bool,
    output_dir: Optional[str],
) -> dict:
    """Score `run` against `qrels`, warn about skipped queries, and emit the MTEB-shaped result."""
    from vecpipe.core.metrics import MAIN_K, MAIN_RETRIEVAL_METRIC, evaluate_retrieval

    # nDCG@10 is always computed: it is the main score.
    evaluation = evaluate_retrieval(run, qrels, sorted({*k_values, MAIN_K}), complete=complete)
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


def _check_run_source(run_path: str, qrels_path: str) -> None:
    from vecpipe.core.errors import UsageError

    if run_path == STDIN and qrels_path == STDIN:
        raise UsageError("the run and the qrels cannot both come from stdin")
    if run_path == STDIN and sys.stdin.isatty():
        raise UsageError("no run given: pipe one in (vecpipe search ... |) or pass --run FILE")


@eval_app.command("retrieval")
@handles_errors
def retrieval(
    qrels: str = typer.Option(..., "--qrels", metavar="FILE", help="Relevance judgments: BEIR TSV (query-id corpus-id score) or TREC qrels (qid 0 docid rel)."),
    run: str = typer.Option(STDIN, "--run", metavar="FILE", help="The run to score: vecpipe search JSONL or TREC (qid Q0 docid rank score tag); `-` is stdin."),
    k: str = typer.Option(DEFAULT_K, "--k", metavar="K,K,...", help="Cutoffs, comma-separated. nDCG@10, the main score, is always included."),
    complete: bool = typer.Option(False, "--complete", "-c", help="Average over every judged query, scoring those missing from the run as 0 (trec_eval -c). Default: leave them out, as pytrec_eval and MTEB do."),
    task_name: Optional[str] = typer.Option(None, "--task-name", metavar="NAME", help="Name in the result (default: the folder holding qrels/, else the qrels file name)."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME", help="Split name in the result (default: the qrels file name under qrels/, else test)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON even on a terminal."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="DIR", help="Also write DIR/<task_name>.json, as the MTEB results repository does."),
) -> None:
    """Score a run against qrels: nDCG, MAP, Recall, P, MRR and HitRate at each cutoff.

    Example: vecpipe search idx --queries q.jsonl | vecpipe eval retrieval --qrels qrels/test.tsv
    """
    started = time.monotonic()
    k_values = parse_k_values(k)
    _check_run_source(run, qrels)
    default_task, default_split = default_task_and_split(qrels)
    qrels_data, qrels_record = load_qrels(qrels)
    run_data, run_record = load_run(run)
    report_retrieval(
        run_data.run,
        qrels_data.qrels,
        k_values=k_values,
        complete=complete,
        task_name=task_name or default_task,
        split=split or default_split,
        started=started,
        provenance={"command": "eval retrieval", "inputs": {"run": run_record, "qrels": qrels_record}},
        as_json=as_json,
        output_dir=output,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
