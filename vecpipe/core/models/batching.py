"""Streaming embedding: bounded windows, length-sorted token-budget batches, input order kept.

A background thread reads and tokenizes the next window while onnxruntime runs the
current one (both release the GIL), so memory stays flat however long the input is
and tokenization costs no wall time.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from vecpipe.core.errors import DataError, UsageError
from vecpipe.formats.text import TextRecord

ON_LONG = ("truncate", "error", "chunk")
WINDOW_RECORDS = 2048
WINDOW_CHARS = 4_000_000


@dataclass
class EmbedOptions:
    prefix: str = ""
    normalize: bool | None = None  # None: as the model's manifest says
    max_tokens: int | None = None  # None: the model's own limit
    on_long: str = "truncate"
    overlap: int = 0
    aggregate: str | None = None  # "mean": one vector per text from its chunks
    # Small batches keep each layer's activations in cache. Measured on 2 cores (bench/RESULTS.md):
    # 2048 tokens embed SciFact abstracts 11% faster than 16384; 48 rows embed short sentences 5%
    # faster than 128.
    batch_tokens: int = 2048
    max_batch: int = 48


@dataclass
class EmbedStats:
    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    chunks: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


@dataclass
class Piece:
    """One sequence to run: a whole text, or one chunk of a long text."""

    record: int  # index of its record in the window
    ids: list[int]  # with special tokens
    chunk: int | None = None
    token_span: tuple[int, int] | None = None
    char_span: tuple[int, int] | None = None


@dataclass
class Window:
    records: list[TextRecord]
    pieces: list[Piece]


def check_options(model, options: EmbedOptions) -> int:
    """The effective max tokens, after validating the options against the model."""
    if options.on_long not in ON_LONG:
        raise UsageError(f"--on-long must be one of {', '.join(ON_LONG)}")
    max_tokens = options.max_tokens or model.max_tokens
    limit = int(model.manifest.get("max_position_embeddings", model.max_tokens))
    if not 2 < max_tokens <= max(limit, model.max_tokens):
        raise UsageError(f"--max-tokens must be between 3 and {max(limit, model.max_tokens)}")
    if options.on_long == "chunk" and not 0 <= options.overlap < max_tokens // 2:
        raise UsageError("--overlap must be at least 0 and less than half of --max-tokens")
    if options.aggregate not in (None, "mean"):
        raise UsageError("--aggregate accepts only 'mean'")
    if options.aggregate and options.on_long != "chunk":
        raise UsageError("--aggregate needs --on-long chunk")
    return max_tokens


def tokenize_window(model, records: list[TextRecord], options: EmbedOptions, max_tokens: int, source: str, stats: EmbedStats) -> Window:
    head, tail = model.special_tokens
    budget = max_tokens - len(head) - len(tail)
    prefix_len = len(options.prefix)
    texts = [options.prefix + r.text for r in records]
    cap = prefix_len + max_tokens * model.chars_per_token_cap
    heads: set[int] = set()
    if options.on_long == "truncate":
        texts = [t[:cap] for t in texts]
    elif options.on_long == "error":
        heads = _judge_huge_texts_by_head(model, texts, cap, budget)
    encodings = model.tokenizer.encode_batch(texts, add_special_tokens=False)
    pieces: list[Piece] = []
    for i, enc in enumerate(encodings):
        ids = enc.ids
        if options.on_long == "chunk":
            pieces.extend(_chunks(i, enc, head, tail, budget, options, prefix_len))
            continue
        if len(ids) <= budget:
            pieces.append(Piece(i, head + ids + tail))
            continue
        if options.on_long == "error":
            count = f"{'over ' if i in heads else ''}{len(ids) + len(head) + len(tail)}"
            raise DataError(f"text has {count} tokens, more than --max-tokens {max_tokens}", source, records[i].line)
        stats.truncated += 1
        pieces.append(Piece(i, head + ids[:budget] + tail))
    return Window(records, pieces)


def _judge_huge_texts_by_head(model, texts: list[str], cap: int, budget: int) -> set[int]:
    """For --on-long error: replace each text longer than `cap` characters by its head when the
    head alone is over `budget` tokens; returns their positions.

    Cut at a space, a head's tokens are the first tokens of the whole text, so the text is too
    long too, and a 100 MB line is refused without tokenizing all of it (minutes, gigabytes).
    """
    heads = set()
    for i, text in enumerate(texts):
        cut = text.rfind(" ", 0, cap) if len(text) > cap else -1
        if cut > 0 and len(model.tokenizer.encode(text[:cut], add_special_tokens=False).ids) > budget:
            texts[i] = text[:cut]
            heads.add(i)
    return heads


def _chunks(record: int, enc, head: list[int], tail: list[int], budget: int, options: EmbedOptions, prefix_len: int) -> list[Piece]:
    """Windows of the text's tokens, each led by the prompt's tokens."""
    ids, offsets = enc.ids, enc.offsets
    prompt_tokens = sum(1 for start, _ in offsets if start < prefix_len)
    body_budget = budget - prompt_tokens
    if body_budget < 2 * options.overlap + 1:
        raise UsageError("--max-tokens leaves no room for text after the prompt and overlap")
    step = body_budget - options.overlap
    prompt_ids = ids[:prompt_tokens]
    pieces = []
    body = range(prompt_tokens, len(ids))
    for n, start in enumerate(range(body.start, body.stop, step)):
        end = min(start + body_budget, body.stop)
        span = (offsets[start][0] - prefix_len, offsets[end - 1][1] - prefix_len)
        pieces.append(Piece(record, head + prompt_ids + ids[start:end] + tail, n, (start - prompt_tokens, end - prompt_tokens), span))
        if end == body.stop:
            break
    return pieces


def run_pieces(model, pieces: list[Piece], options: EmbedOptions, stats: EmbedStats) -> np.ndarray:
    """Pooled vectors for every piece, in piece order."""
    vectors = model.vectors_of([p.ids for p in pieces], options.batch_tokens, options.max_batch)
    stats.tokens += sum(len(p.ids) for p in pieces)
    return vectors


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run `items` in a background thread, `depth` items ahead; errors re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put((None, exc))

    thread = threading.Thread(target=produce, daemon=True, name="vecpipe-tokenize")
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()


def _windows(records: Iterable[TextRecord]) -> Iterator[list[TextRecord]]:
    window: list[TextRecord] = []
    chars = 0
    for record in records:
        window.append(record)
        chars += len(record.text)
        if len(window) >= WINDOW_RECORDS or chars >= WINDOW_CHARS:
            yield window
            window, chars = [], 0
    if window:
        yield window


@dataclass
class EmbeddedWindow:
    records: list[TextRecord]
    vectors: np.ndarray  # one row per record, or per chunk when chunking without aggregation
    pieces: list[Piece] | None  # set when rows are chunks


def embed_records(model, records: Iterable[TextRecord], options: EmbedOptions, source: str, stats: EmbedStats | None = None) -> Iterator[EmbeddedWindow]:
    """Embed a record stream window by window, in input order."""
    stats = stats if stats is not None else EmbedStats()
    max_tokens = check_options(model, options)
    normalize = model.normalize if options.normalize is None else options.normalize
    tokenized = (tokenize_window(model, w, options, max_tokens, source, stats) for w in _windows(records))
    for window in _prefetch(tokenized):
        vectors = run_pieces(model, window.pieces, options, stats)
        stats.texts += len(window.records)
        if options.on_long != "chunk":
            yield EmbeddedWindow(window.records, l2_normalize(vectors) if normalize else vectors, None)
            continue
        stats.chunks += len(window.pieces)
        if options.aggregate == "mean":
            yield EmbeddedWindow(window.records, _mean_by_record(window, vectors, normalize), None)
        else:
            yield EmbeddedWindow(window.records, l2_normalize(vectors) if normalize else vectors, window.pieces)


def _mean_by_record(window: Window, vectors: np.ndarray, normalize: bool) -> np.ndarray:
    """Average each text's chunk vectors (each normalized first, when normalizing)."""
    if normalize:
        vectors = l2_normalize(vectors)
    owners = np.fromiter((p.record for p in window.pieces), dtype=np.int64, count=len(window.pieces))
    sums = np.zeros((len(window.records), vectors.shape[1]), dtype=np.float32)
    np.add.at(sums, owners, vectors)
    means = sums / np.bincount(owners, minlength=len(window.records)).astype(np.float32)[:, None]  # int64 counts would make float64
    return l2_normalize(means) if normalize else means


def output_rows(window: EmbeddedWindow) -> tuple[list, list[dict], list[int]]:
    """Ids, fields and source lines of the window's output rows.

    A chunk row gets the id `<parent id>#<chunk>`, the parent's fields with `text`
    replaced by the chunk's text, and its token and character spans in the parent.
    """
    records = window.records
    if window.pieces is None:
        return [r.id for r in records], [r.fields for r in records], [r.line for r in records]
    ids, fields, lines = [], [], []
    for piece in window.pieces:
        parent = records[piece.record]
        row = dict(parent.fields)
        if "text" in row and piece.char_span is not None:
            row["text"] = parent.text[max(piece.char_span[0], 0) : piece.char_span[1]]
        row.update(parent_id=parent.id, chunk=piece.chunk, token_start=piece.token_span[0], token_end=piece.token_span[1])
        if piece.char_span is not None:
            row.update(char_start=piece.char_span[0], char_end=piece.char_span[1])
        ids.append(f"{parent.id}#{piece.chunk}")
        fields.append(row)
        lines.append(parent.line)
    return ids, fields, lines


def embed_texts(model, texts: list[str], options: EmbedOptions) -> np.ndarray:
    records = [TextRecord(i, t, {}, i + 1) for i, t in enumerate(texts)]
    parts = [w.vectors for w in embed_records(model, records, options, "<texts>")]
    return np.concatenate(parts) if parts else np.empty((0, model.dim), np.float32)
