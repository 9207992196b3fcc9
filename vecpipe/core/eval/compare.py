"""Reading many MTEB-shaped result files back into one table: `vecpipe eval compare`.

A result file is MTEB's shape (vecpipe's and mteb's own): `task_name` and `scores`, a split
name mapping to a list of entries with `main_score` and the metrics. From vecpipe's files the
settings that produced each one are read out of its `vecpipe` provenance object and flattened
(`model`, `dim`, `dtype`, `mode`, `fusion`, ...), so the table shows what differs between runs.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from vecpipe.core.errors import DataError

# Provenance settings worth a column, in this order; the rest stay in the JSON rows.
SETTING_ORDER = ("model", "variant", "mode", "fusion", "alpha", "rrf_k", "dim", "dtype", "rescore", "search", "kind",
                 "index_params", "top_k", "score_precision", "ignore_identical_ids")
X_AXES = {"bytes": ("bytes_per_vector", "bytes per vector"), "qps": ("qps", "queries per second")}


@dataclass
class Result:
    path: str
    task: str
    split: str
    metrics: dict[str, float]
    settings: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)  # bytes_per_vector, qps when the file records them


def read_result(path: str, split: str | None = None) -> Result:
    """One MTEB-shaped result file; DataError (exit 3) naming the file for anything else."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(exc.strerror or "cannot read", path) from None
    except (ValueError, UnicodeDecodeError):
        raise DataError("not a result file: not valid JSON", path) from None
    scores = document.get("scores") if isinstance(document, dict) else None
    if not isinstance(scores, dict) or not scores or not isinstance(document.get("task_name"), str):
        raise DataError("not an MTEB-shaped result (it needs task_name and scores)", path)
    chosen = split or ("test" if "test" in scores else sorted(scores)[0])
    entries = scores.get(chosen)
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise DataError(f"no scores for split {chosen!r} (it has {', '.join(sorted(scores))})", path)
    entry = next((e for e in entries if e.get("hf_subset") == "default"), entries[0])
    metrics = {k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    provenance = document.get("vecpipe") if isinstance(document.get("vecpipe"), dict) else {}
    return Result(path, document["task_name"], chosen, metrics, _settings(provenance, document), dict(provenance.get("search") or {}))


def _settings(provenance: dict, document: dict) -> dict:
    settings = {}
    index = provenance.get("index") or {}
    model = provenance.get("model") or {}
    settings["model"] = model.get("name") or index.get("model")
    settings["model_sha256"] = model.get("sha256") or index.get("model_sha256")
    for key in ("dim", "dtype", "kind"):
        if index.get(key) is not None:
            settings[key] = index[key]
    for key, value in (provenance.get("parameters") or {}).items():
        settings[key] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
    settings["version"] = provenance.get("version") or (f"mteb {document['mteb_version']}" if "mteb_version" in document else None)
    return {k: v for k, v in settings.items() if v is not None}


@dataclass
class Comparison:
    results: list[Result]
    metrics: list[str]
    setting_columns: list[str]  # the settings that differ between the files
    baseline: Result | None = None

    def rows(self) -> list[dict]:
        """One dict per file: file, task, split, every setting, the chosen metrics, and ratios to the baseline."""
        rows = []
        for result in self.results:
            row = {"file": result.path, "task": result.task, "split": result.split, **result.settings}
            for metric in self.metrics:
                value = result.metrics.get(metric)
                row[metric] = value
                if self.baseline is not None:
                    base = self.baseline.metrics.get(metric)
                    row[f"{metric}_vs_baseline"] = value / base if value is not None and base else None
            rows.append(row)
        return rows


def compare(paths: list[str], metrics: list[str], *, sort: str | None = None, baseline: str | None = None,
            allow_mixed: bool = False, split: str | None = None) -> Comparison:
    results = [read_result(path, split) for path in paths]
    base = None
    if baseline is not None:
        base = next((r for r in results if r.path == baseline), None) or read_result(baseline, split)
        if base not in results:
            results.insert(0, base)
    datasets = {(r.task, r.split) for r in results}
    if len(datasets) > 1 and not allow_mixed:
        names = ", ".join(f"{task} ({sp})" for task, sp in sorted(datasets))
        raise DataError(f"results from different datasets or splits ({names}) do not compare; pass --allow-mixed to see them together")
    for metric in metrics:
        if not any(metric in r.metrics for r in results):
            known = sorted({m for r in results for m in r.metrics})
            raise DataError(f"no file has the metric {metric!r} (they have: {', '.join(known[:12])}{', ...' if len(known) > 12 else ''})")
    if sort is not None:
        if sort not in metrics:
            raise DataError(f"--sort {sort!r} is not among the metrics shown ({', '.join(metrics)})")
        results.sort(key=lambda r: -r.metrics[sort] if sort in r.metrics and math.isfinite(r.metrics[sort]) else math.inf)
    return Comparison(results, metrics, _differing(results), base)


def _differing(results: list[Result]) -> list[str]:
    keys = [k for k in SETTING_ORDER if any(k in r.settings for r in results)]
    return [k for k in keys if len({json.dumps(r.settings.get(k), sort_keys=True) for r in results}) > 1]


def short_names(paths: list[str]) -> list[str]:
    """The part of each path that tells it from the others, cut at whole names: `results/a-384/scifact.json`
    and `results/b-128/scifact.json` -> `a-384` and `b-128` (the whole paths when that is not unique)."""
    if len(paths) < 2:
        return list(paths)
    start = os.path.commonprefix(paths).rfind("/") + 1  # drop the shared directories
    rests = [p[start:] for p in paths]
    shared_tail = len(os.path.commonprefix([r[::-1] for r in rests]))
    names = [_to_boundary(rest, len(rest) - shared_tail) for rest in rests]
    return names if all(names) and len(set(names)) == len(names) else list(paths)


def _to_boundary(rest: str, end: int) -> str:
    """`rest` up to `end`, extended to the next '/' or '.' so that no name is cut in the middle."""
    stops = [i for i in (rest.find("/", end), rest.find(".", end)) if i >= 0]
    return rest[: min(stops)] if stops else rest


def plot_points(comparison: Comparison, x: str) -> list[tuple[str, float, float, str]]:
    """(label, x, main metric, series) for the files that record the x axis (bytes per vector or QPS);
    the series is the search mode, so dense and hybrid runs are told apart at a glance."""
    key, _ = X_AXES[x]
    metric = comparison.metrics[0]
    points = []
    for result, name in zip(comparison.results, short_names([r.path for r in comparison.results])):
        value = result.search.get(key)
        if isinstance(value, (int, float)) and value and metric in result.metrics:
            points.append((name, float(value), result.metrics[metric], str(result.settings.get("mode", ""))))
    return points
