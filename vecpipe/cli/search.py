"""`vecpipe search`: query an index with a one-off text, text lines, JSONL queries or vector records."""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import IO, List, Optional

import typer

from vecpipe.cli.common import STDIN, binary_stdout, handles_errors, input_name, nothing_left_to_finish, open_input, say, stdout_is_terminal
from vecpipe.cli.completion import index_dirs, model_names

HELP = """Search an index built by `vecpipe index build`.

`vecpipe search DIR "free text"` runs one query. Without a query, queries are read from stdin
(or -i FILE): plain text lines, JSONL records (`--field`, default text; `id` or `_id` is the
query id), or vector records, which are used as they are. Text is embedded with the index's
own model and its `query` prompt; a query from another model, dimension or quantization is
refused.

A one-off query on a float (HNSW) index is answered exactly, by one scan of the vectors where
they lie on disk: that costs less than loading the graph, and exact hits are never worse than
the graph's. `--ef` makes it walk the graph instead; queries from stdin always do.

Hits are JSONL `{"query_id", "rank", "id", "score", ...stored fields}` when piped, a table on a
terminal, or a TREC run with --format trec. Scores are higher-is-better: cosine similarity,
inner product, the negative Euclidean distance for l2, 1 - 2*hamming/bits for binary indexes;
for int8 ones, the dot product of the (unit) query with each document's dequantized codes, or the
integer dot product when the queries are int8 records themselves.

Examples:

  vecpipe search man.idx "copy files between machines"

  vecpipe search docs.idx -k 5 --where lang=en --where 'year>2019' < questions.txt

  jq -c '{_id, text}' queries.jsonl | vecpipe search docs.idx -k 100 --format trec > run.txt

  vecpipe search docs.idx --rescore 4 < questions.txt      # binary index built with --keep-float
"""

NPY_MAGIC = b"\x93NUMPY"
SNIPPET_CHARS = 80


def register(app: typer.Typer) -> None:
    app.command("search", help=HELP)(search)


@handles_errors
def search(
    directory: Path = typer.Argument(..., autocompletion=index_dirs, help="The index directory."),
    query: Optional[str] = typer.Argument(None, help="A one-off text query; without it queries are read from stdin or -i."),
    k: int = typer.Option(10, "-k", max=10**7, help="Hits per query (fewer when the index or a filter has fewer rows)."),
    ef: Optional[int] = typer.Option(None, "--ef", max=10**6, help="hnswlib search width (default 100; raised to k when below it)."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Drop hits scoring below this."),
    where: List[str] = typer.Option([], "--where", help="Filter on a stored field: FIELD=VALUE, FIELD!=VALUE, FIELD<N, FIELD>N (repeatable; all must hold)."),
    exact: bool = typer.Option(False, "--exact", help="Brute force: the exact top k (the ground truth for ANN recall)."),
    rescore: Optional[int] = typer.Option(None, "--rescore", max=10**4, help="Quantized indexes: fetch k*R candidates, re-rank them with float vectors (needs --keep-float)."),
    out_format: str = typer.Option("jsonl", "--format", help="jsonl or trec."),
    as_json: bool = typer.Option(False, "--json", help="JSONL even on a terminal."),
    input_path: str = typer.Option(STDIN, "-i", "--input", help="Query file (text lines, JSONL, or vector records: JSONL, .npy, or a directory of .npy parts); `-` is stdin."),
    field: str = typer.Option("text", "--field", help="JSONL field holding the query text."),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help="Where to find the index's model (a directory or name); it must be the model the index was built with."),
    run_name: str = typer.Option("vecpipe", "--run-name", help="The tag column of --format trec."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=10**6, help="Queries embedded and searched together."),
    mode: Optional[str] = typer.Option(None, "--mode", metavar="dense|lexical|hybrid", help="dense (vectors), lexical (BM25 of the text) or hybrid (both, fused). Default: hybrid when the index has a lexical part (index build --lexical), else dense."),
    fusion: str = typer.Option("rrf", "--fusion", metavar="rrf|convex", help="Hybrid: reciprocal-rank fusion, or a convex mix of min-max normalized scores."),
    rrf_k: float = typer.Option(60, "--rrf-k", help="Hybrid RRF: the k in 1 / (k + rank)."),
    alpha: float = typer.Option(0.5, "--alpha", help="Hybrid convex: the dense list's weight, between 0 and 1 (the lexical list gets 1 - alpha)."),
) -> None:
    from vecpipe.core.errors import UsageError
    from vecpipe.core.index.shards import open_index
    from vecpipe.core.retrieval.modes import Fusion, ModeRequest, default_mode, needs_graph
    from vecpipe.core.retrieval.modes import search as search_mode

    if out_format not in ("jsonl", "trec"):
        raise UsageError("--format must be jsonl or trec")
    if rescore is not None and rescore < 1:
        raise UsageError("--rescore must be at least 1")
    with open_index(directory, needs_graph(mode, exact, one_query=query is not None, ef=ef)) as index:
        request = ModeRequest(mode or default_mode(index), k, where, min_score, ef, exact, rescore, Fusion(fusion, rrf_k, alpha))
        request.check(index, has_text=True)
        if request.mode != "dense":
            index.start_loading_lexical()
        embedder = _QueryEmbedder(index.provenance, model, one_off=query is not None)
        sink = _sink(out_format, as_json, run_name)
        shown: set[str] = set()
        needs_vectors = request.mode != "lexical"
        for ids, texts, matrix, provenance in _query_batches(query, input_path, field, batch_size, embedder, needs_vectors):
            result = search_mode(index, request, texts, matrix, provenance)
            for notice in result.notices:
                if notice not in shown:  # once per run, not once per batch
                    shown.add(notice)
                    say(notice)
            sink.write(ids, result.hits)
        sink.close()
    nothing_left_to_finish()  # read-only: the index is closed and every hit flushed


# --- queries -------------------------------------------------------------------------------


class _QueryEmbedder:
    """Embeds text queries as the index's vectors were made: its model, the model's `query` prompt,
    and the same prefix truncation. Loaded on first use, so vector queries never load a model."""

    def __init__(self, index_provenance: dict, model: str | None, one_off: bool):
        self.index_provenance = index_provenance
        self.location = model
        self.one_off = one_off  # one query: the model loads light (see Model.prepack_weights)
        self._model = None
        self._provenance: dict = {}

    def embed(self, texts: list[str]) -> tuple:
        """(vectors, their provenance)."""
        if self._model is None:
            self._load()
        vectors = self._model.embed(texts, prompt=self._model.query_prompt())
        truncate_dim = self.index_provenance.get("truncate_dim")
        if truncate_dim:
            from vecpipe.core.vectors.truncate import truncate_prefix

            vectors = truncate_prefix(vectors, truncate_dim, renormalize=self._provenance["normalized"])
        return vectors, self._provenance

    def _load(self) -> None:
        from vecpipe.core.errors import IndexStoreError
        from vecpipe.core.models.model import load_model

        prov = self.index_provenance
        if not prov.get("model"):
            raise IndexStoreError("the index does not record its model, so text queries cannot be embedded; pipe vector records")
        if prov.get("pca_sha256"):
            raise IndexStoreError(
                "the index holds PCA-rotated vectors; embed queries with the same pipeline "
                "(vecpipe embed --prompt query | vecpipe truncate --pca-file FILE ...) and pipe the vector records"
            )
        self._model = load_model(self.location or prov["model"], layers=prov.get("layer"), pooling=prov.get("pooling"), notify=say)
        self._model.prepack_weights = not self.one_off
        self._provenance = self._model.provenance(self._model.query_prompt())
        if prov.get("truncate_dim"):
            from vecpipe.core.vectors.truncate import truncated_provenance

            renormalize = bool(prov.get("normalized"))
            self._provenance = truncated_provenance(self._provenance, prov["truncate_dim"], self._model.dim, renormalize, None)


def _query_batches(query: str | None, input_path: str, field: str, batch_size: int, embedder: _QueryEmbedder, needs_vectors: bool):
    """(ids, texts, matrix, provenance) per batch of queries: texts None for vector queries, matrix None
    when only text is searched (lexical mode embeds nothing)."""
    if query is not None:
        yield [0], [query], *_embedded([query], embedder, needs_vectors)
        return
    if os.path.isdir(input_path):  # vector parts written by `--format npy -o DIR`
        yield from _vector_queries(input_path, None, batch_size)
        return
    with open_input(input_path) as stream:
        source = input_name(input_path)
        head, replayed = _first_line(stream)
        if _is_vector_input(head):
            # A named file is read by name: errors cite it, and an .npy finds its sidecar.
            yield from _vector_queries(input_path, replayed if input_path == STDIN else None, batch_size)
        else:
            yield from _text_queries(replayed, source, field, batch_size, embedder, needs_vectors)


def _embedded(texts: list[str], embedder: _QueryEmbedder, needs_vectors: bool) -> tuple:
    return embedder.embed(texts) if needs_vectors else (None, None)


def _vector_queries(path: str, stream: IO[bytes] | None, batch_size: int):
    from vecpipe.formats.vectors import read_vectors

    for batch in read_vectors(path, stream, batch_size, note=say):
        yield batch.ids, None, batch.matrix, {**batch.provenance, "dtype": batch.dtype}  # an .npy without sidecar says it by its matrix


def _text_queries(stream: IO[bytes], source: str, field: str, batch_size: int, embedder: _QueryEmbedder, needs_vectors: bool):
    from vecpipe.formats.text import read_texts

    ids, texts = [], []
    for record in read_texts(stream, source, field):
        ids.append(record.id)
        texts.append(record.text)
        if len(texts) == batch_size:
            yield ids, texts, *_embedded(texts, embedder, needs_vectors)
            ids, texts = [], []
    if texts:
        yield ids, texts, *_embedded(texts, embedder, needs_vectors)


def _is_vector_input(head: bytes) -> bool:
    if head.startswith(NPY_MAGIC):
        return True
    if not head.lstrip().startswith(b"{"):
        return False
    import orjson

    try:
        record = orjson.loads(head)
    except orjson.JSONDecodeError:
        return False  # read_texts reports the bad line
    return isinstance(record, dict) and "embedding" in record


def _first_line(stream: IO[bytes]) -> tuple[bytes, IO[bytes]]:
    """The first non-blank line (or the npy magic), and a stream that still starts at the beginning."""
    consumed = b""
    line = b""
    while not line.strip():
        line = stream.readline()
        consumed += line
        if not line or consumed.startswith(NPY_MAGIC):
            break
    # The vector reader's push-back stream: the same job, so the same code.
    from vecpipe.formats.vectors import _Unread

    return line, io.BufferedReader(_Unread(consumed, stream), buffer_size=1 << 16)


# --- output --------------------------------------------------------------------------------


def _sink(out_format: str, as_json: bool, run_name: str):
    if out_format == "trec":
        return _TrecSink(run_name)
    if as_json or not stdout_is_terminal():
        return _JsonlSink()
    return _TableSink()


HIT_KEYS = ("query_id", "rank", "id", "score", "ranks")
_MAY_HOLD_HIT_KEY = re.compile(b'"(?:' + b"|".join(key.encode() for key in HIT_KEYS) + b')"').search  # one scan, 8x a loop of `in`


def hit_line(query_id, hit, dumps) -> bytes:
    """A JSONL hit: the hit's keys, then the stored fields spliced in as stored (no parsing).

    Stored fields named like the hit's own keys are left out rather than clobber them; only
    fields that might hold such a key take the slower parse-and-merge path."""
    record = {"query_id": query_id, "rank": hit.rank, "id": hit.id, "score": hit.score}
    if hit.ranks is not None:
        record["ranks"] = hit.ranks
    stored = hit.fields_json
    if stored == b"{}":
        return dumps(record) + b"\n"
    if not _MAY_HOLD_HIT_KEY(stored):
        return dumps(record)[:-1] + b"," + stored[1:] + b"\n"
    for key, value in hit.fields.items():
        record.setdefault(key, value)
    return dumps(record) + b"\n"


class _JsonlSink:
    def __init__(self):
        import orjson

        self._dumps = orjson.dumps
        self._out = binary_stdout()

    def write(self, ids: list, hits: list) -> None:
        lines = [hit_line(qid, hit, self._dumps) for qid, row in zip(ids, hits) for hit in row]
        self._out.write(b"".join(lines))
        self._out.flush()

    def close(self) -> None:
        self._out.flush()


class _TrecSink:
    def __init__(self, run_name: str):
        from vecpipe.formats.trec import format_run_line

        self._line = format_run_line
        self._run_name = run_name
        self._out = binary_stdout()

    def write(self, ids: list, hits: list) -> None:
        text = "".join(
            self._line(str(qid), str(hit.id), hit.rank, hit.score, self._run_name) for qid, row in zip(ids, hits) for hit in row
        )
        self._out.write(text.encode())
        self._out.flush()

    def close(self) -> None:
        self._out.flush()


class _TableSink:
    """Rows for a rich table, printed at the end (a terminal reader wants one table)."""

    def __init__(self):
        self._rows: list[list] = []
        self._queries = 0

    def write(self, ids: list, hits: list) -> None:
        self._queries += len(ids)
        for qid, row in zip(ids, hits):
            self._rows.extend([qid, hit.rank, f"{hit.score:.4f}", hit.id, _snippet(hit.fields)] for hit in row)

    def close(self) -> None:
        from vecpipe.cli.common import print_table

        if self._queries == 1:
            print_table(None, ["rank", "score", "id", "text"], [row[1:] for row in self._rows])
        else:
            print_table(None, ["query", "rank", "score", "id", "text"], self._rows)


def _snippet(fields: dict) -> str:
    text = next((fields[key] for key in ("text", "title") if isinstance(fields.get(key), str)), None)
    if text is None:
        text = next((value for value in fields.values() if isinstance(value, str)), "")
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"
