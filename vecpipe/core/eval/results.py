"""MTEB-shaped result files and the provenance that makes each one reproducible.

A result carries MTEB's fields (task_name, main_score, scores per split) plus a `vecpipe`
object: the version, the command, the model and its sha256, every input with its sha256,
and every setting that produced it.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

from vecpipe import __version__
from vecpipe.core.atomic import write_bytes_atomic
from vecpipe.core.errors import UsageError


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


def read_with_hash(stream: IO[bytes], source: str, reader: Callable):
    """Parse `stream` with `reader(lines, source)`; returns (data, input record with the sha256 of what was read)."""
    lines = HashingLines(stream)
    data = reader(lines, source)
    return data, {"path": source, "format": data.format, "sha256": lines.hexdigest()}


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


def write_result_file(result: dict, output_dir: str, suffix: str = "") -> Path:
    """`output_dir/<task_name><suffix>.json`, written atomically, indented like MTEB's files."""
    import orjson

    name = result["task_name"]
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"task name {name!r} cannot be a file name; pass --task-name")
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise UsageError(f"--output {output_dir} is not a directory; results are written as DIR/<task_name>.json")
    target = Path(output_dir) / f"{name}{suffix}.json"
    write_bytes_atomic(target, orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return target


def model_record(embedder) -> dict:
    """The model and how texts were embedded, for the result's provenance."""
    model = embedder.model
    return {"name": model.name, "sha256": model.sha256, "dim": model.dim, "max_tokens": model.max_tokens,
            "normalize": model.normalize, "query_prompt": model.query_prompt(), "document_prompt": embedder.document_prompt()}


def retrieval_provenance(provenance: dict, evaluation, complete: bool) -> dict:
    """A scored run's provenance, completed with the scoring settings and what happened to each query."""
    from vecpipe.core.eval.metrics import MAIN_RETRIEVAL_METRIC

    return {
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


def sweep_row(outcome, baseline: float, full_dim: int, is_baseline: bool) -> dict:
    """One configuration of a sweep: its settings, scores, relative quality, size and speed."""
    row = outcome.config.describe(full_dim)
    row.update(
        main_score=outcome.main_score,
        relative=outcome.main_score / baseline if baseline else None,
        bytes_per_vector=outcome.bytes_per_vector,
        qps=outcome.qps(),
        search_seconds=outcome.search.seconds,
        baseline=is_baseline,
        scores=outcome.evaluation.averages,
    )
    return row
