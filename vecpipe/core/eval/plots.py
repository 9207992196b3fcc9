"""PNG plots for `eval ann --plot` and `eval sweep --plot` (matplotlib: the `vecpipe[plot]` extra)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from vecpipe.core.atomic import atomic_file
from vecpipe.core.errors import UsageError

DTYPE_MARKERS = {"float32": "o", "int8": "s", "binary": "^"}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend; a one-line UsageError when it is not installed.

    Called before any work starts, so a missing extra is reported at once, not after an hour of embedding.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed, and no GUI toolkit is imported
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'vecpipe[plot]'") from None
    return plt


def _save(fig, path: str | Path) -> None:
    plt = pyplot()
    with atomic_file(path) as fh:
        fig.savefig(fh, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)


def plot_ann(report, path: str | Path, title: str) -> None:
    """Recall@k (x) against QPS (y, log scale), the Pareto frontier joined by a line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    points = sorted(report.points, key=lambda p: p.recall)
    ax.scatter([p.recall for p in points], [p.qps for p in points], color="tab:blue", zorder=3)
    frontier = [p for p in points if p.pareto]
    ax.plot([p.recall for p in frontier], [p.qps for p in frontier], color="tab:blue", label="Pareto frontier")
    for p in points:
        label = "codes" if p.value is None else f"{p.parameter}={p.value}"
        ax.annotate(label, (p.recall, p.qps), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(report.exact_qps, color="gray", linestyle="--", label="exact search")
    ax.set(xlabel=f"recall@{report.k}", ylabel="queries per second", yscale="log", title=title)
    ax.legend(loc="best")
    _save(fig, path)


def plot_sweep(rows: list[dict], path: str | Path, title: str, metric_label: str) -> None:
    """Main score (y) against bytes per vector (x, log scale): one series per dtype and rescoring."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    series = defaultdict(list)
    for row in rows:
        name = row["dtype"] if row["rescore"] is None else f"{row['dtype']} + rescore {row['rescore']}"
        series[(name, row["dtype"])].append(row)
    for (name, dtype), members in series.items():
        members.sort(key=lambda r: r["bytes_per_vector"])
        xs, ys = [r["bytes_per_vector"] for r in members], [r["main_score"] for r in members]
        rescored = members[0]["rescore"] is not None
        ax.plot(xs, ys, marker=DTYPE_MARKERS.get(dtype, "o"), linestyle="--" if rescored else "-", label=name)
        for row in members:
            ax.annotate(str(row["dim"]), (row["bytes_per_vector"], row["main_score"]),
                        textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set(xlabel="bytes per vector", ylabel=metric_label, xscale="log", title=title)
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def plot_compare(points: list[tuple[str, float, float, str]], path: str | Path, title: str, x_label: str, y_label: str) -> None:
    """One labelled point per result file, coloured by series: quality (y) against storage or speed (x, log scale)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    series = defaultdict(list)
    for point in points:
        series[point[3]].append(point)
    for name, members in series.items():
        ax.scatter([p[1] for p in members], [p[2] for p in members], zorder=3, label=name or None)
    for n, (label, x, y, _) in enumerate(sorted(points, key=lambda p: (p[1], p[2]))):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4 if n % 2 else -9), fontsize=6)
    ax.set(xlabel=x_label, ylabel=y_label, xscale="log", title=title)
    ax.grid(True, alpha=0.3)
    if any(series):
        ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
