"""`vecpipe eval fuse`: fuse any retrievers' runs (TREC or vecpipe JSONL) into one TREC run."""
from __future__ import annotations

from typing import List, Optional

import typer

from vecpipe.cli.common import handles_errors

HELP = """Fuse runs from any retrievers into one run, written as TREC lines to stdout.

RRF (the default) sums 1 / (k + rank) over the runs a document is in; convex sums each run's
weight times its min-max normalized score (--weights, or --alpha for two runs). Each run is
ranked as trec_eval ranks it: by score, ties by document id descending.

Examples:

  vecpipe eval fuse bm25.trec dense.jsonl | vecpipe eval retrieval --qrels qrels/test.tsv

  vecpipe eval fuse a.trec b.trec c.trec --fusion convex --weights 0.5,0.3,0.2 > fused.trec
"""


def register(app: typer.Typer) -> None:
    app.command("fuse", help=HELP)(fuse)


@handles_errors
def fuse(
    runs: List[str] = typer.Argument(..., metavar="RUN...", help="Two or more run files (TREC or vecpipe search JSONL); `-` is stdin, once."),
    fusion: str = typer.Option("rrf", "--fusion", metavar="rrf|convex", help="Reciprocal-rank fusion, or a convex mix of min-max normalized scores."),
    rrf_k: float = typer.Option(60, "--rrf-k", help="RRF: the k in 1 / (k + rank)."),
    weights: Optional[str] = typer.Option(None, "--weights", metavar="W,W,...", help="Convex: one non-negative weight per run (default: equal)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Convex, two runs: the first run's weight (the second gets 1 - alpha)."),
    top_k: int = typer.Option(1000, "--top-k", metavar="N", min=1, max=10**7, help="Documents kept per query."),
    run_name: str = typer.Option("fused", "--run-name", help="The tag column of the TREC lines."),
) -> None:
    import sys

    from vecpipe.cli.eval.retrieval import load_run
    from vecpipe.core.errors import UsageError
    from vecpipe.core.retrieval.fusion import alpha_weights, check, fuse_runs
    from vecpipe.formats.trec import write_run

    check(fusion, rrf_k, 0.5 if alpha is None else alpha)
    if len(runs) < 2:
        raise UsageError("give at least two runs to fuse")
    if runs.count("-") > 1:
        raise UsageError("stdin (-) can be read once")
    names = [f"{n}:{path}" for n, path in enumerate(runs)]
    chosen = _weights(fusion, weights, alpha, names)
    loaded = {name: load_run(path)[0].run for name, path in zip(names, runs)}
    fused = fuse_runs(loaded, fusion, rrf_k=rrf_k, weights=chosen or (alpha_weights(names, alpha) if alpha is not None else None), depth=top_k)
    write_run(fused, sys.stdout, run_name)
    sys.stdout.flush()


def _weights(fusion: str, weights: Optional[str], alpha: Optional[float], names: list[str]) -> dict | None:
    from vecpipe.core.errors import UsageError

    if fusion == "rrf" and (weights or alpha is not None):
        raise UsageError("--weights and --alpha apply to --fusion convex")
    if alpha is not None and (weights or len(names) != 2):
        raise UsageError("--alpha weighs exactly two runs; for more use --weights")
    if weights is None:
        return None
    try:
        values = [float(w) for w in weights.split(",")]
    except ValueError:
        raise UsageError(f"--weights wants comma-separated numbers, not {weights!r}") from None
    if len(values) != len(names) or min(values) < 0 or sum(values) <= 0:
        raise UsageError(f"--weights wants {len(names)} non-negative numbers, not all 0, one per run")
    return dict(zip(names, values))
