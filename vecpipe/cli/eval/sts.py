"""`vecpipe eval sts`: how well cosine similarity ranks sentence pairs like the gold scores."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from vecpipe.cli.common import handles_errors
from vecpipe.cli.eval.common import JSON_HELP, MODEL_HELP, NO_CACHE_HELP, QUIET_HELP, embedding_progress, embedding_summary, emit_result, open_embedder
from vecpipe.cli.completion import model_names


def register(app: typer.Typer) -> None:
    app.command("sts")(sts)


STS_SIMILARITIES = ("cosine", "manhattan", "euclidean")


def default_pairs_task(path: str) -> tuple[str, str]:
    """`data/sickr/test.jsonl` -> ("sickr", "test")."""
    pairs = Path(path)
    return (pairs.parent.name or pairs.stem), pairs.stem


def sts_table(task_name: str, split: str, scores: dict, count: int) -> tuple[str, list[str], list[list]]:
    title = f"{task_name} ({split}): cosine Spearman {scores['cosine_spearman']:.5f} over {count} pairs"
    rows = [[name, f"{scores[name + '_pearson']:.5f}", f"{scores[name + '_spearman']:.5f}"] for name in STS_SIMILARITIES]
    return title, ["similarity", "Pearson", "Spearman"], rows


@handles_errors
def sts(
    pairs: str = typer.Option(..., "--pairs", metavar="FILE", help="JSONL pairs: sentence1, sentence2 and a numeric score per line."),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help=MODEL_HELP),
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
    from vecpipe.core.eval.evaluation import evaluate_sts, read_sts_pairs
    from vecpipe.core.eval.results import model_record, mteb_result

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
