"""`vecpipe embed`: text in, vector records out."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, List, Optional

import typer

from vecpipe.cli.common import STDIN, VectorOutput, WholeRecordWrites, handles_errors, make_progress, nothing_left_to_finish, say
from vecpipe.cli.completion import model_names
from vecpipe.core.errors import UsageError

if TYPE_CHECKING:  # imported when a command runs, not at start-up
    from vecpipe.core.pipeline.embedding import EmbedJob

HELP = """Embed texts: plain lines or JSONL records in, vector records out.

Input is sniffed from its first non-blank line: JSONL when it starts with `{`, plain text
lines otherwise. Every input field passes through; `embedding` and the `vecpipe`
provenance object are added.

Examples:

  apropos . | vecpipe embed > man.jsonl

  vecpipe embed corpus.jsonl --field text --prompt document

  vecpipe embed docs.jsonl --on-long chunk --overlap 32 | vecpipe index build -o docs.idx

  vecpipe embed docs.jsonl --format npy -o docs.npy   # writes docs.npy + docs.meta.jsonl

  vecpipe embed big.jsonl --format npy -o big/        # big/part-00000.npy ... + big/manifest.json
"""


def register(app: typer.Typer) -> None:
    app.command("embed", help=HELP)(embed)


@handles_errors
def embed(
    inputs: List[str] = typer.Argument(None, help="Input files; `-` or none reads stdin."),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help="Model: directory, cached name, sentence-transformers checkpoint, or hf:ORG/NAME. Default all-MiniLM-L6-v2."),
    field: str = typer.Option("text", "--field", help="JSONL field holding the text. A BEIR `title` is joined in front of `text`."),
    no_title: bool = typer.Option(False, "--no-title", help="Do not join a `title` field in front of `text`."),
    input_format: str = typer.Option("auto", "--input-format", help="auto (sniff), text or jsonl."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Named prompt from the model's manifest (e.g. query, document)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Literal text put in front of every input."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="Override pooling: mean, cls, max or last."),
    layer: Optional[int] = typer.Option(None, "--layer", min=1, max=1000, help="Use only the first N transformer layers (2D Matryoshka); the cut graph is converted once and cached."),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize", help="L2-normalize vectors (default: as the model was trained)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, max=10**6, help="Token limit per sequence (default: the model's, 256 for all-MiniLM-L6-v2)."),
    on_long: str = typer.Option("truncate", "--on-long", help="Longer texts: truncate (counted on stderr), error, or chunk."),
    overlap: int = typer.Option(0, "--overlap", min=0, max=10**6, help="Tokens shared by neighbouring chunks (--on-long chunk)."),
    aggregate: Optional[str] = typer.Option(None, "--aggregate", help="With chunking: `mean` gives one vector per text instead of one per chunk."),
    batch_tokens: int = typer.Option(2048, "--batch-tokens", min=1, max=10**8, help="Padded tokens per inference batch."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=256, help="onnxruntime threads (default: all cores)."),
    out_format: str = typer.Option("jsonl", "--format", help="jsonl (stdout) or npy (needs -o)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Output file, written atomically; default stdout. --format npy: X.npy gets its sidecar X.meta.jsonl, any other name is a directory of .npy parts plus manifest.json."),
    part_rows: Optional[int] = typer.Option(None, "--part-rows", min=1, max=10**12, help="--format npy -o DIR: rows per .npy part (default: parts of about 1 GiB)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed lines and report how many, instead of stopping."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar and no summary."),
    engine: str = typer.Option("local", "--engine", metavar="local|ray", help="ray: embed on a Ray cluster's actors (the `ray` extra; docs/SCALE.md)."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: the cluster to join (HOST:PORT); default: a local one for this run."),
    workers: int = typer.Option(2, "--workers", min=1, max=4096, help="--engine ray: actors, one model and one CPU each."),
) -> None:
    from vecpipe.core.models.batching import EmbedOptions
    from vecpipe.core.models.kinds import load_model
    from vecpipe.core.pipeline.embedding import EmbedJob
    from vecpipe.formats.text import ReadOptions
    from vecpipe.formats.vectors import writes_parts

    if out_format not in ("jsonl", "npy"):
        raise UsageError("--format must be jsonl or npy")
    if out_format == "npy" and not output:
        raise UsageError("--format npy needs -o FILE.npy or -o DIR")
    if part_rows is not None and (out_format != "npy" or not writes_parts(output)):
        raise UsageError("--part-rows sizes the parts of --format npy -o DIR (a name not ending in .npy)")
    if input_format not in ("auto", "text", "jsonl"):
        raise UsageError("--input-format must be auto, text or jsonl")
    if engine not in ("local", "ray"):
        raise UsageError("--engine must be local or ray")
    loaded = load_model(model, layers=layer, threads=threads, pooling=pooling, notify=say)
    options = EmbedOptions(
        prefix=loaded.prompt_prefix(prompt, prefix),
        normalize=normalize,
        max_tokens=max_tokens,
        on_long=on_long,
        overlap=overlap,
        aggregate=aggregate,
        batch_tokens=batch_tokens,
    )
    job = EmbedJob(
        model=loaded,
        inputs=inputs or [STDIN],
        options=options,
        reading=ReadOptions(field=field, join_title=not no_title, input_format=input_format, skip_bad=skip_bad),
        provenance=loaded.provenance(prompt, prefix, normalized=loaded.normalize if normalize is None else normalize),
        cluster=(workers, address) if engine == "ray" else None,
    )
    _run(job, VectorOutput(out_format, output, part_rows), quiet)
    if not quiet:
        _summary(job)
    if engine == "local":  # the output is closed (Ray registers exit handlers of its own: those runs exit the usual way)
        nothing_left_to_finish()


def _run(job: EmbedJob, output: VectorOutput, quiet: bool) -> None:
    """The job with a progress bar on a terminal, and Ctrl-C held while a batch is being written."""
    progress = make_progress(quiet)
    on_progress = None
    if progress:
        task = progress.add_task("embedding", total=None, rate="")
        on_progress = lambda stats: progress.update(task, completed=stats.texts, rate=_rate(stats))  # noqa: E731
    with progress or contextlib.nullcontext(), WholeRecordWrites() as interrupts:
        job.run(output.open, on_progress, interrupts.writing)


def _rate(stats) -> str:
    secs = max(stats.seconds, 1e-9)
    return f"{stats.texts / secs:.0f} texts/s, {stats.tokens / secs:.0f} tokens/s"


def _summary(job: EmbedJob) -> None:
    stats, read_stats = job.stats, job.read_stats
    parts = [f"{stats.texts} texts", f"{stats.tokens} tokens"]
    parts.append(f"{stats.chunks} chunks" if job.options.on_long == "chunk" else f"{stats.truncated} truncated")
    if read_stats.skipped:
        parts.append(f"{read_stats.skipped} bad lines skipped")
    parts.append(f"{stats.seconds:.2f} s")
    say(", ".join(parts))
