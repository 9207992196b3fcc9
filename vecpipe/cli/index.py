"""`vecpipe index`: build, add to, delete from and describe a persistent vector index."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vecpipe.cli.common import STDIN, handles_errors, input_name, make_progress, open_input, print_table, say, stdout_is_terminal
from vecpipe.cli.completion import index_dirs, model_names
from vecpipe.core.errors import UsageError

HELP = """Persistent vector indexes: an hnswlib graph for float vectors, a flat memory-mapped
matrix for int8 and binary ones, with every record's id and fields in SQLite.

Writes are atomic (a kill -9 leaves the old index or the new one) and a second writer fails
at once. `vecpipe search DIR` queries an index.

Examples:

  apropos . | vecpipe embed | vecpipe index build -o man.idx

  vecpipe embed new.jsonl | vecpipe index add man.idx      # same id: replaced

  vecpipe index delete man.idx --id ls.1 --id cp.1

  vecpipe embed docs.jsonl | vecpipe index build -o docs.idx --quantize binary --keep-float
"""

index_app = typer.Typer(name="index", help=HELP, no_args_is_help=True, rich_markup_mode=None)

INPUTS_HELP = "Vector files (JSONL, or .npy with its .meta.jsonl sidecar); `-` or none reads stdin."
THREADS_HELP = "Threads for inserting into the graph (default: all cores)."
ORDER_HELP = "Insertion order: input, or random (seeded by --seed); order moves HNSW recall."


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")


def _read_batches(inputs: list[str], quiet: bool):
    """The vector batches of every input, with a progress count on a terminal."""
    from vecpipe.formats.vectors import VectorInputs

    progress = make_progress(quiet)
    if progress is None:
        yield from VectorInputs(inputs or [STDIN], note=say)
        return
    task = progress.add_task("indexing", total=None, rate="")
    done = 0
    with progress:
        for batch in VectorInputs(inputs or [STDIN], note=say):
            yield batch
            done += len(batch)
            progress.update(task, completed=done)


def _write_options(threads: int, order: str, seed: int):
    from vecpipe.core.index.api import WriteOptions

    return WriteOptions(threads=threads, order=order, seed=seed)


def _report(verb: str, directory: Path, report, quiet: bool) -> None:
    if quiet:
        return
    counts = {"added": report.added, "replaced": report.replaced, "deleted": report.deleted}
    changes = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "no changes"
    say(f"{verb} {directory}: {changes}; {report.count} records ({report.generation})")


@index_app.command("build")
@handles_errors
def build(
    inputs: List[str] = typer.Argument(None, help=INPUTS_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="The index directory to create."),
    metric: str = typer.Option("cosine", "--metric", help="cosine, ip or l2 (float indexes)."),
    M: int = typer.Option(16, "--M", max=2048, help="hnswlib M: graph links per node."),
    ef_construction: int = typer.Option(200, "--ef-construction", max=10**6, help="hnswlib ef_construction: build-time search width."),
    threads: int = typer.Option(0, "--threads", min=0, max=256, help=THREADS_HELP),
    order: str = typer.Option("input", "--order", help=ORDER_HELP),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed for --order random and the graph's levels."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8 or binary: a flat quantized index from float records."),
    keep_float: bool = typer.Option(False, "--keep-float", help="Also store the float vectors (memory-mapped) for `search --rescore`."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="int8 ranges (from `vecpipe quantize --save-calibration`), also used to quantize float queries."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index (atomically)."),
    shards: int = typer.Option(0, "--shards", min=0, max=4096, help="Split the index into N sub-indexes by a stable hash of the id (built in parallel; search fans out and merges). With --lexical, each shard gets its own BM25 part."),
    lexical: bool = typer.Option(False, "--lexical", help="Also index the records' text with BM25 (bm25s), for `search --mode lexical|hybrid`; kept up to date by add and delete."),
    lexical_language: str = typer.Option("english", "--lexical-language", metavar="LANG", help="Stemmer (PyStemmer) and stopword language of the lexical part."),
    no_stem: bool = typer.Option(False, "--no-stem", help="Lexical part: no stemming."),
    no_stopwords: bool = typer.Option(False, "--no-stopwords", help="Lexical part: keep stopwords."),
    field: str = typer.Option("text", "--field", help="Lexical part: the field holding the text (as in embed; a BEIR `title` is joined in front of `text`)."),
    no_title: bool = typer.Option(False, "--no-title", help="Lexical part: do not join a `title` in front of `text`."),
    bm25_k1: float = typer.Option(1.5, "--bm25-k1", min=0, max=100, help="BM25 k1 (term-frequency saturation)."),
    bm25_b: float = typer.Option(0.75, "--bm25-b", min=0, max=1, help="BM25 b (length normalization)."),
    bm25_method: str = typer.Option("lucene", "--bm25-method", help="BM25 variant: lucene, robertson, atire, bm25l or bm25+."),
    engine: str = typer.Option("local", "--engine", metavar="local|ray", help="With --shards: ray builds each shard in a task on a Ray cluster (the `ray` extra; docs/SCALE.md)."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: the cluster to join (HOST:PORT); default: a local one for this run."),
    workers: int = typer.Option(2, "--workers", min=1, max=4096, help="--engine ray without --address: the local cluster's CPUs."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress and no summary."),
) -> None:
    """Build an index from vector records."""
    from vecpipe.core.index.api import BuildOptions, LexicalSettings
    from vecpipe.core.index.api import build as build_index

    settings = None
    if lexical:
        settings = LexicalSettings(language=lexical_language, stem=not no_stem, stopwords=not no_stopwords, k1=bm25_k1, b=bm25_b,
                                   method=bm25_method, field=field, join_title=not no_title)
    options = BuildOptions(
        metric=metric, M=M, ef_construction=ef_construction, quantize=quantize,
        keep_float=keep_float, calibration=calibration, overwrite=overwrite, lexical=settings,
    )
    report = build_index(output, _read_batches(inputs, quiet), options, _write_options(threads, order, seed),
                         shard_count=shards, engine=engine, workers=workers, address=address)
    _report("built", output, report, quiet)


@index_app.command("add")
@handles_errors
def add(
    directory: Path = typer.Argument(..., autocompletion=index_dirs, help="The index directory."),
    inputs: List[str] = typer.Argument(None, help=INPUTS_HELP),
    threads: int = typer.Option(0, "--threads", min=0, max=256, help=THREADS_HELP),
    order: str = typer.Option("input", "--order", help=ORDER_HELP),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed for --order random."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress and no summary."),
) -> None:
    """Add vector records; a record whose id is already in the index replaces it."""
    from vecpipe.core.index.api import add as add_to_index

    report = add_to_index(directory, _read_batches(inputs, quiet), _write_options(threads, order, seed))
    _report("updated", directory, report, quiet)


def _id_forms(token: str) -> list:
    """Ids on the command line are text; an index built without ids numbers records 0, 1, ..."""
    forms: list = [token]
    if token.lstrip("-").isdigit():
        forms.append(int(token))
    return forms


def _ids_from_file(path: str) -> list[str]:
    from vecpipe.core.errors import DataError

    ids = []
    with open_input(path) as fh:
        for number, line in enumerate(fh, start=1):
            try:
                text = line.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise DataError("not valid UTF-8", input_name(path), number) from None
            if text:
                ids.append(text)
    return ids


@index_app.command("delete")
@handles_errors
def delete(
    directory: Path = typer.Argument(..., autocompletion=index_dirs, help="The index directory."),
    ids: List[str] = typer.Option([], "--id", help="An id to delete (repeatable)."),
    ids_file: Optional[str] = typer.Option(None, "--ids", help="A file of ids, one per line (`-`: stdin)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary."),
) -> None:
    """Delete records by id."""
    from vecpipe.core.index.api import delete as delete_from_index
    from vecpipe.core.index.api import id_key

    tokens = list(ids) + (_ids_from_file(ids_file) if ids_file else [])
    if not tokens:
        raise UsageError("give ids to delete with --id ID or --ids FILE")
    forms = {token: _id_forms(token) for token in tokens}
    report = delete_from_index(directory, [form for group in forms.values() for form in group])
    missing = {id_key(value) for value in report.missing}
    absent = [token for token, group in forms.items() if all(id_key(f) in missing for f in group)]
    if absent:
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        say(f"not in the index: {shown}")
    _report("updated", directory, report, quiet)


@index_app.command("sync")
@handles_errors
def sync(
    directory: Path = typer.Argument(..., autocompletion=index_dirs, help="The index directory (made on the first sync)."),
    inputs: List[str] = typer.Argument(None, help="Text records (plain lines or JSONL, as embed reads them); `-` or none: stdin."),
    field: str = typer.Option("text", "--field", help="JSONL field holding the text."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="The model's prompt to embed with on the first sync (later syncs keep the index's)."),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help="The model (default: the index's own; all-MiniLM-L6-v2 for a new index)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary."),
) -> None:
    """Embed only new or changed records into the index: a record whose text, model and prompt hash
    to what the index recorded for its id is skipped (the hashes live in the index's metadata store;
    on a sharded index, in the shard each id routes to, and only shards with a changed record are rewritten)."""
    from vecpipe.core.pipeline.sync import sync_index

    report = sync_index(directory, inputs or [STDIN], field, model, prompt, notify=say)
    if not quiet:
        say(f"synced {directory}: {report.embedded} embedded ({report.new} not synced before, {report.embedded - report.new} changed), "
            f"{report.unchanged} unchanged" + (f"; {report.count} records" if report.count is not None else ""))


@index_app.command("info")
@handles_errors
def info(
    directory: Path = typer.Argument(..., autocompletion=index_dirs, help="The index directory."),
    as_json: bool = typer.Option(False, "--json", help="JSON even on a terminal."),
) -> None:
    """Counts, model, dimension, metric, parameters and bytes on disk (JSON when piped)."""
    from vecpipe.core.index.api import info as index_info

    details = index_info(directory)
    if as_json or not stdout_is_terminal():
        import orjson

        print(orjson.dumps(details, option=orjson.OPT_INDENT_2).decode())
        return
    print_table(str(directory), ["property", "value"], [[key, _plain(value)] for key, value in details.items()])


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)
