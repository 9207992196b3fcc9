"""What the eval subcommands share: option help, progress, the embedder, and result output."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Optional

import typer

from vecpipe.cli.common import binary_stdout, input_name, make_progress, open_input, print_table, say, stdout_is_terminal

eval_app = typer.Typer(
    name="eval",
    help="Measure retrieval, STS, index and storage quality with MTEB's and trec_eval's definitions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

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


def default_task_and_split(qrels_path: str) -> tuple[str, str]:
    """`data/scifact/qrels/test.tsv` -> ("scifact", "test"); `judgments.txt` -> ("judgments", "test")."""
    path = Path(qrels_path)
    if path.parent.name == "qrels" and path.parent.parent.name:
        return path.parent.parent.name, path.stem
    return (path.stem or "retrieval"), "test"


def read_input(path: str, reader):
    """Parse `path` (or stdin) with `reader(lines, source)`; returns (data, input record with its sha256)."""
    from vecpipe.core.eval.results import read_with_hash

    with open_input(path) as stream:
        return read_with_hash(stream, input_name(path), reader)


def say_once(notices: list[str], shown: set) -> None:
    for notice in notices:
        if notice not in shown:
            shown.add(notice)
            say(notice)


def load_dataset(corpus: Optional[str], queries: Optional[str], qrels: str):
    from vecpipe.core.errors import UsageError
    from vecpipe.core.eval.evaluation import load_retrieval_data

    if not (corpus and queries):
        raise UsageError("--corpus and --queries go together (with --qrels)")
    data = load_retrieval_data(corpus, queries, qrels)
    if data.judged_without_text:
        say(f"{len(data.judged_without_text)} judged queries are not in {queries}; they cannot be searched")
    return data


def emit_result(
    result: dict, table: tuple[str, list[str], list[list]], as_json: bool, output_dir: Optional[str], suffix: str = ""
) -> None:
    """Write the result file if asked, then print JSON (piped or --json) or the table."""
    import orjson

    from vecpipe.core.eval.results import write_result_file

    if output_dir is not None:
        write_result_file(result, output_dir, suffix)
    if as_json or not stdout_is_terminal():
        out = binary_stdout()
        out.write(orjson.dumps(result) + b"\n")
        out.flush()
    else:
        print_table(*table)


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
    from vecpipe.core.eval.evaluation import Embedder
    from vecpipe.core.models.kinds import load_model

    return Embedder(load_model(model, notify=say, **load_options), use_cache=not no_cache, progress=progress)


def embedding_summary(embedder, quiet: bool) -> dict:
    summary = {"embedded": embedder.embedded, "cached": embedder.cached, "cache": embedder.use_cache}
    if not quiet:
        say(f"{embedder.embedded} texts embedded, {embedder.cached} read from the embedding cache")
    return summary
