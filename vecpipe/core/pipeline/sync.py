"""`index sync`: embed only the records whose text, model and prompt changed since the index last
saw their id. What was embedded is recorded per id as a sha256 in the index's metadata store (on
a sharded index, in the shard each id routes to), so a later sync skips it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

from vecpipe.core.index import api as index_api
from vecpipe.core.provenance import Provenance, load_provenance
from vecpipe.formats.inputs import input_name, open_input


@dataclass
class SyncReport:
    embedded: int  # records embedded into the index
    new: int  # of those, ids the index had never synced
    unchanged: int  # records skipped: their hash matched
    count: int | None  # records in the index after the sync (None: nothing was written)


def sync_index(directory, inputs: list[str], field: str = "text", model: str | None = None, prompt: str | None = None,
               notify: Callable[[str], None] | None = None) -> SyncReport:
    """Sync the index at `directory` (made on the first sync) with the text records of `inputs`.
    The model and prompt are the index's own once it exists; `model` may say where to find it."""
    exists = index_api.exists(directory)
    known = load_provenance(index_api.provenance(directory) if exists else {})
    embedder = _SyncEmbedder(model or known.model, prompt if known.prompt is None else known.prompt, known, notify)
    keyed = [(index_api.id_key(r.id), embedder.text_hash(r), r) for r in _read(inputs, field)]
    stored = index_api.text_hashes(directory, [key for key, _, _ in keyed]) if exists else {}
    changed = [(key, digest, r) for key, digest, r in keyed if stored.get(key) != digest]
    count = None
    if changed:
        write = index_api.WriteOptions(text_hashes={key: digest for key, digest, _ in changed})
        count = index_api.build_or_add(directory, embedder.batches([r for _, _, r in changed]), write).count
    new = sum(key not in stored for key, _, _ in changed)
    return SyncReport(len(changed), new, len(keyed) - len(changed), count)


def _read(inputs: list[str], field: str) -> list:
    from vecpipe.formats.text import ReadStats, read_texts

    records, stats = [], ReadStats()  # ids by position continue from file to file, as in embed
    for path in inputs:
        with open_input(path) as stream:
            records.extend(read_texts(stream, input_name(path), field, stats=stats))
    return records


class _SyncEmbedder:
    """The model, prompt and record hashing of a sync: the same prompt and model as the index's vectors."""

    def __init__(self, model: str | None, prompt: str | None, index_provenance: Provenance, notify):
        from vecpipe.core.models.kinds import load_model

        self.model = load_model(model, layers=index_provenance.layer, pooling=index_provenance.pooling, notify=notify)
        self.prompt = prompt
        self.prefix = self.model.prompt_prefix(prompt)  # an unknown prompt is refused before anything is read
        identity = {key: value for key, value in self.model.provenance(prompt).items() if key not in ("model_sha256",)}
        self._identity = repr(sorted(identity.items())).encode("utf-8")

    def text_hash(self, record) -> str:
        return hashlib.sha256(self._identity + b"\0" + record.text.encode("utf-8", "surrogatepass")).hexdigest()

    def batches(self, records: list) -> Iterator:
        from vecpipe.core.models.batching import EmbedOptions
        from vecpipe.core.pipeline.embedding import vector_batches

        return vector_batches(self.model, records, EmbedOptions(prefix=self.prefix), self.model.provenance(self.prompt), "sync")
