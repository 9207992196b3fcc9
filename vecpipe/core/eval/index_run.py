"""Evaluating an index that already exists: search it with the queries, as `vecpipe search` would.

The queries are text (BEIR queries.jsonl), embedded with the index's own model and query prompt by
the same QueryEncoder `vecpipe search` uses, or vector records (`vecpipe embed` output, also
truncated or quantized as the index's records were); in lexical and hybrid modes a vector
record's text field is searched too, chosen as the index's lexical part chooses a record's text. The run this gives is scored like any other,
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


def search_index(index_path, queries_path: str, request, batch_size: int = 256, model: str | None = None, notify=None) -> IndexRun:
    """Search the index at `index_path` with every query of `queries_path`: vector records, or text
    embedded as the index's vectors were (its model and query prompt, as `vecpipe search` does).
    `model` says where to find the index's model when not under its name. `request` is a
    retrieval.modes.ModeRequest whose mode may be None for the index's default."""
    from vecpipe.core.index.api import info, open_index
    from vecpipe.core.pipeline.queries import QueryEncoder, query_batches
    from vecpipe.core.retrieval.modes import default_mode, needs_graph, search

    run: dict[str, dict[str, float]] = {}
    seconds, notices = 0.0, []
    with open_index(index_path, needs_graph(request.mode, request.exact)) as index:
        request.mode = request.mode or default_mode(index)
        encoder = QueryEncoder(index.provenance, model, notify=notify)
        for batch in query_batches(None, queries_path, "text", batch_size, encoder, request.mode != "lexical", note=notify):
            texts = batch.texts if batch.records is None else _texts_of(batch.records, index.lexical_settings, request.mode)
            started = time.perf_counter()
            result = search(index, request, texts, batch.matrix, batch.provenance)
            seconds += time.perf_counter() - started
            notices.extend(n for n in result.notices if n not in notices)
            for qid, hits in zip(batch.ids, result.hits):
                run[str(qid)] = {str(hit.id): hit.score for hit in hits}
    return IndexRun(run, seconds, len(run), request.mode, info(index_path), notices)


def _texts_of(records, settings, mode: str) -> list[str] | None:
    """The text of vector query records, read as the index's lexical part reads a record's (None in dense mode)."""
    from vecpipe.core.index.api import text_of

    if mode == "dense" or settings is None:
        return None
    texts = [text_of(fields, settings) for fields in records.fields]
    if None in texts:
        line = records.lines[texts.index(None)] if records.lines else None
        raise DataError(f"query record has no text in {settings.field!r} to search in {mode} mode", records.source, line)
    return texts
