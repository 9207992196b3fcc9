"""Persistent vector indexes: build, add (upsert), delete, info and search.

One index directory: its generations (store.py), each holding the vectors in the store its
kind names (kinds.py: an hnswlib graph for float vectors, a memory-mapped matrix for int8/binary
ones), the id and metadata store (meta.py), the optional BM25 part (lexical.py) and manifest.json.
Callers outside core/index go through api.py, which also covers sharded indexes (shards.py).

Scores are higher-is-better for every kind (see scoring.py), so ranking, `min_score` and
`--rescore` mean the same thing everywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vecpipe.core.errors import DataError, IndexStoreError, UsageError
from vecpipe.core.index.kinds import bytes_per_vector, load_backend, new_backend
from vecpipe.core.index.meta import META_FILE, Condition, MetaStore, id_key
from vecpipe.core.index.store import (
    FORMAT_VERSION,
    StagedGeneration,
    current_generation,
    generation_name,
    directory_bytes,
    file_digests,
    now_iso,
    IndexManifest,
    open_with_retry,
    read_manifest,
    typed_manifest,
    verify_files,
    write_manifest,
    writing,
)
from vecpipe.core.index.scoring import dtype_of, is_float
from vecpipe.core.index.lexical import LexicalSettings
from vecpipe.core.index.types import BuildOptions, Hit, SearchRequest, SearchResult, WriteOptions, WriteReport, ranked_rows

DEFAULT_EF = 100
ORDERS = ("input", "random")
# Rows handed to hnswlib per add_items call in input order: large calls keep every thread busy
# (small ones idle threads at each call's tail), but each call holds its rows twice (staged and
# concatenated). 16k rows keeps a 200k x 384 build under 2x the vectors' size (65k: 2.31x).
INSERT_ROWS = 16384
# Provenance keys that define the vector space; a query must agree with the index on each.
# Not model_sha256: it hashes the model's manifest, which records where the checkpoint was and
# which vecpipe converted it, so the same model converted on another machine or by another
# release would be refused (docs/RELIABILITY.md, known limits).
SPACE_KEYS = ("model", "weights_sha256", "dim", "layer", "pooling", "truncate_dim", "pca_sha256")
# Compared only when both sides carry them: vectors from before vecpipe recorded the weights' hash
# (or from another tool) are judged by the other keys.
WHEN_BOTH_HAVE = ("weights_sha256",)
# Records added to an index must also have been embedded the same way as the first ones.
RECORD_KEYS = SPACE_KEYS + ("prompt", "prefix", "normalized", "calibration_sha256")

# --- provenance checks -----------------------------------------------------------------


def _differs(expected: dict, actual: dict, keys: Sequence[str]) -> str | None:
    for key in keys:
        if key in WHEN_BOTH_HAVE and (key not in expected or key not in actual):
            continue
        if expected.get(key) != actual.get(key):
            return f"{key} {actual.get(key)!r} differs from the index's {expected.get(key)!r}"
    return None


def _check_record_provenance(manifest: dict, provenance: dict, source: str, line: int | None) -> None:
    problem = _differs(manifest["provenance"], provenance, RECORD_KEYS)
    got, stored = dtype_of(provenance), manifest["input_dtype"]
    if problem is None and got != stored and not (is_float(got) and is_float(stored)):
        problem = f"dtype {got} differs from the index's {stored}"
    if problem:
        raise DataError(f"record {problem}", source, line)


# --- writing -----------------------------------------------------------------------------


def _new_index(first, options: BuildOptions, seed: int) -> tuple[dict, object]:
    """The manifest and empty backend of an index for records like `first`."""
    provenance = dict(first.provenance)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": provenance.get("model"),
        "model_sha256": provenance.get("model_sha256"),
        "dim": first.dim,
        "input_dtype": dtype_of(provenance),
        "normalized": bool(provenance.get("normalized", False)),
        "calibration_sha256": provenance.get("calibration_sha256"),
        "count": 0,
        "next_label": 0,
        "created": now_iso(),
        "provenance": provenance,
    }
    if options.lexical is not None:
        options.lexical.check()
        manifest["lexical"] = options.lexical.describe()
    backend, fields = new_backend(first, options, seed)
    manifest.update(fields)
    return manifest, backend


class _Writer:
    """Applies upserts and deletes to a staged generation, then saves it."""

    def __init__(self, staged: StagedGeneration, manifest: dict, backend, meta: MetaStore, options: WriteOptions):
        if options.order not in ORDERS:
            raise UsageError(f"unknown order {options.order!r}; choose input or random")
        self.staged, self.manifest, self.backend, self.meta, self.options = staged, manifest, backend, meta, options
        self.next_label = manifest["next_label"]
        # Vectors not yet handed to the backend: up to INSERT_ROWS for a graph in input order, else all.
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending_labels: set[int] = set()
        self.dropped: set[int] = set()
        self.report = WriteReport()
        self.lexical = LexicalSettings.from_manifest(manifest["lexical"], str(staged.root)) if manifest.get("lexical") else None

    def upsert(self, batch) -> None:
        _check_record_provenance(self.manifest, batch.provenance, batch.source, batch.lines[0] if batch.lines else None)
        if self.lexical is not None:
            from vecpipe.core.index.lexical import check_texts

            check_texts(batch.fields, self.lexical, batch.source, batch.lines)
        keys = [id_key(i) for i in batch.ids]
        last = {key: pos for pos, key in enumerate(keys)}  # a repeated id: the last record wins
        positions = sorted(last.values())
        self.report.replaced += len(keys) - len(positions)
        kept_keys = [keys[p] for p in positions]
        existing = self.meta.labels_for(kept_keys)
        self.report.replaced += len(existing)
        self._remove(list(existing.values()))
        labels = np.arange(self.next_label, self.next_label + len(positions), dtype=np.int64)
        self.next_label += len(positions)
        self.meta.insert(labels, kept_keys, [batch.fields[p] for p in positions])
        self._stage(self.backend.prepare(batch.matrix[positions], batch.provenance), labels)
        self.report.added += len(positions) - len(existing)

    def delete(self, ids: Iterable) -> None:
        keys = {id_key(i): i for i in ids}
        found = self.meta.labels_for(list(keys))
        self.report.missing = [keys[k] for k in keys if k not in found]
        self._remove(list(found.values()))
        self.report.deleted = len(found)

    def _remove(self, labels: list[int]) -> None:
        if not labels:
            return
        self.meta.delete(labels)
        in_backend = [label for label in labels if label not in self.pending_labels]
        self.dropped.update(label for label in labels if label in self.pending_labels)
        self.backend.delete(in_backend)

    def _stage(self, matrix: np.ndarray, labels: np.ndarray) -> None:
        self.pending.append((matrix, labels))
        self.pending_labels.update(labels.tolist())
        if self.backend.streams and self.options.order == "input" and len(self.pending_labels) >= INSERT_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        matrix = np.concatenate([m for m, _ in self.pending])
        labels = np.concatenate([lab for _, lab in self.pending])
        self.pending = []  # copied: free the parts before the graph grows (peak memory of a build)
        if self.dropped:  # a copy of every pending vector: only when some were replaced meanwhile
            keep = ~np.isin(labels, np.fromiter(self.dropped, dtype=np.int64, count=len(self.dropped)))
            matrix, labels = matrix[keep], labels[keep]
        if self.options.order == "random":
            order = np.random.default_rng(self.options.seed).permutation(len(labels))
            matrix, labels = matrix[order], labels[order]
        if len(labels):  # nothing staged but an empty batch (a shard no record reached): hnswlib refuses an empty add
            self.backend.add(matrix, labels, self.options.threads)
        self.pending, self.pending_labels, self.dropped = [], set(), set()

    def finish(self) -> WriteReport:
        self._flush()
        self.manifest.update(self.backend.save(self.staged.dir))
        if self.backend.relabels:
            self.meta.renumber()
        if self.lexical is not None:  # bm25s cannot add or delete: the text of every record is indexed again
            from vecpipe.core.index import lexical

            self.manifest["lexical"] = lexical.build(self.staged.dir, self.meta.rows(), self.lexical)
        if self.options.text_hashes:
            self.meta.set_text_hashes(self.options.text_hashes)
        count = self.meta.count()
        self.meta.commit_and_close()
        self.manifest.update(
            count=count,
            next_label=count if self.backend.relabels else self.next_label,
            updated=now_iso(),
            generation=self.staged.number,
            files=file_digests(self.staged.dir),
        )
        write_manifest(self.staged.dir, self.manifest)
        self.report.count = count
        self.report.generation = generation_name(self.staged.number)
        return self.report


def _resume(staged: StagedGeneration, options: WriteOptions) -> _Writer:
    generation = current_generation(staged.root)
    manifest = read_manifest(generation)
    verify_files(generation, manifest)
    meta = MetaStore.copy(generation / META_FILE, staged.dir / META_FILE)
    return _Writer(staged, manifest, load_backend(generation, manifest), meta, options)


def build_index(path, batches: Iterable, options: BuildOptions | None = None, write: WriteOptions | None = None) -> WriteReport:
    """Build an index at `path` from VectorBatches; an existing index is replaced only with `overwrite`."""
    root, options, write = Path(path), options or BuildOptions(), write or WriteOptions()
    with writing(root) as staged:
        if staged.fresh_root is None and not options.overwrite:
            raise IndexStoreError("already exists; use --overwrite to replace it, or `index add` to add to it", str(root))
        writer = None
        for batch in batches:
            if writer is None:
                manifest, backend = _new_index(batch, options, write.seed)
                writer = _Writer(staged, manifest, backend, MetaStore.create(staged.dir / META_FILE), write)
            writer.upsert(batch)
        if writer is None:
            raise DataError("no vector records in the input")
        return writer.finish()


def add_to_index(path, batches: Iterable, write: WriteOptions | None = None) -> WriteReport:
    """Add VectorBatches to the index at `path`; a record whose id is already there replaces it."""
    with writing(Path(path)) as staged:
        writer = _resume(staged, write or WriteOptions())
        for batch in batches:
            writer.upsert(batch)
        return writer.finish()


def delete_from_index(path, ids: Iterable) -> WriteReport:
    """Delete records by id; ids that are not in the index are listed in `report.missing`."""
    with writing(Path(path)) as staged:
        writer = _resume(staged, WriteOptions())
        writer.delete(ids)
        return writer.finish()


# --- reading -----------------------------------------------------------------------------


def peek_provenance(path) -> dict:
    """The provenance of the index's vectors, from its manifest alone (no graph loaded)."""
    return read_manifest(current_generation(Path(path)))["provenance"]


def stored_text_hashes(path, keys: Sequence[str]) -> dict[str, str]:
    """The text hashes `index sync` recorded for these id keys (none for an index never synced)."""
    meta = MetaStore.open_readonly(current_generation(Path(path)) / META_FILE)
    try:
        return meta.text_hashes(list(keys))
    finally:
        meta.close()


def index_info(path) -> dict:
    """What `index info` shows, from the manifest and file sizes alone."""

    def describe(generation: Path, manifest: dict) -> dict:
        typed = typed_manifest(manifest)
        info = {"kind": typed.kind, "model": typed.model, "model_sha256": typed.model_sha256, "dim": typed.dim, "dtype": typed.dtype,
                "metric": typed.metric}
        info.update(
            path=str(path),
            count=typed.count,
            normalized=typed.normalized,
            generation=generation.name,
            bytes_on_disk=directory_bytes(generation),
            bytes_per_vector=bytes_per_vector(generation, manifest),
            format_version=typed.format_version,
            created=typed.created,
            updated=typed.updated,
        )
        for key in ("hnsw", "flat", "calibration_sha256", "lexical"):  # the kind's own parameters, as recorded
            if manifest.get(key):
                info[key] = manifest[key]
        info["search_modes"] = ["dense", "lexical", "hybrid"] if typed.lexical else ["dense"]
        info["default_mode"] = info["search_modes"][-1]
        return info

    return open_with_retry(Path(path), describe)


class VectorIndex:
    """A read-only view of one generation; later writes do not affect an open index."""

    def __init__(self, root: Path, generation: Path, manifest: IndexManifest, backend, meta: MetaStore):
        self.root, self.generation, self.manifest = root, generation, manifest
        self.backend, self.meta = backend, meta
        self._lexical = None
        self._lexical_loader = None  # a thread loading the lexical part (see start_loading_lexical)

    @classmethod
    def open(cls, path, load_graph: bool = True) -> "VectorIndex":
        """The live generation. Without `load_graph` a float index leaves its HNSW graph unread and
        answers every search exactly by scanning its vectors: for a process that runs a query or two,
        one scan costs less than loading the graph."""
        root = Path(path)

        def load(generation: Path, manifest: dict) -> "VectorIndex":
            backend = load_backend(generation, manifest, load_graph)
            return cls(root, generation, typed_manifest(manifest), backend, MetaStore.open_readonly(generation / META_FILE))

        return open_with_retry(root, load)

    def close(self) -> None:
        self.meta.close()

    def __enter__(self) -> "VectorIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def count(self) -> int:
        return self.manifest.count

    @property
    def provenance(self) -> dict:
        """As the records carried it (compared key by key with a query's)."""
        return self.manifest.raw["provenance"]

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def keeps_float(self) -> bool:
        return self.manifest.keeps_float

    def check_query(self, provenance: dict) -> None:
        """Refuse a query from another vector space or quantized another way (one line)."""
        # Vectors of unknown provenance (an .npy without sidecar) can only be checked for dtype and width.
        problem = _differs(self.provenance, provenance, SPACE_KEYS) if provenance.get("model") is not None else None
        if problem is None:
            problem = self.backend.query_dtype_problem(dtype_of(provenance), provenance.get("calibration_sha256"))
        if problem:
            raise IndexStoreError(f"query {problem}", str(self.root))

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        provenance: dict | None = None,
        ef: int | None = None,
        where: Sequence[str] = (),
        exact: bool = False,
        min_score: float | None = None,
        rescore: int | None = None,
    ) -> SearchResult:
        """The k best hits per query row. `provenance` describes the queries (float32 when absent)."""
        labels, scores, notices = self.search_labels(queries, k, provenance=provenance, ef=ef, where=where, exact=exact, rescore=rescore)
        return SearchResult(self._hits(labels, scores, min_score), notices)

    def search_labels(self, queries: np.ndarray, k: int = 10, *, provenance: dict | None = None, ef: int | None = None,
                      where: Sequence[str] = (), exact: bool = False, rescore: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The k best labels and scores per query row (-1 where fewer exist), without reading any record."""
        provenance = provenance or {"dtype": "float32"}
        self.check_query(provenance)
        queries = self._check_matrix(queries, dtype_of(provenance))
        if k < 1:
            raise UsageError("-k must be at least 1")
        allowed = self.meta.matching_labels([Condition.parse(w) for w in where]) if where else None
        available = self.count if allowed is None else len(allowed)
        k = min(k, available)
        if k == 0 or len(queries) == 0:
            return np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0), np.float32), []
        ef, notices = _effective_ef(ef, k)
        labels, scores = self.backend.search(queries, dtype_of(provenance), SearchRequest(k, ef, allowed, exact, rescore), self.meta)
        return labels, scores, notices

    @property
    def has_lexical(self) -> bool:
        return self.manifest.lexical is not None

    @property
    def lexical_settings(self) -> LexicalSettings | None:
        """How the lexical part reads a record's text (None without one): queries' text is read the same way."""
        return LexicalSettings.from_manifest(self.manifest.lexical, str(self.root)) if self.has_lexical else None

    def start_loading_lexical(self) -> None:
        """Import bm25s and load the BM25 part on a thread, while the caller loads its model: a one-off
        hybrid search overlaps the two instead of paying one after the other."""
        import threading

        if self._lexical is None and self._lexical_loader is None and self.has_lexical:
            outcome: list = []

            def load() -> None:
                try:
                    outcome.append(self._load_lexical())
                except Exception as exc:  # re-raised where the part is first used, in the caller's thread
                    outcome.append(exc)

            self._lexical_loader = (threading.Thread(target=load, name="vecpipe-lexical", daemon=True), outcome)
            self._lexical_loader[0].start()

    @property
    def lexical(self):
        """The BM25 part, loaded on first use (a dense search never reads it)."""
        if self._lexical is None and self._lexical_loader is not None:
            thread, outcome = self._lexical_loader
            thread.join()
            self._lexical_loader = None
            if isinstance(outcome[0], Exception):
                raise outcome[0]
            self._lexical = outcome[0]
        if self._lexical is None:
            self._lexical = self._load_lexical()
        return self._lexical

    def _load_lexical(self):
        if not self.has_lexical:
            raise UsageError("this index has no lexical part; build it with --lexical for lexical or hybrid search")
        from vecpipe.core.index.lexical import LexicalIndex

        return LexicalIndex.load(self.generation, self.manifest.lexical, self.count)

    def lexical_search(self, texts: list[str], k: int = 10, *, where: Sequence[str] = (), min_score: float | None = None) -> SearchResult:
        """The k best BM25 hits per query text (documents matching no query term are not hits)."""
        labels, scores = self.lexical_labels(texts, k, where=where)
        return SearchResult(self.hits_for(ranked_rows(labels, scores, min_score)))

    def lexical_labels(self, texts: list[str], k: int = 10, *, where: Sequence[str] = ()) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per query text: the labels and BM25 scores of up to k matching documents, best first, without reading any record."""
        if k < 1:
            raise UsageError("-k must be at least 1")
        lexical = self.lexical
        allowed = self.meta.matching_labels([Condition.parse(w) for w in where]) if where else None
        return lexical.search(texts, k, allowed)

    def hits_for(self, rows: list[list[tuple[int, float, dict | None]]]) -> list[list[Hit]]:
        """Hits for (label, score, ranks) rows already ranked: one read of the records they name."""
        stored = self.meta.fetch([label for row in rows for label, _, _ in row])
        return [[Hit(rank, score, *stored[label], ranks) for rank, (label, score, ranks) in enumerate(row, start=1)] for row in rows]

    def _check_matrix(self, queries: np.ndarray, dtype: str) -> np.ndarray:
        queries = np.atleast_2d(np.asarray(queries))
        width = self.backend.query_width(dtype)
        if queries.ndim != 2 or queries.shape[1] != width:
            raise IndexStoreError(
                f"query vectors have {queries.shape[-1]} columns; this index expects {width} for {dtype}",
                str(self.root),
            )
        return queries

    def _hits(self, labels: np.ndarray, scores: np.ndarray, min_score: float | None) -> list[list[Hit]]:
        keep = labels >= 0
        if min_score is not None:
            keep &= scores >= min_score
        stored = self.meta.fetch(labels[keep].ravel())  # only the rows that are returned
        hits = []
        for row_labels, row_scores, row_keep in zip(labels.tolist(), scores.tolist(), keep.tolist()):
            kept = [(label, score) for label, score, ok in zip(row_labels, row_scores, row_keep) if ok]
            hits.append([Hit(rank, score, *stored[label]) for rank, (label, score) in enumerate(kept, start=1)])
        return hits


def _effective_ef(ef: int | None, k: int) -> tuple[int, list[str]]:
    if ef is None:
        return max(DEFAULT_EF, k), []
    if ef < 1:
        raise UsageError("--ef must be at least 1")
    if ef < k:
        return k, [f"--ef {ef} is below -k {k}; searching with ef {k}"]
    return ef, []
