"""`vecpipe eval classification`: MTEB's few-shot logistic-regression classification of embeddings."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from vecpipe.cli.common import handles_errors
from vecpipe.cli.completion import model_names
from vecpipe.cli.eval.common import JSON_HELP, MODEL_HELP, NO_CACHE_HELP, QUIET_HELP, embedding_progress, embedding_summary, emit_result, open_embedder


def register(app: typer.Typer) -> None:
    app.command("classification")(classification)


def classification_table(task: str, split: str, result) -> tuple[str, list[str], list[list]]:
    from vecpipe.core.eval.classification import METRICS

    title = f"{task} ({split}): accuracy {result.main_score:.5f}, {result.draws} draws of {result.labels} labels"
    rows = [[metric, f"{result.scores[metric]:.5f}", f"{result.spread(metric):.5f}"] for metric in METRICS]
    return title, ["metric", "mean", "std over draws"], rows


@handles_errors
def classification(
    train: str = typer.Option(..., "--train", metavar="FILE", help="JSONL rows with a text and a label each: the pool the few-shot training sets are drawn from."),
    test: str = typer.Option(..., "--test", metavar="FILE", help="JSONL rows with a text and a label each, all predicted."),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help=MODEL_HELP),
    text_field: str = typer.Option("text", "--text-field", metavar="NAME", help="Field holding the text."),
    label_field: str = typer.Option("label", "--label-field", metavar="NAME", help="Field holding the label (a string or a number)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Named prompt from the model's manifest for every text (default: none, as MTEB runs all-MiniLM-L6-v2)."),
    n_experiments: int = typer.Option(10, "--n-experiments", metavar="N", min=1, max=1000, help="Draws of a training set (MTEB: 10)."),
    samples_per_label: int = typer.Option(8, "--samples-per-label", metavar="N", min=1, max=100000, help="Training texts per label in each draw (MTEB: 8)."),
    seed: int = typer.Option(42, "--seed", min=0, max=2**32 - 1, help="Seed of the draws and of the classifier (MTEB: 42)."),
    max_iter: int = typer.Option(100, "--max-iter", min=1, max=100000, help="LogisticRegression iterations (MTEB: 100)."),
    task_name: Optional[str] = typer.Option(None, "--task-name", metavar="NAME", help="Name in the result (default: the folder holding the test file)."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME", help="Split name in the result (default: the test file name)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="DIR", help="Also write DIR/<task_name>.json."),
    no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help=QUIET_HELP),
) -> None:
    """Classification: logistic regression on few-shot draws of embedded training texts, as MTEB runs it.

    Each draw shuffles the train set (numpy, seed 42) and keeps --samples-per-label texts per label;
    scikit-learn's LogisticRegression is fitted on their embeddings and predicts the test set. The
    result averages accuracy (the main score), macro F1 and weighted F1 over --n-experiments draws.
    Needs scikit-learn: pip install 'vecpipe[eval]'.

    Example: vecpipe eval classification --train banking77/train.jsonl --test banking77/test.jsonl
    """
    from vecpipe.core.eval.classification import evaluate_classification, read_labelled
    from vecpipe.core.eval.results import model_record, mteb_result

    started = time.monotonic()
    train_data = read_labelled(train, text_field, label_field)
    test_data = read_labelled(test, text_field, label_field)
    with embedding_progress(quiet) as progress:
        embedder = open_embedder(model, no_cache, progress)
        result = evaluate_classification(embedder, train_data, test_data, n_experiments=n_experiments,
                                         samples_per_label=samples_per_label, seed=seed, max_iter=max_iter, prompt=prompt)
    parameters = {"n_experiments": n_experiments, "samples_per_label": samples_per_label, "seed": seed, "max_iter": max_iter,
                  "prompt": prompt, "text_field": text_field, "label_field": label_field, "classifier": "LogisticRegression",
                  "main_metric": "accuracy"}
    provenance = {"command": "eval classification", "model": model_record(embedder),
                  "inputs": {"train": train_data.inputs, "test": test_data.inputs}, "parameters": parameters,
                  "train_texts_used": result.train_texts_used, "embeddings": embedding_summary(embedder, quiet)}
    path = Path(test)
    task, split_name = task_name or path.parent.name or path.stem, split or path.stem
    outcome = mteb_result(task, split_name, result.scores, result.main_score, started, provenance)
    emit_result(outcome, classification_table(task, split_name, result), as_json, output)
