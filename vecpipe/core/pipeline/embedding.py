"""Texts to vector batches: the one place where text records become VectorBatches (`vecpipe
embed`, `index sync` and eval all go through `vector_batches`), and the `embed` run itself.

The caller brings what belongs to a terminal: a progress callback, and a guard around each
batch's write that holds a signal until the batch is out (so no reader sees half a record)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, Iterator

from vecpipe.formats.inputs import input_name, open_input

if TYPE_CHECKING:  # imported when a job runs, not at start-up
    from vecpipe.core.models.batching import EmbedOptions, EmbedStats
    from vecpipe.core.models.model import Model
    from vecpipe.formats.text import ReadOptions, ReadStats, TextRecord
    from vecpipe.core.vector_batch import VectorBatch


def vector_batches(model: "Model", records: Iterable["TextRecord"], options: "EmbedOptions", provenance: dict, source: str,
                   stats: "EmbedStats | None" = None, cluster: tuple[int, str | None] | None = None) -> Iterator["VectorBatch"]:
    """The records embedded window by window, in input order, as VectorBatches of one provenance
    (chunks get ids `<parent id>#<chunk>`); on a Ray cluster's actors when `cluster` is (workers, address)."""
    from vecpipe.core.models.batching import output_rows
    from vecpipe.core.vector_batch import VectorBatch

    if cluster is None:
        from vecpipe.core.models.batching import embed_records

        windows = embed_records(model, records, options, source, stats)
    else:
        from vecpipe.core.models.ray_engine import embed_records_on_ray

        windows = embed_records_on_ray(model, records, options, source, stats, *cluster)
    with contextlib.closing(windows):  # closed as soon as the consumer stops: before Ray shuts down
        for window in windows:
            ids, fields, lines = output_rows(window)
            yield VectorBatch(ids, fields, window.vectors, provenance, lines, source)


@dataclass
class EmbedJob:
    """One `vecpipe embed` run: what to read, how to embed it, and where the vectors go."""

    model: "Model"
    inputs: list[str]
    options: "EmbedOptions"
    reading: "ReadOptions"
    provenance: dict
    cluster: tuple[int, str | None] | None = None  # (workers, address) for --engine ray
    stats: "EmbedStats | None" = None  # counted as the run goes
    read_stats: "ReadStats | None" = None

    def run(self, open_output: Callable[[], ContextManager], on_progress: Callable[["EmbedStats"], None] | None = None,
            write_guard: Callable[[], ContextManager] = contextlib.nullcontext) -> None:
        """Embed every input into the writer `open_output()` gives (committed only if the run
        succeeds); each batch is written inside `write_guard()`, then `on_progress(stats)`."""
        from vecpipe.core.models.batching import EmbedStats
        from vecpipe.formats.text import ReadStats, read_texts

        self.stats, self.read_stats = EmbedStats(), ReadStats()
        with self._streams_kept_from_ray(), open_output() as writer:
            for path in self.inputs:
                with open_input(path) as stream:
                    source = input_name(path)
                    records = read_texts(stream, source, **vars(self.reading), stats=self.read_stats)
                    with contextlib.closing(vector_batches(self.model, records, self.options, self.provenance, source,
                                                           self.stats, self.cluster)) as batches:
                        for batch in batches:
                            with write_guard():
                                writer.write(batch)
                            if on_progress:
                                on_progress(self.stats)

    def _streams_kept_from_ray(self) -> ContextManager:
        if self.cluster is None:
            return contextlib.nullcontext()
        from vecpipe.core.cluster import ray_output_aside

        return ray_output_aside()
