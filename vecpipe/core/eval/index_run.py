"""Evaluating an index that already exists: search it with query vector records, as `vecpipe search` would.

The queries are vector records (`vecpipe embed` output, also truncated or quantized as the
index's records were); in lexical and hybrid modes their text field is searched too, chosen as
the index's lexical part chooses a record's text. The run this gives is scored like any other,
and the index's own description (model and sha256, dims, dtype, quantization, BM25 settings)
goes into the result, so a result says how it was made.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from vecpipe.core.errors import DataError


@dataclass
class IndexRun:
    run: dict[str, dict[str, float]]
    seconds: float  # searching only
    queries: int
    mode: str
    index: dict  # index_info of the searched index
    notices: list[str]


def search_index(index_path, queries_path: str, request, batch_size: int = 256) -> IndexRun:
    """Search the index at `index_path` with every query record of `queries_path` (request: a retrieval.modes.ModeRequest whose
    mode may be None for the index's default)."""
    from vecpipe.core.index.api import info, open_index, text_of
    from vecpipe.core.retrieval.modes import default_mode, needs_graph, search
    from vecpipe.formats.vectors import read_vectors

    run: dict[str, dict[str, float]] = {}
    seconds, notices = 0.0, []
    with open_index(index_path, needs_graph(request.mode, request.exact)) as index:
        request.mode = request.mode or default_mode(index)
        settings = index.lexical_settings
        for batch in read_vectors(queries_path, None, batch_size):
            texts = None
            if request.mode != "dense" and settings is not None:
                texts = [text_of(fields, settings) for fields in batch.fields]
                if None in texts:
                    line = batch.lines[texts.index(None)] if batch.lines else None
                    raise DataError(f"query record has no text in {settings.field!r} to search in {request.mode} mode", batch.source, line)
            started = time.perf_counter()
            result = search(index, request, texts, batch.matrix, {**batch.provenance, "dtype": batch.dtype})
            seconds += time.perf_counter() - started
            notices.extend(n for n in result.notices if n not in notices)
            for qid, hits in zip(batch.ids, result.hits):
                run[str(qid)] = {str(hit.id): hit.score for hit in hits}
    return IndexRun(run, seconds, len(run), request.mode, info(index_path), notices)
