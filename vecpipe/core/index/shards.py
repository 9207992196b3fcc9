"""Sharded indexes: N whole sub-indexes under one directory, each record in the one its id hashes to.

Layout:

    DIR/SHARDS.json        {"format_version": 1, "shards": N, "router": "sha256-id-key"}
    DIR/s000 ... DIR/sNNN  each a complete vecpipe index (generations, lock, manifest)

A record's shard is the first 8 bytes of the sha256 of its id key (the id as the metadata store
writes it, so 7 and "7" differ), read as an integer, modulo N: the same in every process, on every
machine and Python (unlike `hash()`). Build, add and delete route ids the same way, so an id lives
in exactly one shard and replacing or deleting it touches only that one. Shards are written by
one thread each (hnswlib releases the GIL while it inserts, so they build in parallel); each shard
is atomic on its own, and a build stages the whole directory beside DIR and renames it into place.

Search walks the shards side by side (a share per core: hnswlib searches without the GIL), merges
each query's labels by score and reads only the winners' records. Each shard's exact top k
holds every row of the global exact top k that lives there, so `--exact` over shards gives exactly
the single index's `--exact` result; approximate search merges each shard's approximate top k.
A lexical part (--lexical) is one per shard, over that shard's records and scored with its own
term statistics (Elasticsearch's default); lexical and hybrid search merge them like the dense
lists. int8 ranges are not learned per shard: a sharded int8 index needs --calibration.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import queue
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import orjson

from vecpipe.core.atomic import make_temp_dir_beside, signals_held, write_bytes_atomic
from vecpipe.core.errors import IndexStoreError, UsageError, storage_error
from vecpipe.core.index.meta import id_key
from vecpipe.core.index.types import BuildOptions, Hit, SearchResult, WriteOptions, WriteReport, ranked_rows
from vecpipe.core.index.vector_index import (
    VectorIndex,
    add_to_index,
    build_index,
    delete_from_index,
    index_info,
    stored_text_hashes,
)
from vecpipe.core.index.vector_index import peek_provenance as peek_index_provenance  # the one-index version

SHARDS_FILE = "SHARDS.json"
FORMAT_VERSION = 1
ROUTER = "sha256-id-key"  # shard_of: the first 8 bytes of the id key's sha256, modulo the shard count
MAX_SHARDS = 4096
_QUEUE_BATCHES = 4  # per shard: bounded, so a fast reader cannot buffer the whole input


def is_sharded(path) -> bool:
    return (Path(path) / SHARDS_FILE).is_file()


def shard_of(record_id, shards: int) -> int:
    return shard_of_key(id_key(record_id), shards)


def shard_of_key(key: str, shards: int) -> int:
    """The shard of an id already written as the metadata store's key."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % shards


def shard_dirs(root: Path, shards: int) -> list[Path]:
    return [root / f"s{i:03d}" for i in range(shards)]


def existing_shard_dirs(root) -> list[Path]:
    """The shard directories of the sharded index at `root`, as its layout file counts them."""
    return shard_dirs(Path(root), read_layout(Path(root)))


def _by_shard(values: Iterable, shards: int, route: Callable[[object, int], int]) -> dict[int, list]:
    """`values` grouped by the shard `route(value, shards)` names, each group in input order."""
    groups: dict[int, list] = {}
    for value in values:
        groups.setdefault(route(value, shards), []).append(value)
    return groups


def read_layout(root: Path) -> int:
    """The shard count of a sharded index, checked."""
    path = Path(root) / SHARDS_FILE
    try:
        layout = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise IndexStoreError(f"cannot read the shard layout ({exc})", str(path)) from None
    shards = layout.get("shards") if isinstance(layout, dict) else None
    if not _is_count(shards) or not 1 <= shards <= MAX_SHARDS:
        raise IndexStoreError("the shard layout has no valid shard count: the index is corrupt", str(path))
    version = layout.get("format_version")
    if not _is_count(version) or version < 1:
        raise IndexStoreError(f"the shard layout's format_version {version!r} is not a version number: the index is corrupt", str(path))
    if version > FORMAT_VERSION:
        raise IndexStoreError("the shard layout is from a newer vecpipe; upgrade vecpipe to read it", str(path))
    if layout.get("router") != ROUTER:
        raise IndexStoreError(f"the shard layout routes ids by {layout.get('router')!r}, not {ROUTER!r}: the index is corrupt", str(path))
    return shards


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- writing -------------------------------------------------------------------------------


def build_sharded(path, batches: Iterable, shards: int, options: BuildOptions | None = None, write: WriteOptions | None = None) -> WriteReport:
    """Build a sharded index of `shards` sub-indexes at `path` from VectorBatches."""
    options = options or BuildOptions()
    return build_staged(path, shards, options, lambda staged: fan_out(
        batches, shards, lambda i, stream: build_index(staged / f"s{i:03d}", stream, options, write)))


def build_staged(path, shards: int, options: BuildOptions, build_shards: Callable[[Path], list[WriteReport]]) -> WriteReport:
    """What every sharded build shares: the checks, a staging directory beside `path`, the layout
    file and one atomic publish. `build_shards(staged)` writes the shards s000.. into the stage."""
    root = Path(path)
    _check_build(root, shards, options)
    staged = None
    try:
        with signals_held():
            staged = make_temp_dir_beside(root)
        reports = build_shards(staged)
        write_bytes_atomic(staged / SHARDS_FILE, _layout_bytes(shards))
        _publish(staged, root, options.overwrite)
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
    return _summed_reports(reports)


def _layout_bytes(shards: int) -> bytes:
    """The SHARDS.json of an index of `shards` shards."""
    return orjson.dumps({"format_version": FORMAT_VERSION, "shards": shards, "router": ROUTER})


def _check_build(root: Path, shards: int, options: BuildOptions) -> None:
    if not 2 <= shards <= MAX_SHARDS:
        raise UsageError(f"--shards must be between 2 and {MAX_SHARDS}")
    if options.quantize == "int8" and options.calibration is None:
        raise UsageError("a sharded int8 index needs --calibration FILE: every shard must quantize with the same ranges")
    if root.exists() and not options.overwrite:
        raise IndexStoreError("already exists; use --overwrite to replace it, or `index add` to add to it", str(root))


def _publish(staged: Path, root: Path, overwrite: bool) -> None:
    try:
        if root.exists() and overwrite:
            aside = make_temp_dir_beside(root)
            os.rename(root, aside / "old")
            os.rename(staged, root)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(staged, root)
    except OSError as exc:
        raise storage_error(exc, root) from exc


def add_sharded(path, batches: Iterable, write: WriteOptions | None = None) -> WriteReport:
    """Add VectorBatches to a sharded index, each record to its id's shard; a shard that gets no
    record is not rewritten. Each shard's part is atomic; a refusal in one shard (a record of
    another model) can leave other shards' parts added."""
    dirs = existing_shard_dirs(path)
    hashes = (write.text_hashes or {}) if write else {}
    own_keys = _by_shard(hashes, len(dirs), shard_of_key)  # index sync's hashes: each shard records its own ids' only

    def add_shard(i: int, stream: Iterator) -> WriteReport:
        rows = (batch for batch in stream if len(batch))
        head = next(rows, None)
        if head is None:
            return WriteReport(count=index_info(dirs[i])["count"])
        own = replace(write, text_hashes={key: hashes[key] for key in own_keys.get(i, [])}) if hashes else write
        return add_to_index(dirs[i], itertools.chain([head], rows), own)

    return _summed_reports(fan_out(batches, len(dirs), add_shard))


def peek_provenance(path) -> dict:
    """The provenance of an index's vectors (its first shard's, when sharded), from a manifest alone."""
    return peek_index_provenance(existing_shard_dirs(path)[0] if is_sharded(path) else path)


def sharded_text_hashes(path, keys: Iterable[str]) -> dict[str, str]:
    """stored_text_hashes over a sharded index: each key asked of the shard it hashes to."""
    dirs = existing_shard_dirs(path)
    return {key: digest for i, wanted in _by_shard(keys, len(dirs), shard_of_key).items()
            for key, digest in stored_text_hashes(dirs[i], wanted).items()}


def delete_sharded(path, ids: Iterable) -> WriteReport:
    """Delete ids from the shards they hash to; `report.missing` lists the ones no shard had."""
    dirs = existing_shard_dirs(path)
    reports = [delete_from_index(dirs[i], wanted) for i, wanted in sorted(_by_shard(ids, len(dirs), shard_of).items())]
    total = _summed_reports(reports)
    total.count = sum(index_info(d)["count"] for d in dirs)
    return total


def fan_out(batches: Iterable, shards: int, write_shard: Callable[[int, Iterator], WriteReport]) -> list[WriteReport]:
    """Route each batch's rows to their shards' writers, one thread each; the first error wins."""
    queues = [queue.Queue(maxsize=_QUEUE_BATCHES) for _ in range(shards)]
    results: list = [None] * shards
    failed = threading.Event()
    done = object()

    ended = [False] * shards

    def stream(i: int) -> Iterator:
        while (item := queues[i].get()) is not done:
            yield item
        ended[i] = True

    def run(i: int) -> None:
        try:
            results[i] = write_shard(i, stream(i))
        except BaseException as exc:  # re-raised in the caller's thread below
            results[i] = exc
            failed.set()
            while not ended[i] and queues[i].get() is not done:  # keep draining so the router never blocks on this shard
                pass

    threads = [threading.Thread(target=run, args=(i,), daemon=True, name=f"vecpipe-shard-{i}") for i in range(shards)]
    for thread in threads:
        thread.start()
    try:
        first = True
        for batch in batches:
            if failed.is_set():
                break
            parts = _split(batch, shards)
            for i, part in enumerate(parts):
                if len(part) or first:  # every shard sees the first batch (maybe empty): its dim and provenance
                    queues[i].put(part)
            first = False
    finally:
        for q in queues:
            q.put(done)
        for thread in threads:
            thread.join()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return results


def _split(batch, shards: int) -> list:
    """The batch's rows by shard, each part in input order (an empty part keeps the batch's shape)."""
    owners = np.fromiter((shard_of(i, shards) for i in batch.ids), dtype=np.int64, count=len(batch.ids))
    return [batch.take(np.flatnonzero(owners == shard)) for shard in range(shards)]


def _summed_reports(reports: list[WriteReport]) -> WriteReport:
    total = WriteReport()
    for report in reports:
        total.added += report.added
        total.replaced += report.replaced
        total.deleted += report.deleted
        total.missing += report.missing
        total.count += report.count
    total.generation = f"{len(reports)} shards"
    return total


# --- reading -------------------------------------------------------------------------------


class ShardedIndex:
    """Every shard open, searched together; hits merged per query by score."""

    def __init__(self, root: Path, shards: list[VectorIndex]):
        self.root, self.shards = root, shards
        self._pool = None

    @classmethod
    def open(cls, path, load_graph: bool = True) -> "ShardedIndex":
        root = Path(path)
        opened: list[VectorIndex] = []
        try:
            for directory in existing_shard_dirs(root):
                opened.append(VectorIndex.open(directory, load_graph))
        except BaseException:
            for index in opened:
                index.close()
            raise
        first = opened[0].provenance
        if any(index.provenance != first or index.manifest.dim != opened[0].manifest.dim for index in opened[1:]):
            raise IndexStoreError("the shards hold vectors of different models or shapes: the index is corrupt", str(root))
        return cls(root, opened)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for index in self.shards:
            index.close()

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def count(self) -> int:
        return sum(index.count for index in self.shards)

    @property
    def provenance(self) -> dict:
        return self.shards[0].provenance

    @property
    def kind(self) -> str:
        return self.shards[0].kind

    @property
    def keeps_float(self) -> bool:
        return self.shards[0].keeps_float

    @property
    def has_lexical(self) -> bool:
        return all(index.has_lexical for index in self.shards)

    @property
    def lexical_settings(self):
        return self.shards[0].lexical_settings

    def start_loading_lexical(self) -> None:
        for index in self.shards:
            index.start_loading_lexical()

    def check_query(self, provenance: dict) -> None:
        self.shards[0].check_query(provenance)

    def search(self, queries: np.ndarray, k: int = 10, *, min_score: float | None = None, **options) -> SearchResult:
        """The k best hits per query over every shard: each shard's top k labels, merged by score,
        then only the winners' records read (k rows per query, not k per shard)."""
        labels, scores, notices = self.search_labels(queries, k, **options)
        return SearchResult(self.hits_for(ranked_rows(labels, scores, min_score)), notices)

    def search_labels(self, queries: np.ndarray, k: int = 10, **options) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The k best labels (index-wide: see _global) and scores per query row over every shard, -1 where fewer exist."""
        found = self._on_every_shard(lambda index: index.search_labels(queries, k, **options))
        notices = list(dict.fromkeys(n for _, _, shard_notices in found for n in shard_notices))
        labels = np.concatenate([self._global(shard_labels, shard) for shard, (shard_labels, _, _) in enumerate(found)], axis=1)
        scores = np.concatenate([shard_scores for _, shard_scores, _ in found], axis=1)
        scores = np.where(labels >= 0, scores, -np.inf)  # a shard with fewer than k rows pads with -1
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties keep shard order
        return np.take_along_axis(labels, order, axis=1), np.take_along_axis(scores, order, axis=1), notices

    def lexical_labels(self, texts: list[str], k: int = 10, *, where=()) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per query text: the k best index-wide labels and BM25 scores over every shard. Each shard
        scores with its own term statistics, as Elasticsearch's default (query_then_fetch) does: ids
        hash evenly, so each shard's statistics approach the whole corpus's as shards grow."""
        found = self._on_every_shard(lambda index: index.lexical_labels(texts, k, where=where))
        labels, scores = [], []
        for row in range(len(texts)):
            row_labels = np.concatenate([self._global(shard_labels[row], shard) for shard, (shard_labels, _) in enumerate(found)])
            row_scores = np.concatenate([shard_scores[row] for _, shard_scores in found])
            order = np.argsort(-row_scores, kind="stable")[:k]
            labels.append(row_labels[order])
            scores.append(row_scores[order])
        return labels, scores

    def lexical_search(self, texts: list[str], k: int = 10, *, where=(), min_score: float | None = None) -> SearchResult:
        labels, scores = self.lexical_labels(texts, k, where=where)
        return SearchResult(self.hits_for(ranked_rows(labels, scores, min_score)))

    def hits_for(self, rows: list[list[tuple[int, float, dict | None]]]) -> list[list[Hit]]:
        """Hits for (index-wide label, score, ranks) rows already ranked: one read per shard of the records they name."""
        shards = len(self.shards)
        wanted = _by_shard((label for row in rows for label, _, _ in row), shards, lambda label, n: label % n)
        stored = {shard: self.shards[shard].meta.fetch([label // shards for label in labels]) for shard, labels in wanted.items()}
        return [[Hit(rank, score, *stored[label % shards][label // shards], ranks) for rank, (label, score, ranks) in enumerate(row, start=1)]
                for row in rows]

    def _global(self, labels: np.ndarray, shard: int) -> np.ndarray:
        """A shard's labels made unique over the index, label * shards + shard (-1, none, stays -1),
        so the retrieval modes fuse a sharded index's lists as they fuse one index's."""
        return np.where(labels >= 0, labels * len(self.shards) + shard, -1)

    def _on_every_shard(self, work: Callable) -> list:
        """`work(shard)` for every shard, in shard order, on up to one thread per core: hnswlib
        searches without the GIL, so shards are searched side by side. The calling thread takes one
        share itself, which spares one thread wake-up: 0.3-0.4 ms on the 2-core VM this was measured
        on, as much as walking a 10k-vector shard at ef 100 (bench/RESULTS.md, third session)."""
        groups = min(len(self.shards), os.cpu_count() or 1)
        if groups == 1:
            return [work(shard) for shard in self.shards]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=groups - 1, thread_name_prefix="vecpipe-shard")
        others = [self._pool.submit(lambda group=group: [work(shard) for shard in self.shards[group::groups]]) for group in range(1, groups)]
        results: list = [None] * len(self.shards)
        results[0::groups] = [work(shard) for shard in self.shards[0::groups]]
        for group, future in enumerate(others, start=1):
            results[group::groups] = future.result()
        return results


def sharded_info(path) -> dict:
    root = Path(path)
    infos = [index_info(d) for d in existing_shard_dirs(root)]
    first = {key: value for key, value in infos[0].items() if key not in ("generation", "created", "updated")}
    first.update(path=str(root), count=sum(i["count"] for i in infos), shards=len(infos), shard_counts=[i["count"] for i in infos],
                 bytes_on_disk=sum(i["bytes_on_disk"] for i in infos))
    if "lexical" in first:
        documents, size = sum(i["lexical"]["documents"] for i in infos), sum(i["lexical"]["bytes"] for i in infos)
        first["lexical"] = {**first["lexical"], "documents": documents, "bytes": size,
                            "bytes_per_document": round(size / documents, 1) if documents else None}
    return first
