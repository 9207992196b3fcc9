"""`vecpipe embed --engine ray`: the same embedding on a Ray cluster (the optional `ray` extra).

Ray Data's standard pattern for batch inference: a dataset of the texts, `map_batches` over a pool
of stateful actors, each of which loads the model once (one onnxruntime thread per actor, one
actor per CPU asked for) and embeds its batches with the same token-budget, length-sorted batching
as a local run (batching.embed_records). `preserve_order` keeps the output in input order, so the
records, ids and provenance are a local run's; only batch boundaries differ, which moves vectors
by float rounding. An actor that dies is restarted and its batch retried by Ray, so every record
still comes out exactly once.

The cluster is core/cluster.py's (joined with --address, or started for the run). Every node
must see the model directory at the same path (a shared cache, or the same $VECPIPE_HOME made by
`vecpipe models path NAME` on each node). Nothing here is imported unless --engine ray is given.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import orjson

from vecpipe.core.cluster import start_ray
from vecpipe.core.errors import DataError, IndexStoreError, ModelError, StorageError, UsageError, VecpipeError
from vecpipe.core.models.batching import WINDOW_RECORDS, EmbeddedWindow, EmbedOptions, EmbedStats, Piece, check_options
from vecpipe.formats.text import TextRecord

RETRIES = 3
# Texts per Ray Data run. Each run starts its actor pool afresh (measured: ~2.3 s per extra segment
# on 2 workers, 1-2% of a segment of short texts), and the driver holds one segment's texts at a time. Tests set the environment variable to a small number.
SEGMENT_RECORDS = 100_000
SEGMENT_ENV = "VECPIPE_RAY_SEGMENT_RECORDS"
# Tests set this to a file path: the first actor call that finds the file deletes it and dies,
# as a killed worker would (Ray must restart the actor and retry its batch).
CRASH_ONCE_ENV = "VECPIPE_RAY_CRASH_ONCE"


def _embedder(model, options: EmbedOptions, source: str) -> type:
    """The actor class, its settings bound in (constructor arguments would go through Ray's object
    store, which it warns cannot survive an actor restart). Plain values only: the class travels
    to every actor, and the driver's loaded model must not go with it."""
    settings = (str(model.dir), model.pooling, model.dim, options, source)

    class Embedder(_Embedder):
        def __init__(self):
            super().__init__(*settings)

    return Embedder


class _Embedder:
    """One Ray actor: the model loaded once, then batches of texts embedded as a local run does.

    Each text keeps its input line, so a refusal here (a text over --max-tokens under --on-long
    error) names the file and line a local run would. Refusals travel back as data, in an `error`
    column, because Ray re-raises an actor's exception wrapped, with its cause lost; the model is
    opened at the first batch for the same reason (a node without the model says so, exit 4).
    Output rows are records, or chunks under --on-long chunk: each row names its record's position
    in the input and, for a chunk, its number and spans (-1: none). The batch's token, truncation
    and chunk counts ride in the first row of three count columns."""

    def __init__(self, model_dir: str, pooling: str, dim: int, options: EmbedOptions, source: str):
        self.model_dir, self.pooling, self.dim, self.options, self.source = model_dir, pooling, dim, options, source
        self.model = None

    def __call__(self, batch: dict) -> dict:
        marker = os.environ.get(CRASH_ONCE_ENV)
        if marker and os.path.exists(marker):
            os.remove(marker)
            os._exit(1)
        try:
            return self._embed(batch)
        except VecpipeError as exc:
            refusal = orjson.dumps({"kind": type(exc).__name__, "message": exc.message, "source": exc.source, "line": exc.line}).decode()
            return {**_columns(np.zeros((1, self.dim), np.float32), [int(batch["position"][0])], [None], EmbedStats()),
                    "error": np.array([refusal], dtype=object)}

    def _embed(self, batch: dict) -> dict:
        from vecpipe.core.models.batching import embed_records
        from vecpipe.core.models.kinds import open_model

        if self.model is None:
            self.model = open_model(Path(self.model_dir), threads=1, pooling=self.pooling)
        records = [TextRecord(i, str(text), {}, int(line)) for i, (text, line) in enumerate(zip(batch["text"], batch["line"]))]
        stats, positions, pieces, vectors = EmbedStats(), [], [], []
        for window in embed_records(self.model, records, self.options, self.source, stats):
            rows = window.pieces or [None] * len(window.records)
            positions += [int(batch["position"][window.records[p.record if p else n].id]) for n, p in enumerate(rows)]
            pieces += rows
            vectors.append(window.vectors)
        return {**_columns(np.concatenate(vectors), positions, pieces, stats), "error": np.full(len(positions), "", dtype=object)}


def _columns(vectors: np.ndarray, positions: list[int], pieces: list, stats: EmbedStats) -> dict:
    def counted(value: int) -> np.ndarray:
        column = np.zeros(len(positions), np.int64)
        column[0] = value
        return column

    def span(which: str, end: int) -> np.ndarray:
        return np.array([getattr(p, which)[end] if p and getattr(p, which) else -1 for p in pieces], np.int64)

    return {"embedding": vectors, "position": np.array(positions, np.int64),
            "chunk": np.array([p.chunk if p and p.chunk is not None else -1 for p in pieces], np.int64),
            "token_start": span("token_span", 0), "token_end": span("token_span", 1),
            "char_start": span("char_span", 0), "char_end": span("char_span", 1),
            "tokens": counted(stats.tokens), "truncated": counted(stats.truncated), "chunks": counted(stats.chunks)}


def _window(records: list[TextRecord], batch: dict) -> EmbeddedWindow:
    """The window a local run would have yielded for this output batch."""
    first, last = int(batch["position"][0]), int(batch["position"][-1])
    if (batch["chunk"] < 0).all():
        return EmbeddedWindow(records[first : last + 1], batch["embedding"], None)
    pieces = [Piece(int(position) - first, [], int(chunk), (int(ts), int(te)), None if cs < 0 else (int(cs), int(ce)))
              for position, chunk, ts, te, cs, ce in zip(*(batch[c] for c in ("position", "chunk", "token_start", "token_end", "char_start", "char_end")))]
    return EmbeddedWindow(records[first : last + 1], batch["embedding"], pieces)


def _refusal(error: str) -> VecpipeError:
    """The VecpipeError an actor sent back in its `error` column."""
    fields = orjson.loads(error)
    kinds = {kind.__name__: kind for kind in (UsageError, DataError, ModelError, IndexStoreError, StorageError)}
    return kinds.get(fields["kind"], VecpipeError)(fields["message"], fields["source"], fields["line"])


def embed_records_on_ray(model, records: Iterable[TextRecord], options: EmbedOptions, source: str, stats: EmbedStats,
                         workers: int, address: str | None = None) -> Iterator[EmbeddedWindow]:
    """embed_records' windows, computed by `workers` Ray actors. Run it inside ray_output_aside()
    when stdout carries data.

    The input is read in segments of segment_records() texts, each embedded by one Ray Data run,
    so the driver holds one segment, not the whole input. The first segment is read (and checked,
    line by line) before any cluster starts."""
    check_options(model, options)
    segments = _segments(records, segment_records())
    first = next(segments, None)
    if first is None:
        return
    ray = start_ray(address, workers)
    for segment in itertools.chain([first], segments):
        yield from _embed_segment(ray, segment, _embedder(model, options, source), source, stats, workers)


def segment_records() -> int:
    return int(os.environ.get(SEGMENT_ENV) or SEGMENT_RECORDS)


def _segments(records: Iterable[TextRecord], size: int) -> Iterator[list[TextRecord]]:
    iterator = iter(records)
    while segment := list(itertools.islice(iterator, size)):
        yield segment


def _embed_segment(ray, records: list[TextRecord], embedder: type, source: str, stats: EmbedStats, workers: int) -> Iterator[EmbeddedWindow]:
    blocks = max(1, min(len(records) // 256, workers * 8))
    dataset = ray.data.from_items([{"text": r.text, "line": r.line, "position": n} for n, r in enumerate(records)], override_num_blocks=blocks)
    embedded = dataset.map_batches(
        embedder,
        batch_size=min(WINDOW_RECORDS, 512),
        compute=ray.data.ActorPoolStrategy(size=min(workers, blocks)),  # no actor without a block to embed
        num_cpus=1,
        max_restarts=RETRIES,
        max_task_retries=RETRIES,
    )
    done = 0
    batches = embedded.iter_batches(batch_size=None, batch_format="numpy")
    try:
        for batch in batches:
            if batch["error"][0]:
                raise _refusal(batch["error"][0])
            window = _window(records, batch)
            if int(batch["position"][0]) != done:  # preserve_order: each batch starts where the last ended
                raise VecpipeError(f"the Ray run returned record {int(batch['position'][0])} where {done} was due", source)
            done += len(window.records)
            stats.texts += len(window.records)
            stats.tokens += int(batch["tokens"].sum())
            stats.truncated += int(batch["truncated"].sum())
            stats.chunks += int(batch["chunks"].sum())
            yield window
    finally:
        # Stops Ray Data's executor threads now: after ray.shutdown() they would make Ray's C++ core
        # end the process (exit 1), as when a reader leaves early (| head).
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    if done != len(records):
        raise VecpipeError(f"the Ray run returned {done} of {len(records)} records", source)
