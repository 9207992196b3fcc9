"""Queries for an index, encoded the way the index's vectors were made: text queries embedded
with its model, the model's `query` prompt and the same prefix truncation; vector queries read
as they are (the index checks that they match). `vecpipe search` and `eval retrieval --index`
share this, and so will anything else that searches an index."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, Callable, Iterator

import numpy as np

from vecpipe.core.errors import IndexStoreError
from vecpipe.core.provenance import load_provenance
from vecpipe.core.vector_batch import VectorBatch
from vecpipe.formats.inputs import STDIN, input_name, open_input


class QueryEncoder:
    """Embeds text queries as the index's vectors were made. The model loads on first use, so
    vector queries never load one."""

    def __init__(self, index_provenance: dict, model: str | None = None, one_off: bool = False, notify: Callable[[str], None] | None = None):
        self.index_provenance = load_provenance(index_provenance)  # checked when the index was opened
        self.location = model  # where to find the index's model, when not under its name
        self.one_off = one_off  # one query: the model loads light (see Model.prepack_weights)
        self.notify = notify
        self._model = None
        self._provenance: dict = {}

    def embed(self, texts: list[str]) -> tuple[np.ndarray, dict]:
        """(vectors, their provenance)."""
        if self._model is None:
            self._load()
        vectors = self._model.embed(texts, prompt=self._model.query_prompt())
        truncate_dim = self.index_provenance.truncate_dim
        if truncate_dim:
            from vecpipe.core.vectors.truncate import truncate_prefix

            vectors = truncate_prefix(vectors, truncate_dim, renormalize=self._provenance["normalized"])
        return vectors, self._provenance

    def _load(self) -> None:
        from vecpipe.core.models.kinds import load_model

        prov = self.index_provenance
        if not prov.model:
            raise IndexStoreError("the index does not record its model, so text queries cannot be embedded; pipe vector records")
        if prov.pca_sha256:
            raise IndexStoreError(
                "the index holds PCA-rotated vectors; embed queries with the same pipeline "
                "(vecpipe embed --prompt query | vecpipe truncate --pca-file FILE ...) and pipe the vector records"
            )
        self._model = load_model(self.location or prov.model, layers=prov.layer, pooling=prov.pooling, notify=self.notify)
        self._model.prepack_weights = not self.one_off
        self._provenance = self._model.provenance(self._model.query_prompt())
        if prov.truncate_dim:
            from vecpipe.core.vectors.truncate import truncated_provenance

            self._provenance = truncated_provenance(self._provenance, prov.truncate_dim, self._model.dim, prov.normalized, None)


@dataclass
class QueryBatch:
    ids: list
    texts: list[str] | None  # None for vector queries
    matrix: np.ndarray | None  # None when only text is searched (lexical mode embeds nothing)
    provenance: dict | None
    records: VectorBatch | None = None  # vector queries as read: their fields, source and lines


def query_batches(query: str | None, input_path: str, field: str, batch_size: int, encoder: QueryEncoder,
                  needs_vectors: bool, note: Callable[[str], None] | None = None) -> Iterator[QueryBatch]:
    """The queries in batches: one `query` given as text, else the records of `input_path` (text
    lines, JSONL, vector records as JSONL or .npy, or a directory of .npy parts; `-` is stdin),
    sniffed from their first line."""
    if query is not None:
        yield QueryBatch([0], [query], *_embedded([query], encoder, needs_vectors))
        return
    if os.path.isdir(input_path):  # vector parts written by `--format npy -o DIR`
        yield from _vector_queries(input_path, None, batch_size, note)
        return
    from vecpipe.formats.vectors import first_line, holds_vectors

    with open_input(input_path) as stream:
        head, replayed = first_line(stream)
        if holds_vectors(head):
            # A named file is read by name: errors cite it, and an .npy finds its sidecar.
            yield from _vector_queries(input_path, replayed if input_path == STDIN else None, batch_size, note)
        else:
            yield from _text_queries(replayed, input_name(input_path), field, batch_size, encoder, needs_vectors)


def _embedded(texts: list[str], encoder: QueryEncoder, needs_vectors: bool) -> tuple:
    return encoder.embed(texts) if needs_vectors else (None, None)


def _vector_queries(path: str, stream: IO[bytes] | None, batch_size: int, note) -> Iterator[QueryBatch]:
    from vecpipe.formats.vectors import read_vectors

    options = {} if note is None else {"note": note}
    for batch in read_vectors(path, stream, batch_size, **options):
        # An .npy without sidecar says its dtype by its matrix alone.
        yield QueryBatch(batch.ids, None, batch.matrix, {**batch.provenance, "dtype": batch.dtype}, batch)


def _text_queries(stream: IO[bytes], source: str, field: str, batch_size: int, encoder: QueryEncoder, needs_vectors: bool) -> Iterator[QueryBatch]:
    from vecpipe.formats.text import read_texts

    ids, texts = [], []
    for record in read_texts(stream, source, field):
        ids.append(record.id)
        texts.append(record.text)
        if len(texts) == batch_size:
            yield QueryBatch(ids, texts, *_embedded(texts, encoder, needs_vectors))
            ids, texts = [], []
    if texts:
        yield QueryBatch(ids, texts, *_embedded(texts, encoder, needs_vectors))
