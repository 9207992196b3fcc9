"""`vecpipe eval compare`: many MTEB-shaped result files (vecpipe's and mteb's own) as one table."""
from __future__ import annotations

from typing import List, Optional

import typer

from vecpipe.cli.common import handles_errors, say

HELP = """Compare result files: one row per file, its settings (read from each file's provenance;
only those that differ between the files are columns) and the chosen metrics.

A table on a terminal, JSONL (one object per file, every setting included) when piped.

Examples:

  vecpipe eval compare results/*.json --metric ndcg_at_10,recall_at_100 --sort ndcg_at_10

  vecpipe eval compare results/*.json --baseline results/minilm-384-float32-dense.json --plot quality.png
"""


def register(app: typer.Typer) -> None:
    app.command("compare", help=HELP)(compare)


def _cell(value, metric: bool) -> str:
    if isinstance(value, float):
        return f"{value:.5f}" if metric else f"{value:g}"
    return "" if value is None else str(value)


@handles_errors
def compare(
    results: List[str] = typer.Argument(..., metavar="RESULT.json...", help="MTEB-shaped result files (eval retrieval/sts/classification -o, or mteb's)."),
    metric: str = typer.Option("main_score", "--metric", metavar="M,M,...", help="Metrics to show, comma-separated (e.g. ndcg_at_10,recall_at_100)."),
    sort: Optional[str] = typer.Option(None, "--sort", metavar="METRIC", help="Order rows by this metric, best first."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="FILE", help="Add each metric relative to this result (value / baseline)."),
    split: Optional[str] = typer.Option(None, "--split", metavar="NAME", help="The split to read (default: test, else the file's only one)."),
    allow_mixed: bool = typer.Option(False, "--allow-mixed", help="Put results of different datasets or splits in one table."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="PNG", help="Draw the first metric against bytes per vector (or --x qps), one labelled point per file (needs vecpipe[plot])."),
    x: str = typer.Option("bytes", "--x", metavar="bytes|qps", help="The plot's x axis: bytes per stored vector, or search queries per second."),
    as_json: bool = typer.Option(False, "--json", help="JSONL even on a terminal."),
) -> None:
    from vecpipe.cli.common import binary_stdout, print_table, stdout_is_terminal
    from vecpipe.core.errors import UsageError
    from vecpipe.core.eval.compare import X_AXES, compare as compare_results, plot_points

    metrics = [m.strip() for m in metric.split(",") if m.strip()]
    if not metrics:
        raise UsageError("--metric names at least one metric")
    if x not in X_AXES:
        raise UsageError(f"--x must be one of {', '.join(X_AXES)}, not {x!r}")
    if plot:
        from vecpipe.core.eval.plots import pyplot

        pyplot()
    comparison = compare_results(results, metrics, sort=sort, baseline=baseline, allow_mixed=allow_mixed, split=split)
    rows = comparison.rows()
    if as_json or not stdout_is_terminal():
        import orjson

        binary_stdout().write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    else:
        from vecpipe.core.eval.compare import short_names

        relative = [f"{m}_vs_baseline" for m in metrics] if comparison.baseline else []
        numbers = set(metrics) | set(relative)
        columns = [*comparison.setting_columns, *metrics, *relative]
        names = short_names([row["file"] for row in rows])
        first = comparison.results[0]
        print_table(f"{first.task} ({first.split}): {len(rows)} results", ["result", *[c.replace("_vs_baseline", " / base") for c in columns]],
                    [[name, *[_cell(row.get(c), c in numbers) for c in columns]] for name, row in zip(names, rows)])
    if plot:
        from vecpipe.core.eval.plots import plot_compare

        points = plot_points(comparison, x)
        if len(points) < len(rows):
            say(f"{len(rows) - len(points)} results record no {X_AXES[x][1]}; they are not in the plot")
        plot_compare(points, plot, f"{comparison.results[0].task}: {metrics[0]} against {X_AXES[x][1]}", X_AXES[x][1], metrics[0])
