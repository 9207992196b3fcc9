"""`vecpipe index build --shards N --engine ray`: each shard's graph built by a Ray task.

The driver reads and checks the input and routes each record to its id's shard with shards.py's
router, spilling every shard's rows to the staging directory as an .npy with its sidecar, plus
each row's input file and line (so that a refusal inside a task names the input, as a local build
does). One Ray task per shard then builds that shard from its spill, with one CPU and one hnswlib
thread. A task that dies is retried and starts its shard over; the index is published, all shards
at once, only when every task succeeded.

The staging directory sits beside the output: on a cluster, the output must be on storage that
every node mounts at the same path.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from vecpipe.core.cluster import start_ray
from vecpipe.core.errors import VecpipeError
from vecpipe.core.index.shards import build_staged, fan_out
from vecpipe.core.index.types import BuildOptions, WriteOptions, WriteReport
from vecpipe.core.index.vector_index import build_index

RETRIES = 3


@dataclass
class Spill:
    """One shard's rows on disk, and where each came from."""

    directory: Path
    sources: list[str]  # input names; origin.npz's `source` column indexes this list
    empty: object = None  # the shard's first (empty) batch when no row reached it: its dim and provenance

    @property
    def vectors(self) -> Path:
        return self.directory / "vectors.npy"


def build_sharded_on_ray(path, batches: Iterable, shards: int, options: BuildOptions | None = None,
                         write: WriteOptions | None = None, *, workers: int = 2, address: str | None = None) -> WriteReport:
    """build_sharded's result, each shard built by a Ray task. Run it inside cluster.ray_output_aside()."""
    options = options or BuildOptions()
    one_thread = replace(write or WriteOptions(), threads=1)  # each task holds one CPU

    def build_shards(staged: Path) -> list[WriteReport]:
        spills = fan_out(batches, shards, lambda i, stream: _spill(staged / f"spill{i:03d}", stream))
        ray = start_ray(address, workers)
        task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(_build_shard)
        reports = _gathered(ray, [task.remote(spill, str(staged / f"s{i:03d}"), options, one_thread) for i, spill in enumerate(spills)])
        for spill in spills:
            shutil.rmtree(spill.directory)
        return reports

    return build_staged(path, shards, options, build_shards)


def _spill(directory: Path, stream: Iterator) -> Spill:
    from vecpipe.formats.vectors import VectorWriter

    directory.mkdir()
    sources: list[str] = []
    lines, origins = [], []
    first = None
    with VectorWriter(None, "npy", npy_path=str(directory / "vectors.npy")) as writer:
        for batch in stream:
            if first is None:  # its dim and provenance, should no row reach this shard
                first = batch
            if not len(batch):
                continue
            if batch.source not in sources:
                sources.append(batch.source)
            writer.write(batch)
            lines.append(np.asarray(batch.lines, dtype=np.int64))
            origins.append(np.full(len(batch), sources.index(batch.source), dtype=np.int32))
    if not lines:
        return Spill(directory, sources, empty=first)
    np.savez(directory / "origin.npz", line=np.concatenate(lines), source=np.concatenate(origins))
    return Spill(directory, sources)


def _build_shard(spill: Spill, shard_dir: str, options: BuildOptions, write: WriteOptions) -> WriteReport:
    """Runs on a Ray worker. Starts over when Ray retries it after a crash."""
    shutil.rmtree(shard_dir, ignore_errors=True)
    if spill.empty is not None:
        return build_index(Path(shard_dir), [spill.empty], options, write)
    return build_index(Path(shard_dir), _spilled_batches(spill), options, write)


def _spilled_batches(spill: Spill) -> Iterator:
    """The spill's rows as batches that name their input file and line, one source per batch."""
    from vecpipe.formats.vectors import read_vectors

    with np.load(spill.directory / "origin.npz", allow_pickle=False) as origin:
        lines, sources = origin["line"], origin["source"]
    start = 0
    for batch in read_vectors(str(spill.vectors), note=lambda _: None):
        batch_lines, batch_sources = lines[start : start + len(batch)], sources[start : start + len(batch)]
        start += len(batch)
        cuts = np.flatnonzero(np.diff(batch_sources)) + 1  # where the input file changes
        for part in np.split(np.arange(len(batch)), cuts):
            yield replace(batch.take(part), lines=batch_lines[part].tolist(), source=spill.sources[batch_sources[part[0]]])


def _gathered(ray, refs: list) -> list[WriteReport]:
    """Every task's report; a refusal inside a task is raised as itself, not as Ray's wrapper."""
    try:
        return ray.get(refs)
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, VecpipeError):
            raise cause from None
        raise
